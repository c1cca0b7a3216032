"""Measure a block of code in-process: peak and activation memory, as ``profile`` does.

Used by the pytest marker (``@pytest.mark.memadvise``) and usable directly::

    with memadvise.collect.measure.measure() as m:
        loss = model(x).sum(); loss.backward(); opt.step()
    print(m.result.peak_bytes, m.result.activation_bytes)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from time import perf_counter_ns

import torch

from memadvise.collect.build import _Arrays, _backward_segments, _categorize, _step_summary
from memadvise.collect.recorder import Recorder


@dataclass
class MeasureResult:
    """peak_bytes: largest live total on the device (bytes); activation_bytes: held for
    backward when a backward started (max over backward passes); cuda_max_allocated:
    ``torch.cuda.max_memory_allocated`` over the block on CUDA, else None."""

    peak_bytes: int
    activation_bytes: int
    by_category_at_peak: dict[str, int] = field(default_factory=dict)
    cuda_max_allocated: int | None = None
    device: str = "cpu"
    start_bytes: int = 0  # live when the block began


class measure:
    def __init__(self, device: str | torch.device | None = None) -> None:
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        self.device = device
        self.result: MeasureResult | None = None
        self._rec: Recorder | None = None
        self._t0 = 0

    def __enter__(self) -> "measure":
        self._rec = Recorder(self.device, timing="wall")
        self._rec.start()
        self._rec.begin_step(0)
        self._t0 = perf_counter_ns()
        return self

    def __exit__(self, *exc) -> None:
        rec = self._rec
        assert rec is not None
        try:
            rec.end_step(perf_counter_ns() - self._t0)
        finally:
            rec.stop()
        if exc[0] is not None:
            return
        for module in list(rec.modules):
            rec.note_module_state(module)
            rec.paused += 1
            try:
                for p in module.parameters():
                    if p.grad is not None:
                        rec.grad_sids.add(rec._sid(p.grad, pre=True))
            finally:
                rec.paused -= 1
        arr = _Arrays(rec)
        mark = rec.steps[-1]
        segs = _backward_segments(arr, mark.start_op, mark.end_op, mark.end_clock)
        cat = _categorize(rec, arr, [(mark.start_clock, b, e) for b, e in segs], rec.steps)
        devices = rec.devices()
        key = str(self.device)
        on_dev = arr.st_device == (devices.index(key) if key in devices else -1)
        doc = _step_summary(rec, arr, cat, on_dev, mark, segs)
        cuda = doc.get("cuda") or {}
        self.result = MeasureResult(
            peak_bytes=doc["peak_bytes"],
            activation_bytes=doc["activation_bytes"],
            by_category_at_peak=doc["by_category_at_peak"],
            cuda_max_allocated=cuda.get("max_memory_allocated"),
            device=key,
            start_bytes=doc["start_bytes"],
        )
