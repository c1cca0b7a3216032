"""The oracle's category-free fallback timeline on hand-made allocator events: the cases
where PyTorch's own timeline (MemoryProfile.timeline) decides what counts."""

from types import SimpleNamespace

import torch
from torch._C._profiler import _EventType
from torch.profiler import _memory_profiler as mp_mod

import oracle

CPU = torch.device("cpu")


def alloc(t, size, ptr, tensor_id=None):
    """An allocator event: ``size`` > 0 allocates, < 0 frees; no ``tensor_id``: a block no
    tensor owns (PyTorch's TensorKey is None for it)."""
    fields = SimpleNamespace(alloc_size=size, ptr=ptr, device=CPU, id=tensor_id,
                             allocation_id=tensor_id if tensor_id is not None else None)
    return SimpleNamespace(typed=(_EventType.Allocation, fields), start_time_ns=t)


def fallback_peak(monkeypatch, events):
    monkeypatch.setattr(mp_mod, "OpTree", lambda _results: SimpleNamespace(dfs=lambda: iter(events)))
    monkeypatch.setattr(mp_mod, "SizeMap", lambda _tree: SimpleNamespace(_values={}))
    prof = SimpleNamespace(profiler=SimpleNamespace(kineto_results=None))
    return oracle._peak(oracle._raw_timeline(prof), CPU)


def test_a_block_allocated_again_while_live_adds_no_bytes(monkeypatch):
    # its free happened on a thread the profiler did not see; PyTorch's timeline records the
    # second allocation as a new version of the same block, not as more memory
    events = [alloc(1, 1000, ptr=0xA), alloc(2, 1000, ptr=0xA), alloc(3, 500, ptr=0xB), alloc(4, -1000, ptr=0xA)]
    assert fallback_peak(monkeypatch, events) == 1500


def test_frees_of_blocks_allocated_before_profiling_count_as_preexisting(monkeypatch):
    events = [alloc(1, 300, ptr=0xA), alloc(2, -800, ptr=0xC), alloc(3, -300, ptr=0xA)]
    assert fallback_peak(monkeypatch, events) == 1100  # 800 there from the start, + 300


def test_tensor_blocks_count_once_each(monkeypatch):
    events = [alloc(1, 400, ptr=0xA, tensor_id=1), alloc(2, 600, ptr=0xB, tensor_id=2),
              alloc(3, -400, ptr=0xA, tensor_id=1), alloc(4, 100, ptr=0xA, tensor_id=3)]
    assert fallback_peak(monkeypatch, events) == 1000
