"""No torch.optim optimizer: a hand-written SGD update marked with memadvise.step()."""
import torch
import torch.nn as nn

try:
    import memadvise
except ImportError:  # the script still runs without memadvise
    memadvise = None

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1))
for _step in range(12):
    x, y = torch.randn(16, 32), torch.randn(16, 1)
    loss = nn.functional.mse_loss(model(x), y)
    model.zero_grad(set_to_none=True)
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.01 * p.grad
    if memadvise is not None:
        memadvise.step()
