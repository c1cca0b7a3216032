"""Model wrapped in DDP inside `if ddp:` after construction (nanoGPT's shape). Run in one
process, `ddp` is False: the branch never runs, so a plan placed there would not either."""
import os

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

WIDTH, DEPTH, BATCH, STEPS = 64, 4, 16, 12


def block():
    return nn.Sequential(nn.Linear(WIDTH, 4 * WIDTH), nn.GELU(), nn.Linear(4 * WIDTH, WIDTH))


torch.manual_seed(0)
ddp = int(os.environ.get("RANK", -1)) != -1
device = "cpu"
model = nn.Sequential(*[block() for _ in range(DEPTH)])
model.to(device)
optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
if ddp:
    torch.distributed.init_process_group("gloo")
    model = DDP(model)
for _ in range(STEPS):
    x = torch.randn(BATCH, WIDTH)
    loss = model(x).pow(2).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
