"""Mixed precision on CPU: the forward under torch.autocast(bfloat16)."""
import torch
import torch.nn as nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for _step in range(12):
    # zero_grad first: the profiler timeline (the tests' oracle) cannot see last step's
    # gradients when they are only freed, after the forward, without being used
    opt.zero_grad(set_to_none=True)
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
