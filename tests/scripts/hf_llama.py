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
    args = p.parse_args()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=args.layers,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512)
    cfg._attn_implementation = "eager"
    model = LlamaForCausalLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _step in range(args.steps):
        opt.zero_grad(set_to_none=True)
        ids = torch.randint(0, 128, (args.batch, args.seq))
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()


if __name__ == "__main__":
    main()
