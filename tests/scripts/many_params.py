"""An optimizer-bound step: many small parameters, AdamW's per-parameter loop."""
import sys

import torch
import torch.nn as nn

torch.manual_seed(0)
model = nn.Sequential(*[nn.Linear(32, 32) for _ in range(150)])
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=False)
for _step in range(int(sys.argv[1]) if len(sys.argv) > 1 else 16):
    opt.zero_grad(set_to_none=False)  # zeroes gradients in place
    x = torch.randn(4, 32)
    model(x).square().mean().backward()
    opt.step()
