"""What the HTML report draws, prepared from a profile, a plan file and a verify result:
the step's timeline bucketed (recorded and predicted under the chosen plan) with what
the hover shows per bucket, the treemap's layout of activation memory by module with
each module's recompute cost, and the plan and verify inputs checked. No drawing here:
``report/svg.py`` has the primitives, ``report/html.py`` the sections and the page.

Long timelines are bucketed (``MAX_POINTS`` buckets per series, each keeping the row of
its largest total, so the peak survives).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from memadvise._errors import InputFileError
from memadvise.analysis.simulator import PlanError, Simulator
from memadvise.analysis.units import UnitTree
from memadvise.schema.actions import display_unit
from memadvise.schema.categories import N_CATEGORIES, Phase
from memadvise.schema.plan import PlanEntry, PlanFile, select_entry
from memadvise.schema.verify import VerifyResult
from memadvise.schema.profile import Profile, UnitRecord
from memadvise.schema.trace import Timeline, Trace

MAX_POINTS = 2000  # buckets per timeline series: ~2 px each on a 4K screen
MAX_TREEMAP_RECTS = 3000  # smaller modules stay inside their parent's rectangle
MIN_TREEMAP_AREA = 6.0  # px²: below this a rectangle would not be seen anyway


@dataclass
class Buckets:
    """A timeline bucketed for drawing: per bucket, the row of its largest total.

    ``n_positions`` op positions of the recorded step are cut into ``len(rows)`` equal
    buckets; ``at[k]`` is the index, in the source timeline, of bucket ``k``'s row.
    """

    n_positions: int
    rows: np.ndarray  # [buckets, N_CATEGORIES] bytes
    at: np.ndarray  # [buckets] source index of the row (-1: empty bucket)
    recompute: np.ndarray  # [buckets] bool: the bucket holds recomputed ops

    @property
    def total(self) -> np.ndarray:
        return self.rows.sum(axis=1)

    def edges(self) -> np.ndarray:
        return np.linspace(0.0, float(self.n_positions), len(self.rows) + 1)


def op_positions(baseline: Timeline, timeline: Timeline) -> np.ndarray:
    """Position of each op of ``timeline`` on the recorded step's op axis: a recorded op
    at its index, a recomputed op (fractional clock) between the two recorded ops whose
    clocks surround it. The predicted timeline thus lines up with the baseline."""
    if len(baseline.clock) == 0:
        return np.zeros(len(timeline.clock))
    return np.interp(timeline.clock, baseline.clock, np.arange(len(baseline.clock), dtype=np.float64))


def bucket_max(positions: np.ndarray, rows: np.ndarray, n_positions: int, n_buckets: int,
               recompute: np.ndarray | None = None) -> Buckets:
    """Cut ``[0, n_positions)`` into ``n_buckets`` and keep, in each, the row with the
    largest total (the earliest on ties). Empty buckets repeat the previous row."""
    n_buckets = max(1, min(n_buckets, n_positions))
    out = np.zeros((n_buckets, rows.shape[1] if rows.ndim == 2 else N_CATEGORIES), dtype=np.int64)
    at = np.full(n_buckets, -1, dtype=np.int64)
    rc = np.zeros(n_buckets, dtype=bool)
    if len(positions) == 0:
        return Buckets(n_positions, out, at, rc)
    b = np.clip((np.asarray(positions, dtype=np.float64) * n_buckets / n_positions).astype(np.int64), 0, n_buckets - 1)
    total = rows.sum(axis=1)
    order = np.lexsort((-total, b))  # by bucket, largest total first; stable: earliest on ties
    sb = b[order]
    first = np.ones(len(sb), dtype=bool)
    first[1:] = sb[1:] != sb[:-1]
    out[sb[first]] = rows[order[first]]
    at[sb[first]] = order[first]
    for k in np.nonzero(at < 0)[0]:  # only where positions are sparser than buckets
        if k > 0:
            out[k], at[k] = out[k - 1], at[k - 1]
    if recompute is not None and recompute.any():
        rc[np.unique(b[recompute])] = True
    return Buckets(n_positions, out, at, rc)


def phase_spans(phase: np.ndarray) -> list[tuple[int, int, int]]:
    """Runs of one phase over the ops: ``(phase, first op, end op)``."""
    phase = np.asarray(phase)
    if len(phase) == 0:
        return []
    cuts = np.nonzero(phase[1:] != phase[:-1])[0] + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [len(phase)]))
    return [(int(phase[s]), int(s), int(e)) for s, e in zip(starts, ends)]


def op_modules(t: Trace, units: Sequence[UnitRecord]) -> list[str]:
    """Module path of each op: the unit whose call ran it (forward) or owns its
    autograd node (backward); ``""`` for ops outside any module."""
    names = [u.name for u in units]
    call = np.where(t.op_call >= 0, t.op_call, t.op_owner)
    unit = np.where(call >= 0, t.call_unit[np.maximum(call, 0)], -1)
    return [display_unit(names[u]) if u >= 0 else "" for u in unit.tolist()]


def choose_plan(plan_file: PlanFile, rank: int | None, strategy: str | None) -> PlanEntry:
    """``--rank``/``--strategy`` as in ``apply``; by default the plan file's
    recommendation, else rank 1."""
    if rank is None and strategy is None:
        rec = plan_file.doc.get("recommendation") or {}
        rank = int(rec["rank"]) if rec.get("rank") is not None else 1
    return select_entry(plan_file, rank=rank, strategy=strategy)


def check_plan_matches(profile: Profile, plan_file: PlanFile) -> str | None:
    """Why ``plan_file`` was not suggested from ``profile``, or None when it was."""
    made_from = plan_file.doc.get("profile") or {}
    if made_from.get("created_at") and profile.doc.get("created_at") and made_from["created_at"] != profile.doc["created_at"]:
        return (f"plan {plan_file.path} was suggested from another profile (made {made_from['created_at']}, "
                f"this one {profile.doc['created_at']})")
    if plan_file.script.get("sha256") != profile.records.script.sha256:
        return f"plan {plan_file.path} was suggested for another version of {profile.records.script.path}"
    return None


@dataclass
class ReportInputs:
    profile: Profile
    plan_file: PlanFile | None = None
    plan: PlanEntry | None = None  # the chosen plan of plan_file
    verify: VerifyResult | None = None
    notes: tuple[str, ...] = ()


# ---------------------------------------------------------------------------- timeline
@dataclass
class TimelineData:
    """The recorded step's timeline and the one predicted under a plan, bucketed alike.

    n_ops (int): ops of the recorded step. base, pred (Buckets): live bytes by category
    per bucket, recorded and predicted (None without a plan). spans: the phases' runs
    over the ops. base_peak, pred_peak (int): peaks in bytes; base_peak_pos,
    pred_peak_pos (float): where they are on the recorded step's op axis.
    For the hover, per bucket of ``base``: ``op`` and ``mod`` (indexes into ``names``:
    the op and the module of the bucket's row), ``phase`` (its phase's label); per
    bucket of ``pred``: ``pred_op`` (an op name index, ``(recompute)`` for recomputed
    ops); -1 or "" for an empty bucket.
    """

    n_ops: int
    base: Buckets
    pred: Buckets | None
    spans: list[tuple[int, int, int]]
    base_peak: int
    pred_peak: int | None
    base_peak_pos: float
    pred_peak_pos: float | None
    op: list[int]
    mod: list[int]
    phase: list[str]
    pred_op: list[int] | None
    names: list[str]


def timeline_data(sim: Simulator, plan: PlanEntry | None, max_points: int = MAX_POINTS) -> TimelineData:
    """The recorded timeline, and the one ``plan`` predicts (simulated here); a plan that
    does not fit the profile is refused with one sentence."""
    t = sim.trace
    base_tl = t.baseline_timeline()
    n = len(base_tl.clock)
    base = bucket_max(np.arange(n, dtype=np.float64), base_tl.by_category, n, max_points)
    pred = None
    pred_peak = pred_peak_pos = None
    pred_tl = None
    if plan is not None:
        replace = None
        if plan.compile_budget is not None:  # a compile-budget plan: the compiled region swapped in
            from memadvise.analysis.compile_plans import replacement

            row = next((r for r in (sim.profile.doc.get("compile_plans") or {}).get("budgets", [])
                        if float(r["budget"]) == plan.compile_budget), None)
            if row is None:
                raise InputFileError(f"plan #{plan.rank} is a compile plan and the profile has no partition "
                                     f"at budget {plan.compile_budget:g}")
            replace = replacement(sim.profile, sim, row)
        try:
            pred_tl = sim.simulate(list(plan.actions), timeline=True, replace=replace).timeline
        except PlanError as exc:
            raise InputFileError(f"plan #{plan.rank} does not fit this profile: {exc}") from None
        pos = op_positions(base_tl, pred_tl)
        pred = bucket_max(pos, pred_tl.by_category, n, len(base.rows), recompute=pred_tl.recompute)
        pred_peak = pred_tl.peak_bytes
        pred_peak_pos = float(pos[pred_tl.peak_index]) if len(pos) else 0.0
    modules = op_modules(t, sim.units)
    names: dict[str, int] = {}

    def intern(s: str) -> int:
        return names.setdefault(s, len(names))

    op_names = t.strings
    base_at = base.at.tolist()
    op = [intern(op_names[int(t.op_name[i])]) if i >= 0 else -1 for i in base_at]
    mod = [intern(modules[i]) if i >= 0 else -1 for i in base_at]
    phase = [Phase(int(base_tl.phase[i])).label if i >= 0 else "" for i in base_at]
    pred_op = None
    if pred is not None and pred_tl is not None:
        pos = op_positions(base_tl, pred_tl)
        pred_op = []
        for i in pred.at.tolist():
            if i < 0:
                pred_op.append(-1)
            elif pred_tl.recompute[i]:
                pred_op.append(intern("(recompute)"))
            else:
                pred_op.append(intern(op_names[int(t.op_name[int(round(pos[i]))])]))
    return TimelineData(
        n_ops=n, base=base, pred=pred, spans=phase_spans(base_tl.phase),
        base_peak=base_tl.peak_bytes, pred_peak=pred_peak,
        base_peak_pos=float(base_tl.peak_index), pred_peak_pos=pred_peak_pos,
        op=op, mod=mod, phase=phase, pred_op=pred_op, names=list(names),
    )


# ---------------------------------------------------------------------------- treemap
def squarify(values: list[float], x: float, y: float, w: float, h: float) -> list[tuple[float, float, float, float]]:
    """Squarified treemap (Bruls, Huizing, van Wijk 2000) of ``values`` (positive, any
    order) in the rectangle; returns one ``(x, y, w, h)`` per value, in order, each of
    area ``w·h·value/sum(values)``."""
    total = float(sum(values))
    out: list[tuple[float, float, float, float] | None] = [None] * len(values)
    if total <= 0 or w <= 0 or h <= 0:
        return [(x, y, 0.0, 0.0)] * len(values)
    order = sorted(range(len(values)), key=lambda i: -values[i])
    areas = [values[i] * w * h / total for i in order]

    def worst(row_sum: float, row_max: float, row_min: float, side: float) -> float:
        s2, side2 = row_sum * row_sum, side * side
        return max(side2 * row_max / s2, s2 / (side2 * row_min))

    i = 0
    while i < len(areas):
        side = min(w, h)
        j = i + 1
        rsum, rmax, rmin = areas[i], areas[i], areas[i]
        while j < len(areas):
            a = areas[j]
            if worst(rsum + a, max(rmax, a), min(rmin, a), side) > worst(rsum, rmax, rmin, side):
                break
            rsum, rmax, rmin = rsum + a, max(rmax, a), min(rmin, a)
            j += 1
        if j == len(areas):  # the last row fills what is left exactly
            rsum = w * h
        if w >= h:  # a column on the left
            cw = rsum / h if h else 0.0
            yy = y
            for k in range(i, j):
                hh = areas[k] / cw if cw else 0.0
                out[order[k]] = (x, yy, cw, hh)
                yy += hh
            x, w = x + cw, w - cw
        else:  # a row on top
            rh = rsum / w if w else 0.0
            xx = x
            for k in range(i, j):
                ww = areas[k] / rh if rh else 0.0
                out[order[k]] = (xx, y, ww, rh)
                xx += ww
            y, h = y + rh, h - rh
        i = j
    return [r if r is not None else (x, y, 0.0, 0.0) for r in out]


@dataclass
class _Box:
    unit: int
    x: float
    y: float
    w: float
    h: float
    depth: int
    parent_of_drawn: bool = False


def _treemap_layout(tree: UnitTree, root: int, width: float, height: float) -> list[_Box]:
    boxes: list[_Box] = []
    records = tree.profile.records.units

    def act(u: int) -> int:
        return records[u].activation_bytes

    def visit(u: int, x: float, y: float, w: float, h: float, depth: int) -> None:
        if len(boxes) >= MAX_TREEMAP_RECTS or w * h < MIN_TREEMAP_AREA:
            return
        box = _Box(u, x, y, w, h, depth)
        boxes.append(box)
        kids = [c for c in tree.units[u].children if records[c].in_root and act(c) > 0]
        header = 15.0 if h > 40 and w > 40 else 0.0
        pad = 2.0 if w > 12 and h > 12 else 0.0
        iw, ih = w - 2 * pad, h - header - pad
        if not kids or iw <= 1 or ih <= 1:
            return
        sizes = [float(act(c)) for c in kids]
        own = act(u) - sum(sizes)  # the unit's own activations (outside its children) keep their share
        values = sizes + ([float(own)] if own > 0 else [])
        rects = squarify(values, x + pad, y + header, iw, ih)
        box.parent_of_drawn = True
        for c, (cx, cy, cw, ch) in zip(kids, rects):
            visit(c, cx, cy, cw, ch, depth + 1)

    visit(root, 0.0, 0.0, width, height, 0)
    return boxes


@dataclass
class TreemapData:
    """Activation memory by module, laid out: the largest root module holding activations
    and its descendants as nested rectangles.

    records (tuple[UnitRecord]): the profile's unit records. root (int | None): the unit drawn
    whole (None: no module holds activations). boxes: the rectangles, parents first.
    costs (list[float]): per box, forward milliseconds per MiB of activations (what
    recomputing it costs per byte); shades (list[float]): the same on a log scale from
    0 (the cheapest drawn) to 1 (the dearest). lo, hi (float): that scale's ends, ms/MiB.
    total (int): the root's activation bytes. candidates (int): modules under the model
    with activations, drawn or not.
    """

    records: tuple[UnitRecord, ...]
    root: int | None
    boxes: list[_Box]
    costs: list[float]
    shades: list[float]
    lo: float
    hi: float
    total: int
    candidates: int


def treemap_data(profile: Profile, sim: Simulator, width: float, height: float) -> TreemapData:
    tree = UnitTree(profile, sim.trace)
    records = profile.records.units
    roots = [u.index for u in tree.units if records[u.index].in_root and u.parent is None
             and records[u.index].activation_bytes > 0]
    candidates = sum(1 for r in records if r.in_root and r.activation_bytes > 0)
    if not roots:
        return TreemapData(records, None, [], [], [], 1.0, 1.0, 1, candidates)
    root = max(roots, key=lambda u: records[u].activation_bytes)
    boxes = _treemap_layout(tree, root, width, height)
    total = max(1, records[root].activation_bytes)

    def cost(u: int) -> float:
        r = records[u]
        b = r.activation_bytes
        return r.fwd_time_ms / (b / 2**20) if b else 0.0

    costs = [cost(b.unit) for b in boxes]
    positive = [c for c in costs if c > 0]
    lo, hi = (min(positive), max(positive)) if positive else (1.0, 1.0)
    span = math.log(hi / lo) if hi > lo else 1.0
    shades = [(math.log(c / lo) / span) if c > 0 and hi > lo else 0.0 for c in costs]
    return TreemapData(records, root, boxes, costs, shades, lo, hi, total, candidates)
