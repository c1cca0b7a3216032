"""A DDP script that fails on one rank: raises, hangs or is killed at step 3."""
import argparse
import os
import signal
import time

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

p = argparse.ArgumentParser()
p.add_argument("--fail", choices=["raise", "hang", "kill"], required=True)
p.add_argument("--fail-rank", type=int, default=1)
a = p.parse_args()
dist.init_process_group("gloo")
model = DDP(nn.Linear(16, 16))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(20):
    if step == 3 and dist.get_rank() == a.fail_rank:
        if a.fail == "raise":
            raise RuntimeError("bad shard on this rank")
        if a.fail == "hang":
            time.sleep(600)
        os.kill(os.getpid(), signal.SIGKILL)
    model(torch.randn(4, 16)).sum().backward()
    opt.step()
