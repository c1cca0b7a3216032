"""Which ops of a recorded step are memory-bound, and which run together as the fused
chains ``torch.compile`` would make: the classification that collection (the page
faults of the compile change, ``collect/fault_replay.py``) and analysis (the traffic
model, ``analysis/traffic.py``) share.

Per op: bytes = bytes read (its tensor inputs) + bytes written (its outputs), views
moving none; FLOPs from PyTorch's flop formulas; time = its measured duration, scaled to
the uninstrumented step. An op is memory-bound when its intensity (FLOP/byte) is below
the ridge point of the device's probed ceilings (matmul rate / copy bandwidth).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memadvise.schema.ops import VIEW_OPS
from memadvise.schema.profile import Profile
from memadvise.schema.trace import Trace

DEFAULT_BANDWIDTH = 20e9  # bytes/s, only when a profile carries no probe
DEFAULT_FLOPS = 200e9  # FLOP/s, likewise


@dataclass
class Roofline:
    bandwidth: float  # bytes/s
    flops_rate: float  # FLOP/s, float32 matmul
    bytes: np.ndarray  # per op, read + written
    flops: np.ndarray
    time_s: np.ndarray  # per op, scaled to the uninstrumented step
    memory_bound: np.ndarray  # bool per op

    @property
    def ridge(self) -> float:
        return self.flops_rate / self.bandwidth

    @property
    def bandwidth_time_s(self) -> np.ndarray:
        return self.bytes / self.bandwidth


def roofline(profile: Profile, trace: Trace | None = None) -> Roofline:
    t = trace or Trace(profile)
    cal = profile.doc.get("calibration") or {}
    bw = float(cal.get("bandwidth_bytes_per_s") or DEFAULT_BANDWIDTH)
    rate = float(cal.get("matmul_flops_per_s_float32") or DEFAULT_FLOPS)
    nbytes = (t.op_in_bytes + t.op_out_bytes).astype(np.float64)
    names = np.asarray(t.strings, dtype=object)[t.op_name] if len(t.op_name) else np.asarray([], dtype=object)
    views = np.fromiter((n in VIEW_OPS for n in names), dtype=bool, count=len(names))
    nbytes[views] = 0.0
    flops = t.op_flops.astype(np.float64)
    time_s = t.op_dur_us * float(profile.trace.get("time_scale", 1.0)) / 1e6
    intensity = np.divide(flops, nbytes, out=np.zeros_like(flops), where=nbytes > 0)
    memory_bound = (intensity < rate / bw) & (nbytes > 0)
    return Roofline(bw, rate, nbytes, flops, time_s, memory_bound)


def memory_bound_chains(t: Trace, r: Roofline, *, across_modules: bool = False) -> list[tuple[int, int]]:
    """Runs of consecutive memory-bound ops owned by the same module call, in one phase:
    (first, last) op index, inclusive. ``across_modules``: runs through module boundaries
    inside the model (what ``torch.compile(model)`` sees as one graph: a BatchNorm2d's ops
    and the ReLU module after it), never into ops outside every module (the loss, the
    optimizer)."""
    out = []
    i, n = 0, len(r.time_s)
    owner = t.op_owner

    def same(j: int) -> bool:
        return owner[j] >= 0 and owner[i] >= 0 if across_modules else owner[j] == owner[i]

    while i < n:
        if not r.memory_bound[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and r.memory_bound[j + 1] and same(j + 1) and t.op_phase[j + 1] == t.op_phase[i]:
            j += 1
        out.append((i, j))
        i = j + 1
    return out
