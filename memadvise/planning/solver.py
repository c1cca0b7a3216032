"""The budget-optimal plan: the mix of actions on disjoint units that minimises predicted
step time subject to predicted peak ≤ budget, with the simulator as the only judge.

Per unit the choices are: nothing, checkpoint, selective recompute keeping a preset's ops
(save-linear, save-matmul, save-torchtitan) or a per-op keep set, and offload (CUDA).
Per-op keep sets: within a unit, the ops that make bytes are ranked by recompute time per
byte they would hold (matmuls, slow and compact, first; softmax, dropout and the other
pointwise ops over large tensors last), and the prefixes of that ranking on the convex
hull of (estimated freed bytes, recompute time) are the candidates. When the instance is
small (at most ``EXACT_CHOICES`` binary choices: a unit acted on or not, each of its ops
kept or not) every subset of its ops is a candidate instead.

Step-time cost is additive over actions (each checkpointed call adds its own recompute
and fixed costs: ``Simulator.cost_us``), memory is not (frames, shared saved tensors and
recompute spikes interact), so every answer is checked by a full simulation.

* Up to ``EXACT_LIMIT`` candidate units: every valid assignment (no two nested units
  acted on, one option per unit) is enumerated in increasing cost and simulated until
  the first one fits: the exact optimum for the same objective, options and simulator.
* Beyond that: greedy choices (the per-unit options' convex hull walked by bytes freed
  per microsecond across units; and ratio greedies over single kinds of action), each a
  binary search on how far to go, then pruning of actions the plan no longer needs and
  cheaper variants of the most expensive ones. Tens of simulations, whatever the size.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from memadvise.analysis.simulator import SimResult, Simulator
from memadvise.analysis.units import CallOps, UnitTree
from memadvise.schema.actions import CHECKPOINT, OFFLOAD, SELECTIVE, Action, Selector, preset_keep

EXACT_LIMIT = 16
EXACT_CHOICES = 16  # binary choices (units, and their ops kept or not) searched exhaustively
MAX_ENUMERATED = 200_000
PRUNE_TRIES = 24  # single-action refinements after the greedy, whatever the model size
VARIANT_TRIES = 48  # simulations spent on cheaper variants of the most expensive actions
LARGE_OPTIONS = 2_000  # beyond this many options, one greedy walk and few refinements
LARGE_REFINE_TRIES = 4
MAX_OP_KEEP_SETS = 4  # per-op keep sets per unit, besides the presets
MAX_PER_OP_UNIT_OPS = 1024  # larger units (a whole model) get the presets only: per-op
# choices are made in the blocks inside them, and a keep list stays readable
SELECTIVE_PRESETS = ("save-linear", "save-matmul", "save-torchtitan")


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
        if unit.record.activation_bytes <= 0 or tree.checkpoint_problem(unit.index) is not None:
            continue
        out.append(unit.index)
    out.sort(key=lambda u: -tree.units[u].record.activation_bytes)
    return sorted(out[:limit])


def binary_choices(tree: UnitTree, units: list[int]) -> int:
    """The exhaustive per-op search space's size in bits: each unit acted on or not, each
    op worth deciding on kept or not."""
    return sum(1 + len(tree.keepable(u)) for u in units)


def _freed_fraction(ops: CallOps, keep: tuple[Selector, ...]) -> float:
    """Share of a checkpoint's freed bytes a selective keep set still frees: kept outputs
    that autograd saves stay held, kept outputs it does not save are held in addition."""
    total = float(ops.out_bytes[ops.saved].sum())
    if total <= 0:
        return 0.0
    kept = ops.kept_mask(keep)
    held = float(ops.out_bytes[kept].sum())
    return max(0.0, (total - held) / total)


def ranked_keep_sets(ops: CallOps, keepable: list[Selector], limit: int = MAX_OP_KEEP_SETS) -> list[tuple[Selector, ...]]:
    """Per-op keep sets for one unit: prefixes of its ops ranked by recompute time per
    byte held (keep the time-dense ops, recompute the byte-heavy cheap ones), those on the
    upper convex hull of (recompute time, freed bytes), at most ``limit`` of them."""
    if len(keepable) < 2:
        return []
    pos = {(n, k): i for i, (n, k) in enumerate(zip(ops.name, ops.k.tolist())) if k >= 0}
    dur, nbytes_, saved = ops.dur_us.tolist(), ops.out_bytes.tolist(), ops.saved.tolist()
    rows = [(s, dur[pos[s]], float(nbytes_[pos[s]]), saved[pos[s]]) for s in keepable if s in pos]
    rows.sort(key=lambda r: -(r[1] / max(r[2], 1.0)))
    total_t = sum(r[1] for r in rows)
    total_b = sum(r[2] for r in rows if r[3])
    pts = [(total_t, total_b, 0)]  # keep nothing (checkpoint)
    t, b = total_t, total_b
    for j, (_s, d, nbytes, _saved) in enumerate(rows[:-1], start=1):
        t -= d
        b -= nbytes
        pts.append((t, b, j))
    pts.append((0.0, 0.0, -1))  # nothing
    pts.sort()
    hull: list[tuple[float, float, int]] = []
    for p in pts:  # upper hull, monotone chain over increasing time
        while len(hull) >= 2:
            (x1, y1, _), (x2, y2, _) = hull[-2], hull[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) >= 0:
                hull.pop()
            else:
                break
        hull.append(p)
    inner = [j for _t, _b, j in hull if j > 0]
    if len(inner) > limit:
        inner = [inner[round(i * (len(inner) - 1) / (limit - 1))] for i in range(limit)]
    return [tuple(r[0] for r in rows[:j]) for j in sorted(set(inner))]


def options_for(tree: UnitTree, sim: Simulator, units: list[int], *, device_type: str,
                selective: bool = True, offload: bool = True, per_op: bool = True,
                exhaustive: bool | None = None) -> dict[int, list[Option]]:
    """Each unit's options, with their exact cost and an estimate of what they free.
    ``exhaustive`` (default: when ``binary_choices`` ≤ ``EXACT_CHOICES``): every subset of
    a unit's ops as a keep set, instead of presets and ranked prefixes."""
    if exhaustive is None:
        exhaustive = selective and per_op and binary_choices(tree, units) <= EXACT_CHOICES
    out: dict[int, list[Option]] = {}
    for u in units:
        name = tree.units[u].name
        acts = [Action(name, CHECKPOINT)]
        calls = tree.call_ops(u)
        ops = calls[0] if calls else None
        fractions = {acts[0]: 1.0}
        if selective and ops is not None:
            keepable = tree.keepable(u)
            if exhaustive:
                keeps = [c for r in range(1, len(keepable) + 1) for c in itertools.combinations(keepable, r)]
            else:
                keeps = [preset_keep(p) for p in SELECTIVE_PRESETS]
                if per_op and len(keepable) <= MAX_PER_OP_UNIT_OPS:
                    keeps += ranked_keep_sets(ops, keepable)
            seen: set[bytes] = set()
            for keep in keeps:
                a = Action(name, SELECTIVE, keep=keep)
                masks = [c.kept_mask(a.kept()) for c in calls]
                key = np.packbits(masks[0]).tobytes()
                # as UnitTree.selective_problem: something kept in every call, nothing kept
                # that the call then writes in place
                if key in seen or not all(m.any() and not (m & c.mutated).any() for m, c in zip(masks, calls)):
                    continue
                seen.add(key)
                acts.append(a)
                fractions[a] = _freed_fraction(ops, a.kept())
        if offload and device_type == "cuda":
            acts.append(Action(name, OFFLOAD))
            fractions[acts[-1]] = 1.0
        rec = tree.units[u].record
        # what the unit's own saved tensors weigh, less what its frame keeps (its inputs):
        # a one-pass estimate that only orders the greedy; simulations decide
        estimate = max(0, rec.activation_bytes - rec.input_bytes)
        out[u] = [Option(u, a, sim.cost_us([a]), int(estimate * fractions[a])) for a in acts]
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
          metric: str = "peak", per_op: bool = True) -> Solution | None:
    """The cheapest plan with predicted peak (``metric="peak"``) or activation memory
    (``metric="activation"``) ≤ ``budget`` bytes, or None if none is found."""
    fits = _fits(metric, budget)
    units = candidate_units(tree, sim) if units is None else units
    if options is None:
        options = options_for(tree, sim, units, device_type=device_type, selective=selective, offload=offload,
                              per_op=per_op)
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
                best = Solution(list(actions), result, cost, "heuristic", evaluated)  # sorted at the end
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

    def hull_greedy(pool: list[Option]) -> None:
        """Walk each unit's options up their convex hull of (cost, freed bytes), all units
        together by marginal bytes per microsecond: the smallest walk that fits."""
        steps: list[tuple[float, int, Option]] = []
        by_unit: dict[int, list[Option]] = {}
        for o in pool:
            by_unit.setdefault(o.unit, []).append(o)
        for opts in by_unit.values():
            cur_c, cur_f = 0.0, 0
            rest = sorted(opts, key=lambda o: (o.cost_us, -o.freed_bytes))
            while True:
                best_o, best_r = None, 0.0
                for o in rest:
                    if o.freed_bytes > cur_f:
                        r = (o.freed_bytes - cur_f) / max(o.cost_us - cur_c, 1e-3)
                        if best_o is None or r > best_r:
                            best_o, best_r = o, r
                if best_o is None:
                    break
                steps.append((best_r, len(steps), best_o))
                cur_c, cur_f = best_o.cost_us, best_o.freed_bytes
                rest = [o for o in rest if o.freed_bytes > cur_f]
        steps.sort(key=lambda x: (-x[0], x[1]))

        def pick(prefix: int) -> list[Action]:
            chosen: dict[int, Action] = {}
            above: set[int] = set()
            for _r, _i, o in steps[:prefix]:
                anc = tree.ancestors(o.unit)
                if o.unit not in chosen and (o.unit in above or any(a in chosen for a in anc)):
                    continue
                chosen[o.unit] = o.action
                above.update(anc)
            return list(chosen.values())

        lo, hi = 1, len(steps)
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
    finest = [o for o in flat if o.unit not in has_below]
    large = len(flat) > LARGE_OPTIONS
    # thousands of options: the repeated blocks' own options (their per-op keep sets cover
    # the ops of the submodules inside them), else the finest units
    blocks = set(tree.blocks) & units
    pools = [[o for o in flat if o.unit in blocks] or finest] if large else [flat, finest]
    for pool in pools:
        hull_greedy(pool)  # per-unit options up their hull, across units by marginal ratio
        if large:  # thousands of units: one walk, a few refinements (each simulation replays it all)
            break
        greedy(pool)  # any action, by ratio
        for kind in sorted({o.action.label() for o in pool} & {CHECKPOINT, OFFLOAD, SELECTIVE + ":save-linear",
                                                                SELECTIVE + ":save-matmul"}):
            greedy([o for o in pool if o.action.label() == kind])  # one kind of action only
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
    lo, hi = 0, 0 if large else len(order) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(consider(order[mid:])):
            lo = mid
        else:
            hi = mid - 1
    current = order[lo:]
    prune_tries = LARGE_REFINE_TRIES if large else PRUNE_TRIES
    variant_tries = LARGE_REFINE_TRIES if large else VARIANT_TRIES
    for a in sorted(current, key=lambda a: -sim.cost_us([a]))[:prune_tries]:
        trial = [x for x in current if x != a]
        if trial and fits(consider(trial)):
            current = trial
    # cheaper variants of the most expensive actions (checkpoint → a selective keep set),
    # the cheapest first, as long as the plan fits
    tries = 0
    for a in sorted(current, key=lambda a: -sim.cost_us([a]))[:prune_tries]:
        cost = sim.cost_us([a])
        cheaper = sorted((o for o in options.get(tree.by_name.get(a.unit, -1), [])
                          if o.action != a and o.cost_us < cost), key=lambda o: o.cost_us)
        for o in cheaper:
            if tries >= variant_tries:
                break
            tries += 1
            trial = [x for x in current if x != a] + [o.action]
            if fits(consider(trial)):
                current = trial
                break
    best.evaluated = evaluated
    best.actions = sorted(best.actions)
    return best
