"""The independent measurement on CUDA: max_memory_allocated over one steady-state step,
from the end of optimizer step ``warmup`` to the end of the next, synchronized at both
ends (torch.cuda faked: no GPU needed)."""

from types import SimpleNamespace

import pytest
import torch

from memadvise.collect import independent


def test_the_step_window_is_end_of_step_k_to_end_of_k_plus_1(monkeypatch):
    calls = []
    allocated = {"now": 1000, "peak": 1000}
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: calls.append("sync"))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda d=None: allocated["now"])
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats",
                        lambda d=None: calls.append("reset") or allocated.update(peak=allocated["now"]))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d=None: allocated["peak"])
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda d=None: 4096)
    harness = independent._Harness(warmup=2)
    harness.device = SimpleNamespace(type="cuda")
    harness._after_step(None, (), {})  # step 1: warmup
    assert calls == []
    harness._after_step(None, (), {})  # end of step 2: the window opens
    assert calls == ["sync", "reset"]
    allocated.update(now=1500, peak=3000)  # the measured step
    with pytest.raises(independent._StopScript):
        harness._after_step(None, (), {})  # end of step 3: the window closes
    result = harness.cuda_result
    assert calls == ["sync", "reset", "sync"]
    assert result["peak_bytes"] == 3000 and result["allocated_at_start_bytes"] == 1000
    assert result["device"] == "cuda" and result["method"] == "torch.cuda.max_memory_allocated"
