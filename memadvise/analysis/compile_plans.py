"""``compile(budget=b)`` plans: the step under ``torch.compile`` with
``torch._functorch.config.activation_memory_budget = b``, predicted from the partition
the profile recorded (``--compile-plans``; see ``collect.compile_plans``).

Memory: the recorded step is replayed by the simulator with the compiled region swapped
in, per forward call of the root model:

* every tensor autograd saved inside the compiled modules is no longer saved (it dies
  where the program drops it, as under a checkpoint);
* the compiled forward's saved storages take their place: each made at its kernel in the
  forward graph (as a fraction of the graph's kernels, mapped onto the call's forward)
  and freed where the backward graph frees it (mapped onto the span of the region's
  eager backward);
* the eager forward's values that die inside the call, and the eager backward's own
  allocations in its span, gradients excepted, are replaced by the graphs' own buffers;
  the eager backward's kernel scratch in that span is dropped (measured: the compiled
  backward's library kernels do without it, sample ResNet on CPU);
* each gradient the backward graph returns is made at its kernel (the eager gradient of
  the same size is moved there; with none, it is a buffer until the graph returns).

Where the profile has Inductor's generated code (``buffers: "inductor"``: the scheduler's
kernel order, buffer reuse, donated inputs, the forward's output layouts), the buffers
are Inductor's own. Where its code generation failed, they are estimated from the graph
order (library-kernel inputs and outputs, reductions, values read twice or more; the
compiled forward's temporaries taken as the eager forward's), and the profile says so.

Approximations, said: graph buffers are placed by kernel count, not by time; with graph
breaks, graphs share the region's span in proportion to their op counts and the modules
that stay eager keep their eager saves; the compiled kernels' own scratch is taken as none.

Time: the traffic model's ``compile`` estimate (fusion, graph overhead, measured by
``--probe-compile`` where given) is the budget-1.0 plan; a lower budget adds the
matmul/convolution FLOPs the partition recomputes, priced at the profile's measured
matmul rate (the recomputed pointwise ops are taken as fused into backward kernels: free).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from memadvise.analysis.simulator import Replacement, SimResult, Simulator, _Effect
from memadvise.schema.categories import Category, Phase
from memadvise.schema.profile import Profile

_ACT = int(Category.ACTIVATION)
_TMP = int(Category.TEMPORARY)
_EPS = 1e-3  # clock offset of a graph buffer from the eager op clock it lands on


@dataclass
class CompilePlan:
    """One budget's predicted step. ``result`` is the simulator's; ``row`` the profile's
    partition at that budget; ``time_notes`` how the step time was reached."""

    budget: float
    result: SimResult
    row: dict
    non_monotonic: bool = False
    time_notes: list[str] = field(default_factory=list)


def available(profile: Profile) -> tuple[bool, str]:
    """Whether the profile carries compile plans, and why not in one sentence."""
    doc = profile.doc.get("compile_plans")
    if doc is None:
        return False, "not measured: `memadvise profile --compile-plans` reads torch.compile's partition per budget"
    if not doc.get("available"):
        return False, str(doc.get("reason") or "unavailable")
    return True, ""


def _region_calls(profile: Profile, sim: Simulator) -> list[int]:
    t = sim.trace
    root = sim.unit_index.get("")
    if root is None:
        return []
    return [int(c) for c in t.calls_of_unit.get(root, [])]


def eager_units(profile: Profile) -> list[str]:
    """Modules of the root model that no compiled graph covers (graph breaks): they stay eager."""
    doc = profile.doc.get("compile_plans") or {}
    covered = set(doc.get("compiled_modules") or [])
    if not doc.get("graph_breaks") or not covered:
        return []
    out = []
    for u in profile.records.units:
        name = u.name
        if not u.in_root or name == "":
            continue
        if name not in covered and not any(name.startswith(c + ".") for c in covered if c):
            out.append(name)
    # only the outermost eager module of each eager subtree
    return [n for n in out if not any(n.startswith(o + ".") for o in out if o != n)]


def replacement(profile: Profile, sim: Simulator, row: dict) -> Replacement:
    """The compiled region at one budget, as the simulator's ``Replacement``."""
    t = sim.trace
    calls = _region_calls(profile, sim)
    eager = set(sim.unit_index[n] for n in eager_units(profile) if n in sim.unit_index)
    end = t.call_subtree_end
    fwd = np.nonzero(t.forward_saves)[0]
    drop = np.zeros(len(t.sv_storage), dtype=bool)
    erase = np.zeros(len(t.st_bytes), dtype=bool)
    alloc, free, nbytes, cat, q = [], [], [], [], []
    no_scratch = np.zeros(len(t.op_clock), dtype=bool)
    moved: list[int] = []
    moved_alloc: list[float] = []
    graphs = row.get("graphs") or []
    for c in calls:
        lo, hi = int(c), int(end[c])
        in_call = (t.sv_call[fwd] >= lo) & (t.sv_call[fwd] < hi)
        for e_call in range(lo, hi):  # saves inside modules that stay eager are kept
            if int(t.call_unit[e_call]) in eager:
                in_call &= ~((t.sv_call[fwd] >= e_call) & (t.sv_call[fwd] < end[e_call]))
        drop[fwd[in_call]] = True
        fw_lo, fw_hi = float(t.call_start[c]), float(t.call_end[c])
        owned = (t.op_phase == int(Phase.BACKWARD)) & (t.op_owner >= lo) & (t.op_owner < hi)
        if not owned.any() or not graphs:
            continue
        clocks = t.op_clock[owned]
        bw_lo, bw_hi = float(clocks.min()), float(clocks.max()) + 1.0
        # the eager backward's own allocations in that span become the graph's buffers
        in_span = (t.st_alloc >= bw_lo) & (t.st_alloc < bw_hi) & (t.st_alloc_phase == int(Phase.BACKWARD)) \
            & (t.st_category != int(Category.GRADIENT)) & (t.st_category != int(Category.PARAMETER)) \
            & (t.st_category != int(Category.OPTIMIZER_STATE))
        erase |= in_span
        # and so is the scratch its library kernels used inside them: measured, the compiled
        # backward's kernels (Inductor's layouts) do without it (sample ResNet, CPU)
        no_scratch |= owned
        generated = all("forward_work" in g for g in graphs)  # Inductor's own buffers, both graphs
        if generated:
            # the eager forward's values that die inside the call (temporaries, and the saves
            # dropped above) become the forward graph's buffers and its saved values
            erase |= (t.st_alloc >= fw_lo) & (t.st_alloc < fw_hi) & (t.st_alloc_phase == int(Phase.FORWARD)) \
                & (t.st_nat <= fw_hi) & (t.st_category != int(Category.PARAMETER)) \
                & (t.st_category != int(Category.GRADIENT)) & (t.st_category != int(Category.OPTIMIZER_STATE)) \
                & (t.st_category != int(Category.INPUT))
            grads = np.nonzero((t.st_alloc >= bw_lo) & (t.st_alloc < bw_hi) & (t.st_category == int(Category.GRADIENT)))[0]
            eager_grads: dict[int, list[int]] = {}  # bytes -> the eager gradients of that size, in order made
            for i in grads[np.argsort(t.st_alloc[grads], kind="stable")]:
                eager_grads.setdefault(int(t.st_bytes[i]), []).append(int(i))
        fw_total = sum(max(1, g.get("forward_nodes", 1)) for g in graphs)
        bw_total = sum(max(1, g.get("backward_nodes", 1)) for g in graphs)
        fw_at = fw_lo
        bw_at = bw_hi  # backward graphs run in reverse order of their forwards
        for g in graphs:
            f_span = (fw_hi - fw_lo) * max(1, g.get("forward_nodes", 1)) / fw_total
            b_span = (bw_hi - bw_lo) * max(1, g.get("backward_nodes", 1)) / bw_total
            g_bw_lo = bw_at - b_span
            for made, last, b in g.get("saved_lifetimes") or []:
                alloc.append(fw_at + made * f_span)
                free.append(g_bw_lo + last * b_span + _EPS)
                nbytes.append(int(b))
                cat.append(_ACT)
            def buffer(start: float, end: float, b: int) -> None:  # a graph's own buffer, queried where live
                alloc.append(start - _EPS)
                free.append(max(end + _EPS, start + _EPS))
                nbytes.append(int(b))
                cat.append(_TMP)
                q.append(start - _EPS / 2)

            for made, last, b in g.get("backward_work") or []:
                buffer(g_bw_lo + made * b_span, g_bw_lo + last * b_span, b)
            for made, last, b in g.get("forward_work") or []:
                buffer(fw_at + made * f_span, fw_at + last * f_span, b)
            if generated:
                # each gradient the graph returns is made at its kernel: the eager gradient of
                # the same size in the span is moved there; with none (accumulation into an
                # existing .grad) it is a buffer until the graph returns
                for made, b in g.get("gradients") or []:
                    start = g_bw_lo + made * b_span
                    same_size = eager_grads.get(int(b))
                    if same_size:
                        moved.append(same_size.pop(0))
                        moved_alloc.append(start - _EPS)
                    else:
                        buffer(start, g_bw_lo + b_span, b)
            fw_at += f_span
            bw_at = g_bw_lo
    effect = _Effect.of([np.asarray(alloc, dtype=np.float64)], [np.asarray(free, dtype=np.float64)],
                        [np.asarray(nbytes, dtype=np.int64)], [np.asarray(cat, dtype=np.int8)], [], [],
                        np.asarray(q, dtype=np.float64), 0.0)
    erase_idx = np.nonzero(erase & t.on_device)[0]
    per_call = int(sum(int(b) for g in graphs for _m, _l, b in (g.get("saved_lifetimes") or [])))
    # bytes held when backward starts: one set of saved values per call of the region
    return Replacement(saves=np.nonzero(drop)[0], erase=erase_idx, effect=effect,
                       activation_bytes=per_call * len(calls), no_scratch=np.nonzero(no_scratch)[0],
                       moved=np.asarray(moved, dtype=np.int64), moved_alloc=np.asarray(moved_alloc, dtype=np.float64))


