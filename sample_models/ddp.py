"""DDP training on synthetic data, on CPU with gloo: run it with
`torchrun --nproc-per-node 2 sample_models/ddp.py` or `memadvise profile --nproc-per-node 2 sample_models/ddp.py`.

A stack of residual MLP blocks (Linear → GELU → Linear) wrapped in
DistributedDataParallel; each rank draws its own batches (seed 100 + rank).
"""
import argparse
import torch, torch.nn as nn, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

class Block(nn.Module):
    def __init__(s, w): super().__init__(); s.fc1 = nn.Linear(w, 4*w); s.fc2 = nn.Linear(4*w, w)
    def forward(s, x): return x + s.fc2(torch.nn.functional.gelu(s.fc1(x)))

def main():
    p = argparse.ArgumentParser(); p.add_argument("--steps", type=int, default=12); p.add_argument("--width", type=int, default=64); p.add_argument("--batch", type=int, default=16)
    a = p.parse_args()
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = nn.Sequential(*[Block(a.width) for _ in range(4)], nn.Linear(a.width, 1))
    model = DDP(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(100 + rank)
    for _step in range(a.steps):
        opt.zero_grad(set_to_none=True)
        x = torch.randn(a.batch, a.width, generator=g)
        loss = model(x).square().mean()
        loss.backward()
        opt.step()
    dist.destroy_process_group()

if __name__ == "__main__":
    main()
