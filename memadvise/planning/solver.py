"""The budget-optimal plan: the mix of actions on disjoint units that minimises predicted
step time subject to predicted peak ≤ budget, with the simulator as the only judge.

Step-time cost is additive over actions (each checkpointed call adds its own recompute
and fixed costs: ``Simulator.cost_us``), memory is not (frames, shared saved tensors and
recompute spikes interact), so every answer is checked by a full simulation.

* Up to ``EXACT_LIMIT`` candidate units: every valid assignment (no two nested units
  acted on, one action per unit) is enumerated in increasing cost and simulated until
  the first one fits: the exact optimum for the same objective and simulator.
* Beyond that: a ratio greedy (bytes an action frees per microsecond of recompute,
  estimated from the trace in one pass), a binary search on how many actions to take,
  then pruning of actions the plan no longer needs, and the best of that and of the
  strategies' plans. Tens of simulations, whatever the model size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memadvise.analysis.simulator import SimResult, Simulator
from memadvise.analysis.units import UnitTree
from memadvise.schema.actions import CHECKPOINT, DEFAULT_POLICY, OFFLOAD, SELECTIVE, Action

EXACT_LIMIT = 16
MAX_ENUMERATED = 200_000
PRUNE_TRIES = 24  # single-action refinements after the greedy, whatever the model size


@dataclass
class Option:
    unit: int
    action: Action
    cost_us: float
    freed_bytes: int  # estimated activation bytes this action frees (orders the greedy only)


@dataclass
class Solution:
    actions: list[Action]
    result: SimResult
    cost_us: float
    method: str  # "exact" or "heuristic"
    evaluated: int


def candidate_units(tree: UnitTree, sim: Simulator, *, limit: int = 4096) -> list[int]:
    """Units worth acting on: checkpointable and holding activations; at most ``limit``,
    the ones holding most first."""
    out = []
    for unit in tree.units:
        if unit.record.get("activation_bytes", 0) <= 0 or tree.checkpoint_problem(unit.index) is not None:
            continue
        out.append(unit.index)
    out.sort(key=lambda u: -tree.units[u].record.get("activation_bytes", 0))
    return sorted(out[:limit])


def options_for(tree: UnitTree, sim: Simulator, units: list[int], *, device_type: str,
                selective: bool = True, offload: bool = True) -> dict[int, list[Option]]:
    out: dict[int, list[Option]] = {}
    for u in units:
        name = tree.units[u].name
        acts = [Action(name, CHECKPOINT)]
        if selective and tree.selective_problem(u, DEFAULT_POLICY) is None:
            acts.append(Action(name, SELECTIVE, DEFAULT_POLICY))
        if offload and device_type == "cuda":
            acts.append(Action(name, OFFLOAD))
        rec = tree.units[u].record
        # what the unit's own saved tensors weigh, less what its frame keeps (its inputs):
        # a one-pass estimate that only orders the greedy; simulations decide
        estimate = max(0, int(rec.get("activation_bytes", 0)) - int(rec.get("input_bytes", 0)))
        opts = []
        for a in acts:
            cost = sim.cost_us([a])
            freed = estimate if a.action != SELECTIVE else estimate // 2
            opts.append(Option(u, a, cost, freed))
        out[u] = opts
    return out


def _assignments(tree: UnitTree, units: list[int], options: dict[int, list[Option]]):
    """All valid assignments over ``units`` (no nesting), as lists of Options."""
    unit_set = set(units)
    # forest restricted to candidate units: parent = nearest candidate ancestor
    parent: dict[int, int | None] = {}
    for u in units:
        p = next((a for a in tree.ancestors(u) if a in unit_set), None)
        parent[u] = p
    children: dict[int | None, list[int]] = {}
    for u in units:
        children.setdefault(parent[u], []).append(u)

    def subtree(u: int) -> list[list[Option]]:
        below = [[]]
        for c in children.get(u, []):
            below = [a + b for a in below for b in subtree(c)]
            if len(below) > MAX_ENUMERATED:
                raise OverflowError
        return below + [[o] for o in options[u]]

    combos = [[]]
    for r in children.get(None, []):
        combos = [a + b for a in combos for b in subtree(r)]
        if len(combos) > MAX_ENUMERATED:
            raise OverflowError
    return combos


def solve(sim: Simulator, tree: UnitTree, budget: int, *, device_type: str,
          seeds: list[list[Action]] | None = None, units: list[int] | None = None,
          selective: bool = True, offload: bool = True, options: dict | None = None,
          metric: str = "peak") -> Solution | None:
    """The cheapest plan with predicted peak (``metric="peak"``) or activation memory
    (``metric="activation"``) ≤ ``budget`` bytes, or None if none is found."""
    fits = _fits(metric, budget)
    units = candidate_units(tree, sim) if units is None else units
    if options is None:
        options = options_for(tree, sim, units, device_type=device_type, selective=selective, offload=offload)
    base = sim.baseline()
    if fits(base):
        return Solution([], base, 0.0, "exact", 1)
    if len(units) <= EXACT_LIMIT:
        try:
            combos = _assignments(tree, units, options)
        except OverflowError:
            combos = None
        if combos is not None:
            costs = np.asarray([sum(o.cost_us for o in c) for c in combos])
            order = np.argsort(costs, kind="stable")
            for n, i in enumerate(order, start=1):
                combo = combos[i]
                if not combo:
                    continue
                actions = [o.action for o in combo]
                result = sim.simulate(actions)
                if fits(result):
                    return Solution(sorted(actions), result, float(costs[i]), "exact", n)
            return None
    return _heuristic(sim, tree, fits, options, seeds or [])


def _fits(metric: str, budget: int):
    if metric == "peak":
        return lambda r: r.peak_bytes <= budget
    if metric == "activation":
        return lambda r: r.activation_bytes <= budget
    raise ValueError(f"unknown budget metric {metric!r}")


def _heuristic(sim: Simulator, tree: UnitTree, fits, options: dict[int, list[Option]],
               seeds: list[list[Action]]) -> Solution | None:
    evaluated = 0
    best: Solution | None = None

    def consider(actions: list[Action]) -> SimResult:
        nonlocal best, evaluated
        evaluated += 1
        result = sim.simulate(actions)
        if fits(result):
            cost = sim.cost_us(actions)
            if best is None or cost < best.cost_us:
                best = Solution(sorted(actions), result, cost, "heuristic", evaluated)
        return result

    def greedy(flat: list[Option]) -> None:
        """Smallest prefix of ``flat`` (best ratio first, conflicts skipped) that fits."""
        flat = sorted(flat, key=lambda o: (-(o.freed_bytes / max(o.cost_us, 1.0)), o.cost_us))

        def pick(prefix: int) -> list[Action]:
            chosen: list[Action] = []
            taken: set[int] = set()  # chosen units
            above: set[int] = set()  # their ancestors
            for o in flat[:prefix]:
                anc = tree.ancestors(o.unit)
                if o.unit in taken or o.unit in above or any(a in taken for a in anc):
                    continue
                chosen.append(o.action)
                taken.add(o.unit)
                above.update(anc)
            return chosen

        lo, hi = 1, len(flat)
        if not hi or not fits(consider(pick(hi))):
            return
        while lo < hi:
            mid = (lo + hi) // 2
            if fits(consider(pick(mid))):
                hi = mid
            else:
                lo = mid + 1

    flat = [o for opts in options.values() for o in opts if o.freed_bytes > 0]
    units = set(options)
    has_below = {a for u in units for a in tree.ancestors(u) if a in units}
    pools = [flat, [o for o in flat if o.unit not in has_below]]  # all units; the finest ones
    for pool in pools:
        greedy(pool)  # any action, by ratio
        for kind in sorted({o.action.action for o in pool}):  # one kind of action only
            greedy([o for o in pool if o.action.action == kind])
    for seed in seeds:
        consider(seed)
    if best is None:
        return None
    # prune: drop the least valuable actions the plan does not need — a binary search
    # for the longest droppable run, then single tries on the most expensive that remain
    by_unit = {o.action: o for opts in options.values() for o in opts}
    current = list(best.actions)

    def value(a: Action) -> float:
        o = by_unit.get(a)
        return (o.freed_bytes / max(o.cost_us, 1.0)) if o else float("inf")

    order = sorted(current, key=value)
    lo, hi = 0, len(order) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(consider(order[mid:])):
            lo = mid
        else:
            hi = mid - 1
    current = order[lo:]
    for a in sorted(current, key=lambda a: -sim.cost_us([a]))[:PRUNE_TRIES]:
        trial = [x for x in current if x != a]
        if trial and fits(consider(trial)):
            current = trial
    # cheaper variants of the most expensive actions: checkpoint → selective where it fits
    for a in sorted(current, key=lambda a: -sim.cost_us([a]))[:PRUNE_TRIES]:
        for o in options.get(tree.by_name.get(a.unit, -1), []):
            if o.action.action != a.action and o.cost_us < sim.cost_us([a]):
                trial = [x for x in current if x != a] + [o.action]
                if fits(consider(trial)):
                    current = trial
                    break
    best.evaluated = evaluated
    return best
