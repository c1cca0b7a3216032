"""The collection side of compile plans on the sample MLP: the batch kept outside
PyTorch's allocator, and PyTorch's partitioner read at a ladder of budgets."""

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, SAMPLES
from memadvise.collect.compile_plans import BatchCapture, _HostTensor


@pytest.mark.parametrize("tensor", [torch.randn(3, 4), torch.randint(0, 5, (2, 3)), torch.randn(2, 3).bfloat16(),
                                    torch.ones(2, dtype=torch.bool), torch.randn(4, 4).t(), torch.empty(0, 3)])
def test_host_copy_round_trips(tensor):
    back = _HostTensor(tensor).tensor()
    assert back.dtype == tensor.dtype and back.shape == tensor.shape and torch.equal(back, tensor)


def test_batch_capture_takes_the_next_call_only():
    model = torch.nn.Linear(4, 2)
    cap = BatchCapture()
    cap.arm(model)
    x = torch.randn(3, 4)
    model(x)
    model(torch.zeros(3, 4))  # disarmed after the first call
    assert torch.equal(cap.args[0].tensor(), x) and cap.kwargs == {}
    assert cap._handle is None


def _run(code: str):
    """``code`` in a process of its own (torch.compile leaves state that changes later
    in-process profiles); the JSON of its last line."""
    proc = subprocess.run([sys.executable, "-c", code, str(SAMPLES)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


MLP_LADDER = """
import json, sys
import torch
sys.path.insert(0, sys.argv[1])
from mlp import MLP
from memadvise.collect.compile_plans import BatchCapture, compile_plans
torch.manual_seed(0)
model = MLP(32, 3, 4)
cap = BatchCapture()
cap.arm(model)
model(torch.randn(8, 32))
print(json.dumps(compile_plans(model, cap, budgets=(1.0, 0.5, 0.0))))
"""


@pytest.mark.slow
def test_mlp_partition_ladder():
    doc = _run(MLP_LADDER)
    depth, width, batch = 3, 32, 8
    assert doc["available"] and doc["graphs"] == 1 and doc["graph_breaks"] == []
    saved = {r["budget"]: r["saved_bytes"] for r in doc["budgets"]}
    # eager saves each ReLU's output: depth * batch * width * 4 bytes; the compiled forward
    # saves no more, and at budget 0 only the graph's inputs (nothing of its own)
    assert saved[1.0] <= depth * batch * width * 4
    assert saved[0.0] == 0 <= saved[0.5] <= saved[1.0]
    assert doc["budgets"][-1]["recomputed_count"] >= doc["budgets"][0]["recomputed_count"]


MLP_BUFFERS = """
import json, sys
import torch
sys.path.insert(0, sys.argv[1])
from mlp import MLP
from memadvise.collect import _compile_internals as ci
from memadvise.collect.compile_plans import BatchCapture, compile_plans
torch.manual_seed(0)
model = MLP(32, 3, 4)
cap = BatchCapture()
cap.arm(model)
model(torch.randn(8, 32))
generated = compile_plans(model, cap, budgets=(1.0, 0.5))
def fail(*args, **kwargs):
    raise RuntimeError("no code generation here")
ci.inductor_buffers = fail
estimated = compile_plans(model, cap, budgets=(1.0,))
grad_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps({"generated": generated, "estimated": estimated, "grad_bytes": grad_bytes}))
"""


@pytest.mark.slow
def test_buffers_come_from_inductors_generated_code_or_say_why_not():
    out = _run(MLP_BUFFERS)
    for row in out["generated"]["budgets"]:
        g = row["graphs"][0]
        assert g["buffers"] == "inductor"
        # the backward returns one gradient per parameter, each made at one of its kernels
        assert sum(b for _made, b in g["gradients"]) == out["grad_bytes"]
        assert all(0.0 <= made <= 1.0 for made, _b in g["gradients"])
        for made, last, b in g["saved_lifetimes"]:  # made in the forward, freed in the backward
            assert 0.0 <= made <= 1.0 and 0.0 <= last <= 1.0 and b > 0
        for made, freed, b in g["backward_work"] + g["forward_work"]:  # each within its graph
            assert 0.0 <= made <= freed <= 1.0 and b > 0
    g = out["estimated"]["budgets"][0]["graphs"][0]
    assert g["buffers"] == ("estimated from graph order (Inductor's code generation failed: "
                            "RuntimeError: no code generation here)")
    assert g["saved_lifetimes"] and "gradients" not in g and "forward_work" not in g
