"""Scratch memory inside ops: what a kernel allocates for itself and frees before returning.

oneDNN convolutions and their backward (CPU), reduced-precision CPU matmuls, cuDNN
convolutions and attention kernels (CUDA) allocate buffers that are no tensor, so no
dispatch-level tracker sees them, yet they count in the peak (``max_memory_allocated``
on CUDA, the allocator on CPU). The recorder notes each distinct call signature of such
ops; afterwards each is replayed once on fresh tensors of the same metadata, measuring
the op's transient peak beyond its outputs: on CUDA with the caching allocator's peak
statistic, on CPU with PyTorch's profiler (``profile_memory=True``), the only view of
the CPU allocator PyTorch offers.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
from typing import Any

import torch

from memadvise.schema.ops import PROBE_OPS  # noqa: F401  (the recorder reads it here)


@contextlib.contextmanager
def _without_profiler_banner():
    """Drop the lines torch's profiler writes to file descriptor 2 as it starts and stops
    ("USDT: ... profiler_start", since torch 2.13, whatever the log level): they are not
    the user's script's output. Every other line written meanwhile is passed on."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real descriptor 2 (an embedding host): leave it
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [line for line in tmp.read().decode(errors="replace").splitlines(keepends=True)
                    if not line.startswith("USDT:")]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()

class _TensorMeta:
    __slots__ = ("shape", "stride", "dtype", "device", "offset")

    def __init__(self, t: torch.Tensor) -> None:
        self.shape = tuple(t.shape)
        self.stride = tuple(t.stride())
        self.dtype = t.dtype
        self.device = t.device
        self.offset = t.storage_offset()

    def key(self) -> tuple:
        return ("T", self.shape, self.stride, str(self.dtype), str(self.device), self.offset)

    def make(self) -> torch.Tensor:
        size = self.offset + (sum((s - 1) * st for s, st in zip(self.shape, self.stride)) + 1 if all(self.shape) else 0)
        base = torch.empty(max(size, 1), dtype=self.dtype, device=self.device)
        if base.is_floating_point():
            base.normal_()
        else:
            base.zero_()
        return base.as_strided(self.shape, self.stride, self.offset)


