"""Gradient accumulation: two micro-batches per optimizer step."""
import torch
import torch.nn as nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 256), nn.GELU(), nn.Linear(256, 8))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
for _step in range(12):
    opt.zero_grad(set_to_none=True)
    for _micro in range(2):
        x, y = torch.randn(32, 64), torch.randn(32, 8)
        loss = nn.functional.mse_loss(model(x), y) / 2
        loss.backward()
    opt.step()