def matmul_rate(sim: Simulator) -> float | None:
    """FLOPs per second of the profile's matmuls and convolutions (uninstrumented scale)."""
    t = sim.trace
    has = t.op_flops > 0
    seconds = float(t.op_dur_us[has].sum()) * sim.time_scale / 1e6
    if not has.any() or seconds <= 0:
        return None
    return float(t.op_flops[has].sum()) / seconds


def predict(profile: Profile, sim: Simulator, *, compile_delta_s: float | None) -> list[CompilePlan]:
    """Every budget of the profile's ladder, predicted; ``compile_delta_s`` is the traffic
    model's step-time change of ``torch.compile`` at the default budget (None: unknown,
    taken as 0 and said)."""
    ok, _ = available(profile)
    if not ok:
        return []
    rows = sorted(profile.doc["compile_plans"]["budgets"], key=lambda r: -float(r["budget"]))
    rate = matmul_rate(sim)
    ref_flops = next((int(r.get("recomputed_flops", 0)) for r in rows if float(r["budget"]) >= 1.0), 0)
    plans = []
    for row in rows:
        rep = replacement(profile, sim, row)
        notes = []
        extra_s = compile_delta_s if compile_delta_s is not None else 0.0
        if compile_delta_s is None:
            notes.append("compile's fusion not estimated: step time of eager plus recompute")
        flops = int(row.get("recomputed_flops", 0)) - ref_flops
        if flops and rate:
            extra_s += flops / rate * len(_region_calls(profile, sim))
            notes.append(f"recomputes {flops / 1e6:.1f} MFLOP of matmuls at the profile's {rate / 1e9:.1f} GFLOP/s")
        rep.effect.us = extra_s * 1e6
        result = sim.simulate((), replace=rep)
        plans.append(CompilePlan(budget=float(row["budget"]), result=result, row=row, time_notes=notes))
    # a lower budget with a higher predicted peak than a higher budget (pytorch#197838)
    best = None
    for p in plans:  # from the highest budget down
        if best is not None and p.result.peak_bytes > best:
            p.non_monotonic = True
        best = p.result.peak_bytes if best is None else min(best, p.result.peak_bytes)
    return plans
