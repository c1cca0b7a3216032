"""``suggest``: predict every strategy on a profile, find the budget-optimal plan, rank.

Pure: reads a profile document, runs no model, imports no torch.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone


from memadvise._version import __version__
from memadvise._errors import UsageError
from memadvise.analysis.simulator import SimResult, Simulator
from memadvise.analysis.units import UnitTree
from memadvise.planning import solver, strategies
from memadvise.schema.actions import Action, display_unit
from memadvise.schema.categories import Phase
from memadvise.schema.plan import FORMAT, SCHEMA_VERSION
from memadvise.schema.profile import Profile
from memadvise.sizes import Budget, format_bytes

RECOMMEND_MAX_OVERHEAD = 0.10  # without a budget: the lowest peak at ≤ 10% step-time overhead


def _pareto(points: list[tuple[int, float]]) -> list[bool]:
    """Non-dominated flags for (peak, time) pairs, both minimised."""
    flags = []
    for i, (p, t) in enumerate(points):
        dominated = any(
            (p2 <= p and t2 <= t) and (p2 < p or t2 < t) for j, (p2, t2) in enumerate(points) if j != i
        )
        flags.append(not dominated)
    return flags


def _warnings(tree: UnitTree, actions: list[Action]) -> list[str]:
    out = []
    rng = [a.unit for a in actions if tree.units[tree.by_name[a.unit]].record.uses_rng]
    if rng:
        out.append(f"{len(rng)} unit(s) draw random numbers (dropout): RNG state is preserved, a small cost per call")
    bn = [a.unit for a in actions if _restore_buffers(tree, a.unit)]
    if bn:
        out.append(f"{len(bn)} unit(s) update buffers in forward (BatchNorm running stats): they would update "
                   "twice under recompute, so the patch restores them after each recompute")
    multi = [a.unit for a in actions if tree.units[tree.by_name[a.unit]].record.calls > 1]
    if multi:
        out.append(f"{len(multi)} unit(s) run several times per step ({display_unit(multi[0])}...): "
                   "each call is checkpointed and recomputed")
    return out


def _restore_buffers(tree: UnitTree, unit: str) -> bool:
    rec = tree.units[tree.by_name[unit]].record
    return rec.batchnorm_training or rec.mutates_state


def _phase_peak(timeline, phase: Phase) -> int:
    m = timeline.phase == int(phase)
    return int(timeline.total[m].max()) if m.any() else 0


BISECTION_STEPS = 6  # peak budgets tried for the lowest peak at ≤ 10% overhead (fewer on big profiles)


def _lowest_peak_within(sim: Simulator, tree: UnitTree, lo: int, hi: int, max_overhead: float, *, device_type: str,
                        seeds, units, options) -> tuple[int, solver.Solution] | None:
    """The plan with the lowest predicted peak whose predicted overhead is ≤ ``max_overhead``
    among the solver's cheapest plans at peak budgets bisected in [lo, hi]: (budget, plan)."""
    best = None
    steps = BISECTION_STEPS if len(units) <= 512 else 3
    for _ in range(steps):
        mid = (lo + hi) // 2
        sol = solver.solve(sim, tree, mid, device_type=device_type, seeds=seeds, units=units, options=options)
        if sol is not None and sol.actions and sol.result.overhead <= max_overhead:
            best, hi = (mid, sol), mid
        else:
            lo = mid
    return best


