"""Wall-clock timing of a callable on a device, the one way every probe times things."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def timed_once(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds for one call of ``fn`` (on CUDA, synchronised before and after)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def median_time(fn: Callable[[], object], device: torch.device, repeats: int, *, warmup: int = 1) -> float:
    """Median of ``repeats`` timed calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    return statistics.median(timed_once(fn, device) for _ in range(max(1, repeats)))
