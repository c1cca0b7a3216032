"""FSDP2 (`fully_shard`) training on synthetic data, on CPU with gloo: run it with
`torchrun --nproc-per-node 2 sample_models/fsdp2.py`.

Each block is its own FSDP unit (parameters sharded across ranks, gathered for its
forward and backward), then the root; AdamW holds sharded state.
"""
import argparse
import torch, torch.nn as nn, torch.distributed as dist
from torch.distributed.fsdp import fully_shard

class Block(nn.Module):
    def __init__(s, w): super().__init__(); s.fc1 = nn.Linear(w, 4*w); s.fc2 = nn.Linear(4*w, w)
    def forward(s, x): return x + s.fc2(torch.nn.functional.gelu(s.fc1(x)))

class Net(nn.Module):
    def __init__(s, w, n): super().__init__(); s.blocks = nn.ModuleList(Block(w) for _ in range(n)); s.head = nn.Linear(w, 1)
    def forward(s, x):
        for b in s.blocks: x = b(x)
        return s.head(x)

def main():
    p = argparse.ArgumentParser(); p.add_argument("--steps", type=int, default=12); p.add_argument("--width", type=int, default=64); p.add_argument("--batch", type=int, default=16)
    a = p.parse_args()
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = Net(a.width, 4)
    for b in model.blocks: fully_shard(b)
    fully_shard(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(100 + rank)
    for _step in range(a.steps):
        opt.zero_grad(set_to_none=True)
        x = torch.randn(a.batch, a.width, generator=g)
        model(x).square().mean().backward()
        opt.step()
    dist.destroy_process_group()

if __name__ == "__main__":
    main()
