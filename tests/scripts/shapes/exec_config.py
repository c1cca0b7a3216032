"""nanoGPT's shape: globals overridden by `exec(open(configurator).read())`, a model
built in one branch of an `if`, moved with `.to()`, compiled and wrapped in DDP only when
configured (here neither runs)."""
import os

import torch
from torch import nn

width = 64
depth = 4
batch_size = 16
max_iters = 12
init_from = "scratch"
compile = False
device = "cpu"
exec(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "configurator.py")).read())
ddp = int(os.environ.get("RANK", -1)) != -1


def block():
    return nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))


torch.manual_seed(0)
if init_from == "scratch":
    model = nn.Sequential(*[block() for _ in range(depth)])
elif init_from == "resume":
    model = torch.load("ckpt.pt", weights_only=False)
model.to(device)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
if compile:
    unoptimized_model = model
    model = torch.compile(model)
if ddp:
    model = torch.nn.parallel.DistributedDataParallel(model)
for _it in range(max_iters):
    x = torch.randn(batch_size, width)
    loss = model(x).pow(2).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
