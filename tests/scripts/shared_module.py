"""One module called several times per forward (weight sharing across depth)."""
import torch
import torch.nn as nn


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(32, 128)
        self.block = nn.Sequential(nn.Linear(128, 128), nn.Tanh())  # applied three times
        self.out = nn.Linear(128, 4)

    def forward(self, x):
        h = self.inp(x)
        for _ in range(3):
            h = h + self.block(h)
        return self.out(h)


torch.manual_seed(0)
model = Shared()
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
for _step in range(12):
    x, y = torch.randn(16, 32), torch.randn(16, 4)
    opt.zero_grad()
    nn.functional.mse_loss(model(x), y).backward()
    opt.step()
