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


def interleaved(fns: dict, device: torch.device, repeats: int) -> dict[str, list[float]]:
    """Wall times of each of ``fns``, run in turn ``repeats`` times after a warm-up round:
    a difference between two of them is taken within a round, so the machine slowing
    down or speeding up between rounds does not enter it."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(timed_once(fn, device))
    return times


def median_diff(a: list[float], b: list[float]) -> float:
    """Median over rounds of ``a - b``."""
    return statistics.median(x - y for x, y in zip(a, b))
