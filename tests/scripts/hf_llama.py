"""A Hugging Face transformers causal LM built from a config (no download)."""
import argparse

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq", type=int, default=32)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--intermediate", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=128)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
                      num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.heads,
                      max_position_embeddings=max(512, args.seq))
    cfg._attn_implementation = "eager"
    model = LlamaForCausalLM(cfg).to(args.device)  # float32
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _step in range(args.steps):
        opt.zero_grad(set_to_none=True)
        ids = torch.randint(0, args.vocab, (args.batch, args.seq), device=args.device)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()


if __name__ == "__main__":
    main()