def suggest(profile: Profile, *, budget: Budget | None = None, profile_path: str | None = None,
            budget_metric: str = "peak", allow_precision: bool = False) -> dict:
    """The plan document: baseline, ranked plans with predictions, recommendation.

    ``budget`` limits the predicted peak, or the activation memory with
    ``budget_metric="activation"`` (a percentage is then of the baseline's activations).
    """
    if budget_metric not in ("peak", "activation"):
        raise UsageError(f"budget metric {budget_metric!r} is not peak or activation")
    t0 = time.perf_counter()
    sim = Simulator(profile)
    tree = UnitTree(profile, sim.trace)
    device_type = profile.device_type
    base = sim.baseline()
    base_tl = sim.trace.baseline_timeline()
    reference = base.activation_bytes if budget_metric == "activation" else base.peak_bytes
    budget_bytes = budget.resolve(reference) if budget is not None else None
    metric_of = (lambda r: r.activation_bytes) if budget_metric == "activation" else (lambda r: r.peak_bytes)
    if budget_bytes is not None and budget_bytes <= 0:
        raise UsageError("budget must be larger than zero")

    cands, unavailable = strategies.candidates(tree, device_type=device_type)
    evaluated: list[tuple[str, str, list[Action], SimResult]] = []
    seen: dict[tuple, int] = {}
    for c in cands:
        key = tuple(sorted(c.actions))
        if key in seen:  # the same actions under another name: one row, both names
            i = seen[key]
            name, desc, acts, res = evaluated[i]
            evaluated[i] = (name, f"{desc} (same as {c.strategy})", acts, res)
            continue
        seen[key] = len(evaluated)
        evaluated.append((c.strategy, c.description, c.actions, sim.simulate(c.actions)))

    # the budget-optimal plan at the asked budget, and at a few others for the front
    floor_guess = min([r.peak_bytes for *_, r in evaluated] + [base.peak_bytes])
    targets: list[tuple[str, int, str]] = []
    if budget_bytes is not None:
        targets.append(("budget-optimal", budget_bytes, budget_metric))
    span = base.peak_bytes - floor_guess
    if span > 0:
        for f in (0.25, 0.5, 0.75, 1.0):
            target = int(base.peak_bytes - f * span)
            targets.append((f"optimal-{int(round(100 * target / base.peak_bytes))}%", target, "peak"))
    seeds = [c.actions for c in cands]
    solved_at: dict[str, solver.Solution] = {}
    units = solver.candidate_units(tree, sim)
    options = solver.options_for(tree, sim, units, device_type=device_type)
    for name, target, metric in targets:
        sol = solver.solve(sim, tree, target, device_type=device_type, seeds=seeds, units=units, options=options,
                           metric=metric)
        if sol is not None and sol.actions:
            solved_at[name] = sol
            key = tuple(sorted(sol.actions))
            if key in seen:
                continue
            seen[key] = len(evaluated)
            what = "activation memory" if metric == "activation" else "peak"
            desc = f"cheapest plan with predicted {what} ≤ {format_bytes(target)} ({sol.method} search, {sol.evaluated} simulations)"
            evaluated.append((name, desc, sol.actions, sol.result))

    # without a budget the recommendation is the lowest peak at ≤ 10% overhead: search the
    # peak budget for it (bisection between the lowest peak found and the baseline's)
    if budget_bytes is None and span > 0:
        within = _lowest_peak_within(sim, tree, floor_guess, base.peak_bytes, RECOMMEND_MAX_OVERHEAD,
                                     device_type=device_type, seeds=seeds, units=units, options=options)
        if within is not None:
            target, sol = within
            key = tuple(sorted(sol.actions))
            if key not in seen:
                seen[key] = len(evaluated)
                name = f"optimal-{int(round(100 * sol.result.peak_bytes / base.peak_bytes))}%"
                if any(n == name for n, *_ in evaluated):
                    name += "-10"
                evaluated.append((name, f"lowest predicted peak at ≤ {RECOMMEND_MAX_OVERHEAD:.0%} overhead found "
                                  f"(cheapest plan with peak ≤ {format_bytes(target)}, {sol.method} search)",
                                  sol.actions, sol.result))

    from memadvise.planning.compile_budget import compile_candidates

    compiled, compile_notes, compile_unavailable = compile_candidates(profile, sim)
    for c in compiled:
        evaluated.append((c.name, c.description, [], c.plan.result))
    compile_of = {c.name: c for c in compiled}

    base_doc = {
        "peak_bytes": base.peak_bytes,
        "activation_bytes": base.activation_bytes,
        "step_time_s": sim.base_step_s,
        "by_category_at_peak": base.by_category_at_peak,
        "peak_phase": base.peak_phase,
    }
    plans = []
    result_of: dict[int, SimResult] = {}  # id of a plan's document -> its prediction, for ranking
    points = [(base.peak_bytes, sim.base_step_s)] + [(r.peak_bytes, r.step_time_s) for *_, r in evaluated]
    front = _pareto(points)
    for (strategy, desc, actions, r), on_front in zip(evaluated, front[1:]):
        saved = base.peak_bytes - r.peak_bytes
        extra_ms = max(r.recompute_ms, 1e-9)
        plans.append({
            "rank": 0,
            "strategy": strategy,
            "description": desc,
            "actions": [dict(a.to_json(), restore_buffers=_restore_buffers(tree, a.unit)) for a in sorted(actions)],
            "predicted": r.predicted(),
            "change": {
                "peak": r.peak_bytes / base.peak_bytes - 1 if base.peak_bytes else 0.0,
                "activation": r.activation_bytes / base.activation_bytes - 1 if base.activation_bytes else 0.0,
            },
            "bytes_saved_per_ms": saved / extra_ms if saved > 0 else 0.0,
            "pareto": bool(on_front),
            "meets_budget": (metric_of(r) <= budget_bytes) if budget_bytes is not None else None,
            "warnings": _warnings(tree, actions),
            # what the plan recomputes, by op: µs of predicted recompute time, bytes freed
            "recompute": [dict(row, us=round(row["us"], 3)) for row in sim.recomputed_ops(actions)],
        })
        result_of[id(plans[-1])] = r
        if strategy in compile_of:
            plans[-1]["compile"] = compile_of[strategy].doc()
            plans[-1]["warnings"] = compile_of[strategy].warnings

    # rank: with a budget, plans that meet it by step time, then the rest by peak;
    # without, the recommendation first, then the front by peak, then the rest by peak
    def res(p: dict) -> SimResult:
        return result_of[id(p)]

    recommended = None
    # a budget the script already meets: say so, recommend nothing (any plan only costs time)
    met_by_baseline = budget_bytes is not None and reference <= budget_bytes
    if budget_bytes is not None:
        fits = sorted([p for p in plans if p["meets_budget"]], key=lambda p: (res(p).step_time_s, res(p).peak_bytes))
        rest = sorted([p for p in plans if not p["meets_budget"]], key=lambda p: (res(p).peak_bytes, res(p).step_time_s))
        ordered = fits + rest
        recommended = fits[0] if fits and not met_by_baseline else None
    else:
        front_plans = [p for p in plans if p["pareto"] and res(p).peak_bytes < base.peak_bytes]
        cheap = [p for p in front_plans if res(p).overhead <= RECOMMEND_MAX_OVERHEAD]
        if cheap:
            recommended = min(cheap, key=lambda p: (res(p).peak_bytes, res(p).step_time_s))
        elif front_plans:
            recommended = min(front_plans, key=lambda p: (res(p).overhead, res(p).peak_bytes))
        ordered = ([recommended] if recommended else []) + sorted(
            [p for p in plans if p is not recommended],
            key=lambda p: (not p["pareto"], res(p).peak_bytes, res(p).step_time_s),
        )
    for i, p in enumerate(ordered, start=1):
        p["rank"] = i

    results = [res(p) for p in plans]
    lowest = min([int(r.peak_bytes) for r in results] + [base.peak_bytes])
    lowest_activation = min([int(r.activation_bytes) for r in results] + [base.activation_bytes])
    opt_peak = _phase_peak(base_tl, Phase.OPTIMIZER)
    notes = []
    if base.peak_phase == "optimizer":
        notes.append(f"the peak is in optimizer.step() ({format_bytes(base.peak_bytes)}): recompute cannot lower it")
    elif any(r.peak_phase == "optimizer" and r.peak_bytes == lowest for r in results):
        notes.append(f"the lowest plans peak in optimizer.step() ({format_bytes(opt_peak)}): below that, "
                     "recompute cannot help; the optimizer's state and temporaries set the floor")
    dist = profile.doc.get("distributed") or {}
    if dist.get("world_size", 1) > 1:
        peaks = ", ".join(f"rank {r['rank']} {format_bytes(r['peak_bytes'])}" for r in dist.get("ranks", []))
        notes.append(f"predicted for rank {dist.get('worst_rank', dist.get('rank'))}, the one that peaks highest of "
                     f"{dist['world_size']} ({peaks}): the rank that would run out of memory first")
    if met_by_baseline:
        what = "activation memory" if budget_metric == "activation" else "peak"
        notes.append(f"the budget {format_bytes(budget_bytes)} is at or above the baseline {what} "
                     f"({format_bytes(reference)}): the script fits as it is, so no plan is recommended")
    if recommended is not None and budget_metric == "activation":
        # an activation budget can pick a plan that another plan beats on peak and time
        # (a low compile budget whose backward peaks higher, pytorch#197838): say so
        rec = res(recommended)
        better = min((p for p in plans if p is not recommended and res(p).peak_bytes < rec.peak_bytes
                      and res(p).step_time_s <= rec.step_time_s), key=lambda p: res(p).peak_bytes, default=None)
        if better is not None:
            b = res(better)
            notes.append(f"{better['strategy']} is predicted to peak lower ({format_bytes(b.peak_bytes)} against "
                         f"{format_bytes(rec.peak_bytes)}) at no more step time, but holds "
                         f"{format_bytes(b.activation_bytes)} of activations, over the budget: if the peak is "
                         "the limit, budget the peak (--budget-metric peak)")
    if base.activation_bytes == 0:
        notes.append("the step holds no activations for backward: there is nothing to recompute")
    elif budget_bytes is None and recommended is None and base.peak_phase != "optimizer":
        at_peak = sorted(((v, k) for k, v in base.by_category_at_peak.items()
                         if v > 0 and k != "activation"), reverse=True)
        held = ", ".join(f"{k.replace('_', ' ')} {format_bytes(v)}" for v, k in at_peak[:3])
        notes.append(f"no plan lowers the peak ({format_bytes(base.peak_bytes)}): activations held for "
                     f"backward are {format_bytes(base.activation_bytes)}, the rest is {held}; recompute cannot help "
                     "this step (see the traffic section for its time)")

    recommendation = None
    if recommended is not None:
        reason = (f"fastest plan with predicted {'activation memory' if budget_metric == 'activation' else 'peak'} "
                  f"under the budget {format_bytes(budget_bytes)}" if budget_bytes is not None
                  else f"lowest predicted peak at ≤ {RECOMMEND_MAX_OVERHEAD:.0%} step-time overhead"
                  if res(recommended).overhead <= RECOMMEND_MAX_OVERHEAD
                  else "cheapest plan on the Pareto front")
        recommendation = {"rank": recommended["rank"], "strategy": recommended["strategy"], "reason": reason}
    rec_tuple = None
    if recommended is not None:
        match = next(((n, a, r) for n, _d, a, r in evaluated if n == recommended["strategy"]), None)
        rec_tuple = match if recommended["strategy"] not in compile_of else None
    from memadvise.planning.traffic_plans import traffic_section

    traffic = traffic_section(profile, sim, allow_precision=allow_precision, recommended=rec_tuple)
    free = next((t for t in traffic["plans"] if t["strategy"] == "free-grads"), None)
    if free is not None and free["predicted"]["peak_bytes"] < base.peak_bytes:
        peak = free["predicted"]["peak_bytes"]
        notes.append(f"the previous step's gradients are alive at the forward peak (zero_grad() after the forward): "
                     f"dropping them before the forward lowers the peak to {format_bytes(peak)} "
                     f"({(peak / base.peak_bytes - 1) * 100:+.1f}%) with no recompute: "
                     "apply --traffic free-grads (or call zero_grad() before the forward)")
    doc = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tool": {"name": "memadvise", "version": __version__},
        "profile": {"path": profile_path or (str(profile.path) if profile.path else None),
                    "created_at": profile.doc.get("created_at")},
        "script": dict(profile.script),
        "model": profile.doc.get("model", {}),
        "settings": profile.doc.get("settings", {}),
        "distributed": profile.doc.get("distributed"),
        "environment": profile.environment,
        "budget": ({"text": budget.text, "bytes": budget_bytes, "metric": budget_metric,
                    "met_by_baseline": met_by_baseline} if budget is not None else None),
        "baseline": base_doc,
        "lowest_peak_bytes": lowest,
        "lowest_activation_bytes": lowest_activation,
        "optimizer_peak_bytes": opt_peak,
        "recommendation": recommendation,
        "plans": ordered,
        "traffic": traffic,
        "optimizer": profile.doc.get("optimizer"),
        "unavailable": [{"strategy": u.strategy, "reason": u.reason} for u in unavailable] + compile_unavailable,
        "notes": notes + compile_notes,
        "suggest_time_s": round(time.perf_counter() - t0, 4),
    }
    return doc

