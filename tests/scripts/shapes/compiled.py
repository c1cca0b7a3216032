"""`model = torch.compile(model)` assigned back to the same name."""
import torch
from torch import nn

WIDTH, DEPTH, BATCH, STEPS = 32, 3, 8, 10


def block():
    return nn.Sequential(nn.Linear(WIDTH, 4 * WIDTH), nn.GELU(), nn.Linear(4 * WIDTH, WIDTH))


torch.manual_seed(0)
model = nn.Sequential(*[block() for _ in range(DEPTH)])
optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
model = torch.compile(model)
for _ in range(STEPS):
    x = torch.randn(BATCH, WIDTH)
    loss = model(x).pow(2).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