def _walk(fn: Any, value: Any) -> Any:
    """``value`` with ``fn`` applied to every tensor in it, nested lists and tuples included."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_walk(fn, v) for v in value)
    return value


def _meta(value: Any) -> Any:
    return _walk(_TensorMeta, value)


def _key(value: Any) -> Any:
    if isinstance(value, _TensorMeta):
        return value.key()
    if isinstance(value, (list, tuple)):
        return tuple(_key(v) for v in value)
    if isinstance(value, (int, float, bool, str, type(None))):
        return value
    return repr(value)


def _materialize(value: Any) -> Any:
    if isinstance(value, _TensorMeta):
        return value.make()
    if isinstance(value, (list, tuple)):
        return type(value)(_materialize(v) for v in value)
    return value


class ScratchProbe:
    """Collects op signatures during recording; ``run()`` measures each once.

    ``failure``: why ``run()`` measured nothing (``"TypeError: ..."``), None when it ran;
    the profile's notes say so, as those ops' scratch bytes are then missing from the peak.
    """

    def __init__(self) -> None:
        self.signatures: dict[Any, tuple[Any, Any, Any]] = {}
        self.ops: dict[Any, list[int]] = {}
        self.failure: str | None = None

    def note(self, func: Any, args: tuple, kwargs: dict, op_index: int) -> None:
        margs, mkwargs = _meta(args), {k: _meta(v) for k, v in kwargs.items()}
        key = (str(func), _key(margs), _key(tuple(sorted(mkwargs.items()))))
        if key not in self.signatures:
            self.signatures[key] = (func, margs, mkwargs)
            self.ops[key] = []
        self.ops[key].append(op_index)

    def run(self, device: torch.device) -> dict[int, int]:
        """Scratch bytes per recorded op index (ops without scratch are omitted)."""
        out: dict[int, int] = {}
        if not self.signatures:
            return out
        try:
            measured = self._run_cuda() if device.type == "cuda" else self._run_cpu()
        except Exception as exc:  # the probe refines the peak: its failure is noted, never fatal
            self.failure = f"{type(exc).__name__}: {exc}"
            return out
        for key, nbytes in measured.items():
            if nbytes > 0:
                for i in self.ops[key]:
                    out[i] = nbytes
        return out

    def _replay(self, key: Any) -> tuple[Any, int]:
        func, margs, mkwargs = self.signatures[key]
        args = _materialize(margs)
        kwargs = {k: _materialize(v) for k, v in mkwargs.items()}
        return func, args, kwargs

    def _run_cuda(self) -> dict[Any, int]:
        out = {}
        for key in self.signatures:
            func, args, kwargs = self._replay(key)
            with torch.no_grad():
                func(*args, **kwargs)  # first call: lazy initialisation, cached algorithms
                torch.cuda.synchronize()
                before = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
                result = func(*args, **kwargs)
                torch.cuda.synchronize()
                peak = torch.cuda.max_memory_allocated() - before
            out[key] = max(0, peak - _output_bytes(result))
            del result, args, kwargs
        return out

    def _run_cpu(self) -> dict[Any, int]:
        from torch._C._profiler import _EventType
        from torch.profiler import ProfilerActivity, profile, record_function

        replays = []
        for key in self.signatures:
            func, args, kwargs = self._replay(key)
            with torch.no_grad():
                func(*args, **kwargs)  # first call: lazy initialisation
            replays.append((key, func, args, kwargs))
        with _without_profiler_banner(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            results = []
            for i, (_key, func, args, kwargs) in enumerate(replays):
                with torch.no_grad(), record_function(f"memadvise::probe::{i}"):
                    results.append(func(*args, **kwargs))
        peaks: dict[int, int] = {}
        for root in prof.profiler.kineto_results.experimental_event_tree():
            stack = [root]
            while stack:
                e = stack.pop()
                if e.name.startswith("memadvise::probe::"):
                    allocs = []
                    inner = list(e.children)
                    while inner:
                        x = inner.pop()
                        if x.typed[0] == _EventType.Allocation:
                            allocs.append((x.start_time_ns, x.typed[1].alloc_size))
                        inner.extend(x.children)
                    live = best = 0
                    for _, size in sorted(allocs, key=lambda a: (a[0], a[1])):
                        live += size
                        best = max(best, live)
                    peaks[int(e.name.rsplit("::", 1)[1])] = best
                else:
                    stack.extend(e.children)
        out = {}
        for i, (key, *_rest) in enumerate(replays):
            out[key] = max(0, peaks.get(i, 0) - _output_bytes(results[i]))
        return out


def _output_bytes(result: Any) -> int:
    seen: set[int] = set()
    total = 0
    stack = [result]
    while stack:
        x = stack.pop()
        if isinstance(x, torch.Tensor):
            st = x.untyped_storage()
            if st.data_ptr() not in seen:
                seen.add(st.data_ptr())
                total += st.nbytes()
        elif isinstance(x, (list, tuple)):
            stack.extend(x)
    return total


def _replay_time(func: Any, args: tuple, kwargs: dict, device: torch.device, repeats: int) -> float:
    """Median wall time of one call (CUDA synchronised) over ``repeats``, after three
    warm-up calls: oneDNN's reduced-precision matmuls run slower for their first few calls
    on new tensors than they do in a training step."""
    from memadvise.collect.timing import median_time

    with torch.no_grad():
        return median_time(lambda: func(*args, **kwargs), device, repeats, warmup=3)


def _costliest_first(probe: ScratchProbe, budget_s: float):
    """The probe's signatures, costliest (by bytes of their inputs) first, until
    ``budget_s`` has passed since the first was handed out: a budget cut keeps the ones
    that weigh."""
    import time

    start = time.perf_counter()
    for key in sorted(probe.signatures, key=lambda k: -_signature_bytes(probe.signatures[k][1])):
        if time.perf_counter() - start > budget_s:
            return
        yield key


def _clone_like(t: torch.Tensor) -> torch.Tensor:
    """A copy of ``t`` in new memory, with its strides and storage offset."""
    if t._base is not None:
        return t._base.clone().as_strided(t.shape, t.stride(), t.storage_offset())
    return t.clone(memory_format=torch.preserve_format)


def _cold_replay_time(func: Any, args: tuple, kwargs: dict, device: torch.device, repeats: int,
                      ring_bytes: int) -> float:
    """Median wall time of one call with its inputs and output out of cache: each call
    takes the next of ``k`` copies of the inputs and the last ``k`` outputs are kept alive
    (so the allocator hands out memory not touched for ``k`` calls), ``k`` such that the
    copies span ``ring_bytes``."""
    import collections

    from memadvise.collect.op_rates import _nbytes
    from memadvise.collect.timing import timed_once

    with torch.no_grad():
        first = func(*args, **kwargs)
        per_call = _nbytes((args, kwargs)) + _output_bytes(first)
        del first
        k = int(max(1, min(64, ring_bytes // max(per_call, 1))))
        sets = [(args, kwargs)] + [(_walk(_clone_like, args), {n: _walk(_clone_like, v) for n, v in kwargs.items()})
                                   for _ in range(k - 1)]
        outs: collections.deque = collections.deque(maxlen=k)
        times = []
        for i in range(repeats + 2):  # two warm-up calls
            a, kw = sets[i % k]
            result: list = []
            dt = timed_once(lambda a=a, kw=kw, out=result: out.append(func(*a, **kw)), device)
            outs.append(result)
            if i >= 2:
                times.append(dt)
    return statistics.median(times)


def time_signatures(probe: ScratchProbe, device: torch.device, repeats: int = 15, budget_s: float = 5.0,
                    ring_bytes: int | None = None) -> dict[int, float]:
    """Per recorded matmul, convolution or attention op (the signatures the scratch probe
    notes): seconds for one call of its signature replayed alone on fresh tensors, inputs
    and output out of cache (``_cold_replay_time``), median of ``repeats``. The traffic
    model prices these ops at this time: a matmul's rate depends on its shape (a 64x256 by
    256x256 product runs well below a square one of the same FLOPs), which no curve of
    square products captures; and in a step its weights were last touched a step before,
    its saved inputs a forward before, so a replay on the same tensors call after call
    runs faster than the op did in the step (figures:
    ``benchmarks/results/probe-measurements.md``). Costliest signatures (by bytes of
    their inputs) first; stops after ``budget_s``."""
    if ring_bytes is None:  # beyond the last-level cache a core can use on its own
        ring_bytes = (256 if device.type == "cuda" else 64) * 2**20
    out: dict[int, float] = {}
    for key in _costliest_first(probe, budget_s):
        try:
            f, args, kwargs = probe._replay(key)
            seconds = _cold_replay_time(f, args, kwargs, device, repeats, ring_bytes)
        except Exception:  # a signature that cannot be replayed alone: the roofline prices it
            continue
        finally:
            args = kwargs = None
        for i in probe.ops[key]:
            out[i] = seconds
    return out


def time_channels_last(probe: ScratchProbe, device: torch.device, repeats: int = 3) -> dict[int, float]:
    """Per recorded convolution op: time in channels_last memory format over time as
    recorded (contiguous), measured by replaying each signature both ways."""

    def to_cl(t: torch.Tensor) -> torch.Tensor:
        return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t

    out: dict[int, float] = {}
    for key, (func, _margs, _mkwargs) in probe.signatures.items():
        name = getattr(getattr(func, "_overloadpacket", None), "__name__", "")
        if "convolution" not in name:
            continue
        try:
            f, args, kwargs = probe._replay(key)
            base = _replay_time(f, args, kwargs, device, repeats)
            cl = _replay_time(f, *_map_tensors(to_cl, args, kwargs), device, repeats)
        except Exception:  # a signature that does not take channels_last: no estimate
            continue
        if base > 0:
            for i in probe.ops[key]:
                out[i] = cl / base
    return out


def time_autocast(probe: ScratchProbe, device: torch.device, dtype: torch.dtype, repeats: int = 15,
                  budget_s: float = 5.0) -> dict[int, float]:
    """Per recorded matmul or convolution (the signatures the scratch probe notes; other
    ops are estimated from the traffic model): time with its floating-point tensor inputs in
    ``dtype`` (as they arrive under ``torch.autocast``: matmuls and convolutions cast,
    pointwise ops fed low-precision activations) over time as recorded, measured by
    replaying each signature both ways. Ops autocast keeps in float32 are left out (ratio
    1), as is anything that fails in ``dtype``. Stops after ``budget_s`` of replays."""
    from memadvise.schema.ops import runs_in_float32 as _runs_in_float32

    def low(t: torch.Tensor) -> torch.Tensor:
        return t.to(dtype) if t.dtype == torch.float32 else t

    out: dict[int, float] = {}
    for key in _costliest_first(probe, budget_s):
        func = probe.signatures[key][0]
        name = getattr(getattr(func, "_overloadpacket", None), "__name__", "")
        if _runs_in_float32(name):
            continue
        try:
            f, args, kwargs = probe._replay(key)
            if not any(isinstance(a, torch.Tensor) and a.dtype == torch.float32 for a in _flat(args)):
                continue
            base = _replay_time(f, args, kwargs, device, repeats)
            lowered = _replay_time(f, *_map_tensors(low, args, kwargs), device, repeats)
        except Exception:  # no kernel in the low precision, mixed-dtype arguments: no estimate
            continue
        if base > 0:
            for i in probe.ops[key]:
                out[i] = lowered / base
    return out


def _map_tensors(fn: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """``args`` and ``kwargs`` with ``fn`` applied to every tensor, nested lists included."""
    return _walk(fn, args), {k: _walk(fn, v) for k, v in kwargs.items()}


def _flat(x: Any):
    if isinstance(x, (list, tuple)):
        for v in x:
            yield from _flat(v)
    else:
        yield x


def _signature_bytes(margs: Any) -> int:
    total = 0
    for a in _flat(margs):
        if isinstance(a, _TensorMeta):
            n = 1
            for s in a.shape:
                n *= s
            total += n * a.dtype.itemsize
    return total
