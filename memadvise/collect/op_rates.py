"""Per-kind ceilings for the traffic model, measured on the profiled device.

A plain roofline prices every op with no FLOP formula at the bandwidth of a large copy.
That is right for copies and simple arithmetic, and wrong by up to 20x for the ops
that compute per element — random numbers for dropout, erf for GELU, normalisations
and their backward — and a matmul of a few MFLOP runs far below the rate of a large
one. So the probe also runs a fixed set of small training workloads (standard shapes,
not the user's step) and records, for every aten op they dispatch, the bytes it moves
(its tensor inputs + outputs, the recorder's definition) per second; and it times
float32 matmuls at several sizes. ``analysis/traffic.py`` prices each op of the step
at its own kind's rate where one was measured.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from memadvise.collect.timing import median_time


def _nbytes(tree) -> int:
    return sum(t.numel() * t.element_size() for t in tree_leaves(tree)
               if isinstance(t, torch.Tensor) and t.layout == torch.strided)


class _OpTimer(TorchDispatchMode):
    """Times each aten op it dispatches (synchronised on CUDA) and counts its bytes."""

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.cuda = device.type == "cuda"
        self.samples: dict[str, list[tuple[int, float]]] = defaultdict(list)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = func(*args, **kwargs)
        if self.cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        self.samples[func._overloadpacket.__name__].append((_nbytes((args, kwargs)) + _nbytes(out), dt))
        return out


def _workloads(device: torch.device):
    """Small training computations whose ops cover the usual per-element kinds."""
    rows, cols = (4096, 4096) if device.type == "cuda" else (512, 1024)  # 64 MiB / 2 MiB
    x = torch.randn(rows, cols, device=device, requires_grad=True)
    g = torch.randn(rows, cols, device=device)
    mask = torch.rand(rows, cols, device=device) > 0.5
    w, b = torch.ones(cols, device=device, requires_grad=True), torch.zeros(cols, device=device, requires_grad=True)
    n, c, hw = (64, 128, 64) if device.type == "cuda" else (8, 32, 32)
    img = torch.randn(n, c, hw, hw, device=device, requires_grad=True)
    img_g = torch.randn(n, c, hw, hw, device=device)
    bn = torch.nn.BatchNorm2d(c).to(device)
    logits = torch.randn(rows, 256, device=device, requires_grad=True)
    target = torch.randint(0, 256, (rows,), device=device)
    params = [torch.nn.Parameter(torch.randn(rows * cols // 4, device=device)) for _ in range(4)]
    for p in params:
        p.grad = torch.randn_like(p)
    opts = [torch.optim.AdamW(params, foreach=False), torch.optim.AdamW(params, foreach=True)]

    def unary(fn):
        return lambda: fn(x).backward(g)

    return [
        unary(F.gelu), unary(torch.tanh), unary(torch.sigmoid), unary(F.silu), unary(F.relu), unary(torch.exp),
        unary(lambda t: F.dropout(t, 0.1, training=True)),
        unary(lambda t: F.layer_norm(t, (cols,), w, b)),
        unary(lambda t: F.softmax(t, -1)),
        unary(lambda t: t.masked_fill(mask, 0.0) * t + t),
        unary(lambda t: torch.cat([t, t], 0)[:rows].clone()),
        lambda: (torch.randn(rows, cols, device=device), torch.rand(rows, cols, device=device),
                 torch.empty(rows, cols, device=device).normal_(), torch.empty(rows, cols, device=device).uniform_()),
        lambda: F.cross_entropy(logits, target).backward(),
        lambda: x.sum(-1).mean().backward(),
        lambda: bn(img).backward(img_g),
        lambda: F.max_pool2d(img, 3, 2, 1).sum().backward(),
        lambda: F.adaptive_avg_pool2d(img, 1).sum().backward(),
        *(o.step for o in opts),
    ]


def _kind_rate(samples: list[tuple[int, float]], repeats: int) -> float | None:
    """Bytes per second of one op kind over the workloads: each of its calls in a round
    (a round runs every workload once, so the k-th call of a kind is the same call in
    every round) at the median of its times over the rounds, then all its calls of 1 MiB
    or more together, total bytes over total time. A median of the calls' rates would flip
    between modes when a kind runs at two sizes (figures:
    ``benchmarks/results/probe-measurements.md``)."""
    per_round = len(samples) // max(1, repeats)
    if per_round == 0 or per_round * repeats != len(samples):
        good = [b / dt for b, dt in samples if b >= 2**20 and dt > 0]
        return statistics.median(good) if good else None
    total_bytes = total_s = 0.0
    for k in range(per_round):
        calls = samples[k::per_round]
        nbytes = calls[0][0]
        if nbytes < 2**20:
            continue
        total_bytes += nbytes
        total_s += statistics.median(dt for _, dt in calls)
    return total_bytes / total_s if total_s > 0 else None


def probe_op_rates(device: torch.device, repeats: int = 5) -> dict:
    """``op_bytes_per_s``: aten op name -> the median bytes moved per second over the
    workloads, run ``repeats`` times (ops moving under 1 MiB left out: their time is
    mostly dispatch); ``matmul_curve_float32``: [FLOPs, FLOP/s] of square float32
    matmuls from 64 to 1024 (256 to 4096 on CUDA), medians. Medians, not best runs, so
    that the rates describe the machine as it is while the step is timed."""
    timer = _OpTimer(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        work = _workloads(device)
        for fn in work:
            fn()  # warm-up, outside the timer
        with timer:
            for _ in range(repeats):
                for fn in work:
                    fn()
    rates = {}
    for name, samples in timer.samples.items():
        rate = _kind_rate(samples, repeats)
        if rate:
            rates[name] = rate
    curve = []
    sizes = (256, 512, 1024, 2048, 4096) if device.type == "cuda" else (64, 128, 256, 512, 1024)
    for size in sizes:
        a = torch.randn(size, size, device=device)
        bm = torch.randn(size, size, device=device)
        flops = 2 * size**3
        curve.append([flops, flops / median_time(lambda a=a, b=bm: a @ b, device, 5 if size >= 512 else 20)])
    return {"op_bytes_per_s": rates, "matmul_curve_float32": curve}
