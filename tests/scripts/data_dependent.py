"""Data-dependent Python control flow on a tensor's value: dynamo breaks the graph at
the branch, compiles what comes before and after it, and the compile plans say so."""
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder, self.head = nn.Linear(16, 32), nn.Linear(32, 1)

    def forward(self, x):
        h = torch.relu(self.encoder(x))
        if h.sum() > 0:  # a Python branch on a tensor's value: a graph break
            h = h * 2
        return self.head(h)


torch.manual_seed(0)
model = Net()
opt = torch.optim.SGD(model.parameters(), lr=0.01)
for _step in range(8):
    x, y = torch.randn(8, 16), torch.randn(8, 1)
    loss = nn.functional.mse_loss(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
