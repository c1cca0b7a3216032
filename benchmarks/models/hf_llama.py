"""A Hugging Face Llama causal LM built from a config (no download), eager attention, for
the side-by-side comparison (benchmarks/compare.py). Needs ``transformers``.

    python benchmarks/models/hf_llama.py --layers 8 --hidden 1024 --seq-len 1024 --batch 8

Eager attention materialises the (batch, heads, seq, seq) scores, as the issue's H200
measurement did; fp32 throughout.
"""

import argparse

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=1024)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    torch.manual_seed(0)
    # intermediate size: Llama's 8/3 × hidden, rounded up to a multiple of 64
    inter = -(-8 * args.hidden // 3 // 64) * 64
    cfg = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=inter,
                      num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.heads,
                      max_position_embeddings=max(args.seq_len, 512), use_cache=False)
    cfg._attn_implementation = "eager"
    device = torch.device(args.device)
    model = LlamaForCausalLM(cfg).to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for _step in range(args.steps):
        opt.zero_grad(set_to_none=True)
        ids = torch.randint(0, args.vocab, (args.batch, args.seq_len), device=device)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()


if __name__ == "__main__":
    main()
