"""Host memory for the CPU traffic model: page faults, and glibc's heap during the probes.

A CPU op whose output lands on fresh pages pays a minor fault per page (the kernel maps
and zeroes it) on top of moving its bytes, which can make a pointwise op several times
slower. Whether a given allocation is fresh depends on glibc's malloc state (its mmap
threshold moves with the sizes freed so far; the top of its heap is returned to the
kernel past the trim threshold), so the same probe can measure either rate in
consecutive processes (figures: ``benchmarks/results/probe-measurements.md``).

The traffic model separates the two: the probes after the run time ops on a pinned heap
(``pin_heap``: no fresh pages, hence one stable rate per kind), and the step's own faults
(counted during its timing steps) are priced at ``page_fault_cost_s`` each.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import platform
import statistics
import time

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc's own dynamic rule after a 32 MiB block is freed (its largest mmap threshold on
# 64-bit): allocations up to 32 MiB from the heap, the heap trimmed past 64 MiB free
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 64 * 2**20


def minor_faults() -> int | None:
    """Minor page faults of this process so far (fresh pages the kernel had to map and
    zero), or None where getrusage is missing (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)


def pin_heap() -> bool:
    """Pin glibc's malloc at the state its dynamic thresholds reach in a PyTorch process
    (``MMAP_THRESHOLD``/``TRIM_THRESHOLD``), so that the probes' tensors reuse heap pages
    instead of faulting fresh ones at random. True where applied (Linux with glibc).

    It stays so for the rest of the process: glibc stops moving its thresholds once they
    are set, and has no call to undo that (``memadvise profile`` exits right after)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        return bool(ok and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
    except (OSError, AttributeError):
        return False


def page_fault_cost_s(mib: int = 16, repeats: int = 5) -> float | None:
    """Seconds of a step per minor fault: a fresh private anonymous mapping filled by one
    torch op, as an op fills its new output (with the intra-op threads, which fault their
    pages in parallel, as a training step's ops do: touching one byte per page from one
    thread costs about twice as much a fault), minus the same fill again (the bytes
    alone), per fault counted; the median of ``repeats`` mappings. None where faults are
    not counted."""
    import torch

    if minor_faults() is None:
        return None
    costs = []
    for _ in range(repeats):
        mm = mmap.mmap(-1, mib * 2**20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        try:
            region = torch.frombuffer(mm, dtype=torch.float32)
            f0, t0 = minor_faults(), time.perf_counter()
            region.fill_(1.0)
            t1, f1 = time.perf_counter(), minor_faults()
            region.fill_(2.0)
            t2 = time.perf_counter()
            del region
        finally:
            mm.close()
        faults = (f1 or 0) - (f0 or 0)
        if faults > 0:
            costs.append(max(0.0, (t1 - t0) - (t2 - t1)) / faults)
    return statistics.median(costs) if costs else None
