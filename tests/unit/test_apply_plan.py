"""memadvise.apply_plan on live models: same gradients, same buffers, refusals."""

import copy

import pytest
import torch
import torch.nn as nn

import memadvise
from memadvise._errors import InputFileError, UsageError
from memadvise.schema.actions import Action


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.3)) for _ in range(3)
        )
        self.head = nn.Linear(4 * 8 * 8, 2)

    def forward(self, x):
        for b in self.blocks:
            x = x + b(x)
        return self.head(x.flatten(1))


def step(model, seed=0):
    torch.manual_seed(seed)
    x = torch.randn(2, 4, 8, 8)
    model(x).square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    buffers = [b.clone() for b in model.buffers()]
    return grads, buffers


@pytest.mark.parametrize("actions", [
    [Action(f"blocks.{i}", "checkpoint") for i in range(3)],
    [Action(f"blocks.{i}", "selective", "save-matmul") for i in range(3)],
    [Action("blocks.1", "checkpoint"), Action("head", "checkpoint")],
    [Action("", "checkpoint")],
])
def test_same_gradients_and_buffers(actions):
    torch.manual_seed(0)
    ref = Net()
    planned = copy.deepcopy(ref)
    memadvise.apply_plan(planned, actions)
    g0, b0 = step(ref)
    g1, b1 = step(planned)
    assert all(torch.equal(a, b) for a, b in zip(g0, g1))
    assert all(torch.equal(a, b) for a, b in zip(b0, b1))  # running stats updated once


def test_applying_twice_and_unknown_units_are_refused():
    model = Net()
    memadvise.apply_plan(model, [Action("blocks.0", "checkpoint")])
    with pytest.raises(UsageError, match="already has a plan"):
        memadvise.apply_plan(model, [Action("blocks.0", "checkpoint")])
    with pytest.raises(InputFileError, match="no submodule"):
        memadvise.apply_plan(model, [Action("blocks.7", "checkpoint")])
    with pytest.raises(UsageError):
        memadvise.apply_plan(model, 42)
