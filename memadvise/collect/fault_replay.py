"""Page faults of a step under a traffic change, from its allocations replayed on this
process's heap.

On CPU a step pays a minor fault for each fresh page its tensors land on, and how many
it lands on depends on glibc's malloc state: its mmap threshold moves up to the largest
block freed so far, its heap is trimmed whenever the free top exceeds twice that, and
the two together decide which allocations come back as recycled pages and which as
fresh ones. A change that halves the activations (autocast) can keep them on the heap
and remove most of a step's faults, a share of its time a model of the ops misses.

A model of glibc's allocator would be one more thing to get wrong. Instead, right after
the run (before ``host_memory.pin_heap``, with the heap as the script left it), the
step's host allocations are replayed in order, ``torch.empty`` and a touch per page,
as recorded and as each change would make them:

* ``autocast``: float32 outputs of forward and backward ops that autocast runs in low
  precision take half the bytes, and each parameter gets a low-precision copy for the
  forward, held to the end of backward (what autocast's weight cache does);
* ``compile``: the outputs of a fused chain's inner ops that backward does not keep
  are never allocated (``schema.roofline.memory_bound_chains``, as the time model fuses);
* ``set_to_none``: each zeroed gradient is freed at ``zero_grad`` and allocated again
  where backward first writes it.

Variants run in interleaved rounds; the model adds ``(faults(change) - faults(recorded))
x page_fault_us`` to a change's predicted time. A single replayed step's count is as
chaotic as a measured one, so a difference of means is what is trusted (figures:
``benchmarks/results/probe-measurements.md``).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from memadvise.collect.host_memory import minor_faults

ALLOC, FREE, FREE_CARRIED, CARRY = 0, 1, 2, 3
_ORDER = {ALLOC: 0, FREE: 1, FREE_CARRIED: 1, CARRY: 2}
PAGE = 4096


@dataclass
class StepAllocations:
    """A step's host allocations in order: what lives across steps (``persistent``), what
    the previous step left for this one to free (``carried``, by size), and events
    ``(kind, key, bytes)``. A storage made in the step and still alive at its end is
    ``CARRY``: the next step frees it (as the recorded step freed its predecessor)."""

    persistent: list[int] = field(default_factory=list)
    carried: list[int] = field(default_factory=list)
    events: list[tuple[int, int, int]] = field(default_factory=list)
    clocks: list[int] = field(default_factory=list)  # of each event, in the recorded step

    def insert(self, clock: int, events: list[tuple[int, int, int]]) -> None:
        """Add ``events`` before the first event at or after ``clock``."""
        k = next((k for k, c in enumerate(self.clocks) if c >= clock), len(self.clocks))
        self.events[k:k] = events
        self.clocks[k:k] = [clock] * len(events)


def step_allocations(trace, *, size_of=None, dropped=None, moved=None) -> StepAllocations:
    """The recorded step's allocations on the training device, with op scratch buffers.

    ``size_of(sid, nbytes)``: bytes under the change; ``dropped``: storage ids never
    allocated; ``moved``: ``{sid: (free clock, alloc clock)}`` for persistent storages
    freed and allocated again inside the step."""
    from memadvise.schema.timeline import FOREVER

    dropped = dropped or set()
    moved = moved or {}
    out = StepAllocations()
    timed: list[tuple[int, int, int, int, int]] = []  # clock, order, kind, key, bytes
    for sid in np.nonzero(trace.on_device)[0]:
        sid = int(sid)
        if sid in dropped:
            continue
        a, f, b = int(trace.st_alloc[sid]), int(trace.st_free[sid]), int(trace.st_bytes[sid])
        if size_of is not None:
            b = int(size_of(sid, b))
        if b <= 0:
            continue
        if sid in moved:
            free_at, alloc_at = moved[sid]
            timed.append((free_at, _ORDER[FREE_CARRIED], FREE_CARRIED, sid, b))
            timed.append((alloc_at, _ORDER[ALLOC], ALLOC, sid, b))
            timed.append((FOREVER, _ORDER[CARRY], CARRY, sid, b))
            out.carried.append(b)
        elif a < 0 and f >= FOREVER:
            out.persistent.append(b)
        elif a < 0:
            out.carried.append(b)
            timed.append((f, _ORDER[FREE_CARRIED], FREE_CARRIED, sid, b))
        else:
            timed.append((a, _ORDER[ALLOC], ALLOC, sid, b))
            timed.append((f, _ORDER[FREE], FREE, sid, b) if f < FOREVER else (FOREVER, _ORDER[CARRY], CARRY, sid, b))
    for i in np.nonzero(trace.op_scratch > 0)[0]:
        c, b, key = int(trace.op_clock[i]), int(trace.op_scratch[i]), -1 - int(i)
        timed.append((c, -2, ALLOC, key, b))  # inside the op: before its output
        timed.append((c, -1, FREE, key, b))
    timed.sort(key=lambda e: (e[0], e[1]))
    out.events = [(kind, key, b) for _, _, kind, key, b in timed]
    out.clocks = [c for c, *_ in timed]
    return out


def _touch(x) -> None:
    x[::PAGE].fill_(1)
    x[-1:].fill_(1)


class _Replayer:
    def __init__(self, plan: StepAllocations) -> None:
        import torch

        self.torch = torch
        self.plan = plan
        self.keep = [self._new(b) for b in plan.persistent]
        self.carried: dict[int, list] = {}
        for b in plan.carried:
            self.carried.setdefault(b, []).append(self._new(b))

    def _new(self, nbytes: int):
        x = self.torch.empty(nbytes, dtype=self.torch.uint8)
        _touch(x)
        return x

    def step(self) -> None:
        live: dict[int, object] = {}
        nxt: dict[int, list] = {}
        carried = self.carried
        for kind, key, b in self.plan.events:
            if kind == ALLOC:
                live[key] = self._new(b)
            elif kind == FREE:
                live.pop(key, None)
            elif kind == FREE_CARRIED:
                same = carried.get(b)
                if same:
                    same.pop()
                else:
                    other = next((v for v in carried.values() if v), None)
                    if other:
                        other.pop()
            else:
                x = live.pop(key, None)
                if x is not None:
                    nxt.setdefault(b, []).append(x)
        for b, xs in carried.items():
            nxt.setdefault(b, []).extend(xs)
        self.carried = nxt

    def close(self) -> None:
        self.keep.clear()
        self.carried.clear()


def replay_faults(plans: dict[str, StepAllocations], *, rounds: int = 10, steps: int = 4,
                  budget_s: float = 8.0) -> dict[str, float] | None:
    """Mean minor faults per replayed step of each plan: ``rounds`` interleaved rounds of
    ``steps`` steps each, the first step of a round (its switch from the previous plan)
    not counted. None where faults cannot be counted; rounds stop early past ``budget_s``."""
    if minor_faults() is None or not plans:
        return None
    counts: dict[str, list[int]] = {name: [] for name in plans}
    start = time.perf_counter()
    for _ in range(rounds):
        for name, plan in plans.items():
            r = _Replayer(plan)
            try:
                r.step()
                for _ in range(steps):
                    f0 = minor_faults()
                    r.step()
                    counts[name].append(minor_faults() - f0)
            finally:
                r.close()
        if time.perf_counter() - start > budget_s:
            break
    return {name: float(statistics.fmean(c)) for name, c in counts.items() if c}


# ------------------------------------------------------------------------- changes
def change_allocations(profile, trace=None) -> dict[str, StepAllocations]:
    """The recorded step's allocations and, where a change applies, each change's."""
    from memadvise.schema.categories import Category, Phase
    from memadvise.schema.ops import MATMUL_KERNEL_OPS, RNG_OPS, VIEW_OPS, runs_in_float32
    from memadvise.schema.roofline import memory_bound_chains, roofline
    from memadvise.schema.trace import Trace

    t = trace or Trace(profile)
    out = {"recorded": step_allocations(t)}
    names = [t.op_name_str(i) for i in range(len(t.op_name))]
    shapes = (profile.trace.get("ops") or {}).get("shape") or []

    # autocast: low-precision outputs, and a low-precision copy of each parameter
    def low(op: int) -> bool:
        if op < 0 or op >= len(shapes) or t.op_phase[op] == Phase.OPTIMIZER:
            return False
        name = names[op]
        return (str(t.strings[int(shapes[op])]).startswith("float32") and not runs_in_float32(name)
                and name not in VIEW_OPS)

    halved = {int(s) for s in np.nonzero(t.on_device)[0]
              if int(t.st_category[s]) in (int(Category.ACTIVATION), int(Category.TEMPORARY)) and low(int(t.st_op[s]))}
    autocast = step_allocations(t, size_of=lambda sid, b: b // 2 if sid in halved else b)
    params = [int(t.st_bytes[s]) // 2 for s in np.nonzero(t.on_device)[0]
              if int(t.st_category[s]) == int(Category.PARAMETER) and int(t.st_alloc[s]) < 0]
    fwd = np.nonzero(t.op_phase == Phase.FORWARD)[0]
    bwd = np.nonzero(t.op_phase == Phase.BACKWARD)[0]
    if len(fwd) and len(bwd) and any(names[i] in MATMUL_KERNEL_OPS or "convolution" in names[i] for i in fwd):
        # cast at the forward's first op, freed where backward ends (the optimizer starts)
        end = t.optimizer_window[0] if t.optimizer_window else int(t.op_clock[bwd[-1]]) + 1
        autocast.insert(int(t.op_clock[fwd[0]]), [(ALLOC, -(10**9) - k, b) for k, b in enumerate(params)])
        autocast.insert(end, [(FREE, -(10**9) - k, b) for k, b in enumerate(params)])
    out["autocast"] = autocast

    # compile: the inner outputs of fused chains that backward does not keep
    r = roofline(profile, t)
    saved = set(int(s) for s in t.sv_storage[t.sv_storage >= 0])
    inner_ops: set[int] = set()
    for i, j in memory_bound_chains(t, r, across_modules=True):
        if t.op_phase[i] == Phase.OPTIMIZER:
            continue
        ops = [k for k in range(i, j + 1) if names[k] not in RNG_OPS]
        if len(ops) >= 2:
            inner_ops.update(ops[:-1])
    dropped = {int(s) for s in np.nonzero(t.on_device)[0]
               if int(t.st_op[s]) in inner_ops and int(s) not in saved and int(t.st_alloc[s]) >= 0}
    out["compile"] = step_allocations(t, dropped=dropped)

    # set_to_none: zeroed gradients freed at zero_grad, allocated where backward writes them
    moved = {}
    zeroed = {}
    for i, name in enumerate(names):
        m = int(t.op_mutates[i])
        if m >= 0 and int(t.st_category[m]) == int(Category.GRADIENT):
            if name == "zero_":
                zeroed[m] = int(t.op_clock[i])
            elif m in zeroed and m not in moved and t.op_phase[i] == Phase.BACKWARD:
                moved[m] = (zeroed[m], int(t.op_clock[i]))
    if moved:
        out["set_to_none"] = step_allocations(t, moved=moved)
    return out


def fault_replay(profile) -> dict | None:
    """``{"recorded": faults, "autocast": ..., "compile": ..., "set_to_none": ...}`` per
    replayed step (means), or None where faults cannot be counted."""
    return replay_faults(change_allocations(profile))
