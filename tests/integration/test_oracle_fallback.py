"""The oracle's category-free fallback (used when PyTorch's data-flow graph refuses a
step, as it sometimes does under FSDP2) gives the same peak and forward-made activation
bytes as PyTorch's MemoryProfileTimeline on a step where both work."""

import json
import subprocess
import sys

from helpers import ROOT

CODE = """
import json, sys
sys.path.insert(0, "tests")
import oracle
from torch.profiler import _memory_profiler as mp_mod
full = oracle._run_one("sample_models/mlp.py", ["--steps", "10"], 2)
def refuse(*a, **k):
    raise AssertionError("version mismatch: forced by the test")
mp_mod.MemoryProfileTimeline = refuse
raw = oracle._run_one("sample_models/mlp.py", ["--steps", "10"], 2)
print("RESULT" + json.dumps([full, raw]))
"""


def test_fallback_matches_the_profilers_timeline():
    proc = subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    full, raw = json.loads(line[len("RESULT"):])
    assert full["categorised"] and not raw["categorised"]
    assert raw["peak_bytes"] == full["peak_bytes"] > 0
    assert raw["activation_forward_made_bytes"] == full["activation_forward_made_bytes"] > 0
