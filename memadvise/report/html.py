"""The HTML report of ``memadvise report``: one self-contained file that opens offline.

Everything is drawn here, in Python, as inline SVG; a small inline script
(``assets/report.js``) only adds hover tooltips. The page loads nothing: no CDN, no
font, no image, no ``<script src>``. Sections:

* the memory timeline of the step, stacked by category, phases marked, with the total
  predicted under the chosen plan overlaid; then the predicted timeline itself;
* activation memory by module (a treemap sized by bytes, coloured by recompute cost
  per byte);
* the plans' Pareto chart (predicted peak against step time), recommendation marked;
* predicted against measured, when a verify result is given.

Long timelines are bucketed (``MAX_POINTS`` buckets per series, each keeping the row of
its largest total, so the peak survives): a 50,000-op step makes a report of about
1 MB.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from importlib import resources
from typing import Callable

import numpy as np

from memadvise._version import __version__
from memadvise._errors import InputFileError
from memadvise.analysis.simulator import PlanError, Simulator
from memadvise.schema.trace import Timeline, Trace
from memadvise.analysis.units import UnitTree
from memadvise.schema.actions import Action, display_unit
from memadvise.schema.categories import CATEGORY_NAMES, N_CATEGORIES, Phase
from memadvise.schema.plan import PlanFile
from memadvise.schema.profile import Profile
from memadvise.sizes import byte_unit, format_bytes, format_percent

MAX_POINTS = 2000  # buckets per timeline series: ~2 px each on a 4K screen
MAX_TREEMAP_RECTS = 3000  # smaller modules stay inside their parent's rectangle
MIN_TREEMAP_AREA = 6.0  # px²: below this a rectangle would not be seen anyway

CATEGORY_LABELS = {
    "parameter": "parameters",
    "gradient": "gradients",
    "optimizer_state": "optimizer state",
    "activation": "activations",
    "temporary": "temporaries",
    "input": "input",
}
# Tableau 10: distinct in colour-blind simulations, printable
CATEGORY_COLORS = {
    "parameter": "#4e79a7",
    "gradient": "#f28e2b",
    "optimizer_state": "#59a14f",
    "activation": "#e15759",
    "temporary": "#edc948",
    "input": "#b07aa1",
}
PHASE_FILL = {int(Phase.FORWARD): "#eaf1fb", int(Phase.BACKWARD): "#fbecef", int(Phase.OPTIMIZER): "#fbf5e1"}
# recompute cost per byte, cheap → expensive (viridis, reversed)
COST_RAMP = ("#fde725", "#90d743", "#35b779", "#21918c", "#31688e", "#443983", "#440154")

WIDTH = 960  # SVG user units; the page scales them to its width


# ---------------------------------------------------------------------------- data
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


def op_modules(t: Trace, units: list[dict]) -> list[str]:
    """Module path of each op: the unit whose call ran it (forward) or owns its
    autograd node (backward); ``""`` for ops outside any module."""
    names = [u["name"] for u in units]
    call = np.where(t.op_call >= 0, t.op_call, t.op_owner)
    unit = np.where(call >= 0, t.call_unit[np.maximum(call, 0)], -1)
    return [display_unit(names[u]) if u >= 0 else "" for u in unit.tolist()]


def choose_plan(plan_file: PlanFile, rank: int | None, strategy: str | None) -> dict:
    """``--rank``/``--strategy`` as in ``apply``; by default the plan file's
    recommendation, else rank 1."""
    from memadvise.schema.plan import select_plan

    if rank is None and strategy is None:
        rec = plan_file.doc.get("recommendation") or {}
        rank = int(rec["rank"]) if rec.get("rank") is not None else 1
    return select_plan(plan_file, rank=rank, strategy=strategy)


def check_plan_matches(profile: Profile, plan_file: PlanFile) -> str | None:
    """Why ``plan_file`` was not suggested from ``profile``, or None when it was."""
    made_from = plan_file.doc.get("profile") or {}
    if made_from.get("created_at") and profile.doc.get("created_at") and made_from["created_at"] != profile.doc["created_at"]:
        return (f"plan {plan_file.path} was suggested from another profile (made {made_from['created_at']}, "
                f"this one {profile.doc['created_at']})")
    if plan_file.script.get("sha256") != profile.script.get("sha256"):
        return f"plan {plan_file.path} was suggested for another version of {profile.script['path']}"
    return None


def validate_verify(doc: object, path: str) -> dict:
    """The verify result of ``memadvise apply --verify --json`` (its ``verify`` key), or
    the result itself; refuses anything else with one sentence."""
    result = doc.get("verify") if isinstance(doc, dict) and "verify" in doc else doc
    try:
        rows = result["rows"]
        for key in ("peak_bytes", "activation_bytes"):
            float(rows[key]["predicted"]), float(rows[key]["measured"]), float(rows[key]["baseline_measured"])
        float(rows["overhead"]["predicted"]), float(rows["overhead"]["measured"])
        float(result["baseline_step_time_s"]), float(result["patched_step_time_s"])
        int(result["plan"]["rank"]), str(result["plan"]["strategy"])
    except (KeyError, TypeError, ValueError):
        raise InputFileError(
            f"{path!r} holds no verify result; write one with `memadvise apply --verify --json > FILE`"
        ) from None
    return result


@dataclass
class ReportInputs:
    profile: Profile
    plan_file: PlanFile | None = None
    plan: dict | None = None  # the chosen plan of plan_file
    verify: dict | None = None
    notes: tuple[str, ...] = ()


# ---------------------------------------------------------------------------- formatting
def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _exact(n: int | float) -> str:
    """``6291456`` → ``6,291,456 B (6.0 MiB)``: exact, and readable."""
    n = int(n)
    return f"{n:,} B" + (f" ({format_bytes(n)})" if abs(n) >= 1024 else "")


def _f(v: float) -> str:
    """SVG coordinate with one decimal, no trailing ``.0``."""
    s = f"{v:.1f}"
    return s[:-2] if s.endswith(".0") else s


def _json_script(element_id: str, obj: object) -> str:
    # "<" escaped so that no text in the data can close the script element
    text = json.dumps(obj, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def nice_step(span: float, target: int = 5) -> float:
    if span <= 0:
        return 1.0
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


def _byte_ticks(top: float) -> list[tuple[float, str]]:
    unit, name = byte_unit(top)
    step = nice_step(top / unit) * unit
    ticks = []
    v = 0.0
    while v <= top * 1.0001:
        ticks.append((v, f"{v / unit:g} {name}"))
        v += step
    return ticks


def _linear_ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    step = nice_step(hi - lo, target)
    start = math.ceil(lo / step) * step
    out = []
    v = start
    while v <= hi + step * 1e-9:
        out.append(round(v, 10))
        v += step
    return out


def _cost_color(t: float) -> str:
    t = min(1.0, max(0.0, t))
    x = t * (len(COST_RAMP) - 1)
    i = min(int(x), len(COST_RAMP) - 2)
    f = x - i
    a, b = COST_RAMP[i], COST_RAMP[i + 1]
    rgb = [round(int(a[j:j + 2], 16) * (1 - f) + int(b[j:j + 2], 16) * f) for j in (1, 3, 5)]
    return "#" + "".join(f"{c:02x}" for c in rgb)


class _Axes:
    """A plot area inside an SVG: data → user units."""

    def __init__(self, left, top, width, height, x0, x1, y0, y1):
        self.left, self.top, self.width, self.height = left, top, width, height
        self.x0, self.x1, self.y0, self.y1 = x0, x1, y0, y1

    def sx(self, v):
        return self.left + (v - self.x0) / ((self.x1 - self.x0) or 1) * self.width

    def sy(self, v):
        return self.top + self.height - (v - self.y0) / ((self.y1 - self.y0) or 1) * self.height

    @property
    def bottom(self):
        return self.top + self.height

    @property
    def right(self):
        return self.left + self.width


def _svg_open(height: float, chart: str, expected: int, label: str) -> str:
    return (f'<svg class="chart" data-chart="{chart}" data-expected="{expected}" viewBox="0 0 {WIDTH} {_f(height)}" '
            f'role="img" aria-label="{_esc(label)}">')


def _y_axis(ax: _Axes, ticks: list[tuple[float, str]]) -> str:
    parts = []
    for v, label in ticks:
        y = _f(ax.sy(v))
        parts.append(f'<line class="grid" x1="{_f(ax.left)}" x2="{_f(ax.right)}" y1="{y}" y2="{y}"/>'
                     f'<text class="tick" x="{_f(ax.left - 6)}" y="{y}" text-anchor="end" dy="0.32em">{_esc(label)}</text>')
    return "".join(parts)


def _x_axis(ax: _Axes, ticks: list[tuple[float, str]], title: str) -> str:
    parts = [f'<line class="axis" x1="{_f(ax.left)}" x2="{_f(ax.right)}" y1="{_f(ax.bottom)}" y2="{_f(ax.bottom)}"/>']
    for v, label in ticks:
        x = _f(ax.sx(v))
        parts.append(f'<line class="axis" x1="{x}" x2="{x}" y1="{_f(ax.bottom)}" y2="{_f(ax.bottom + 4)}"/>'
                     f'<text class="tick" x="{x}" y="{_f(ax.bottom + 16)}" text-anchor="middle">{_esc(label)}</text>')
    parts.append(f'<text class="axis-title" x="{_f(ax.left + ax.width / 2)}" y="{_f(ax.bottom + 34)}" '
                 f'text-anchor="middle">{_esc(title)}</text>')
    return "".join(parts)


def _step_area(xs: list[str], top: list[str], bottom: list[str]) -> str:
    """A stacked step area: the upper edge left to right, the lower edge back."""
    n = len(top)
    out = [f"M{xs[0]},{bottom[0]}V{top[0]}H{xs[1]}"]
    for i in range(1, n):
        if top[i] != top[i - 1]:
            out.append(f"V{top[i]}")
        out.append(f"H{xs[i + 1]}")
    out.append(f"V{bottom[n - 1]}")
    for i in range(n - 1, -1, -1):
        out.append(f"H{xs[i]}")
        if i > 0 and bottom[i - 1] != bottom[i]:
            out.append(f"V{bottom[i - 1]}")
    out.append("Z")
    return "".join(out)


def _step_line(xs: list[str], ys: list[str]) -> str:
    out = [f"M{xs[0]},{ys[0]}H{xs[1]}"]
    for i in range(1, len(ys)):
        if ys[i] != ys[i - 1]:
            out.append(f"V{ys[i]}")
        out.append(f"H{xs[i + 1]}")
    return "".join(out)


# ---------------------------------------------------------------------------- timeline
@dataclass
class _TimelineData:
    n_ops: int
    base: Buckets
    pred: Buckets | None
    spans: list[tuple[int, int, int]]
    payload: dict
    base_peak: int
    pred_peak: int | None
    base_peak_pos: float
    pred_peak_pos: float | None


def _timeline_data(sim: Simulator, plan: dict | None, max_points: int,
                   progress: Callable[[str], None] | None) -> _TimelineData:
    t = sim.trace
    base_tl = t.baseline_timeline()
    n = len(base_tl.clock)
    base = bucket_max(np.arange(n, dtype=np.float64), base_tl.by_category, n, max_points)
    pred = None
    pred_peak = pred_peak_pos = None
    pred_tl = None
    if plan is not None:
        if progress:
            progress(f"simulating plan #{plan['rank']} ({plan['strategy']})")
        actions = [Action.from_json(a) for a in plan["actions"]]
        try:
            pred_tl = sim.simulate(actions, timeline=True).timeline
        except PlanError as exc:
            raise InputFileError(f"plan #{plan['rank']} does not fit this profile: {exc}") from None
        pos = op_positions(base_tl, pred_tl)
        pred = bucket_max(pos, pred_tl.by_category, n, len(base.rows), recompute=pred_tl.recompute)
        pred_peak = pred_tl.peak_bytes
        pred_peak_pos = float(pos[pred_tl.peak_index]) if len(pos) else 0.0
    if progress:
        progress("drawing the timeline")
    modules = op_modules(t, sim.units)
    names: dict[str, int] = {}

    def intern(s: str) -> int:
        return names.setdefault(s, len(names))

    op_names = t.strings
    base_at = base.at.tolist()
    payload = {
        "n": n,
        "buckets": len(base.rows),
        "cats": CATEGORY_NAMES,
        "labels": [CATEGORY_LABELS[c] for c in CATEGORY_NAMES],
        "colors": [CATEGORY_COLORS[c] for c in CATEGORY_NAMES],
        "base": base.rows.tolist(),
        "op": [intern(op_names[int(t.op_name[i])]) if i >= 0 else -1 for i in base_at],
        "mod": [intern(modules[i]) if i >= 0 else -1 for i in base_at],
        "phase": [Phase(int(base_tl.phase[i])).label if i >= 0 else "" for i in base_at],
        "pred": None,
        "plan": None,
    }
    if pred is not None and pred_tl is not None:
        pred_at = pred.at.tolist()
        pos = op_positions(base_tl, pred_tl)
        pred_op = []
        for i in pred_at:
            if i < 0:
                pred_op.append(-1)
            elif pred_tl.recompute[i]:
                pred_op.append(intern("(recompute)"))
            else:
                pred_op.append(intern(op_names[int(t.op_name[int(round(pos[i]))])]))
        payload["pred"] = pred.rows.tolist()
        payload["pred_op"] = pred_op
        payload["rc"] = [int(x) for x in pred.recompute]
        payload["plan"] = f"#{plan['rank']} {plan['strategy']}"
    payload["names"] = list(names)
    return _TimelineData(
        n_ops=n, base=base, pred=pred, spans=phase_spans(base_tl.phase), payload=payload,
        base_peak=base_tl.peak_bytes, pred_peak=pred_peak,
        base_peak_pos=float(base_tl.peak_index), pred_peak_pos=pred_peak_pos,
    )


def _timeline_svg(d: _TimelineData, which: str, title: str) -> str:
    """``which="base"``: recorded stacks, predicted total overlaid; ``"pred"``: predicted
    stacks, recorded total overlaid, recomputed ops marked under the axis."""
    main = d.base if which == "base" else d.pred
    other = d.pred if which == "base" else d.base
    assert main is not None
    height = 330
    top_y = max(d.base_peak, d.pred_peak or 0) * 1.08 or 1
    ax = _Axes(78, 28, WIDTH - 78 - 16, height - 28 - 62, 0, max(d.n_ops, 1), 0, top_y)
    edges = main.edges()
    xs = [_f(ax.sx(e)) for e in edges]
    parts = []
    # phases as background bands
    for ph, s, e in d.spans:
        x0, x1 = ax.sx(s), ax.sx(e)
        parts.append(f'<rect class="phase" x="{_f(x0)}" y="{_f(ax.top)}" width="{_f(max(x1 - x0, 0.5))}" '
                     f'height="{_f(ax.height)}" fill="{PHASE_FILL.get(ph, "#f4f4f4")}"/>')
        if x1 - x0 > 60:
            parts.append(f'<text class="phase-label" x="{_f((x0 + x1) / 2)}" y="{_f(ax.top - 8)}" '
                         f'text-anchor="middle">{Phase(ph).label}</text>')
    parts.append(_y_axis(ax, _byte_ticks(top_y)))
    # stacked categories
    cum = np.zeros(len(main.rows), dtype=np.int64)
    series = 0
    prev = [_f(ax.sy(0))] * len(main.rows)
    for c, name in enumerate(CATEGORY_NAMES):
        col = main.rows[:, c]
        if not col.any():
            continue
        cum = cum + col
        top = [_f(ax.sy(v)) for v in cum.tolist()]
        parts.append(f'<path data-series="{name}" class="area" fill="{CATEGORY_COLORS[name]}" d="{_step_area(xs, top, prev)}"/>')
        prev = top
        series += 1
    # the other timeline's total, for comparison
    if other is not None:
        ys = [_f(ax.sy(v)) for v in other.total.tolist()]
        cls, label = ("predicted-total", "predicted") if which == "base" else ("recorded-total", "recorded")
        parts.append(f'<path data-series="{cls}" class="{cls}" d="{_step_line(xs, ys)}"><title>{label} total</title></path>')
        series += 1
    # recomputed ops under the axis
    if which == "pred" and main.recompute.any():
        runs = phase_spans(main.recompute.astype(np.int8))
        rects = "".join(
            f'<rect x="{xs[s]}" y="{_f(ax.bottom + 1)}" width="{_f(max(float(xs[e]) - float(xs[s]), 1.0))}" height="5"/>'
            for v, s, e in runs if v
        )
        parts.append(f'<g data-series="recompute" class="recompute">{rects}</g>')
        series += 1
    # peak markers
    peak, pos = (d.base_peak, d.base_peak_pos) if which == "base" else (d.pred_peak, d.pred_peak_pos)
    if peak is not None and pos is not None:
        x, y = ax.sx(pos + 0.5), ax.sy(peak)
        anchor = "end" if x > ax.left + ax.width * 0.8 else "start"
        dx = -6 if anchor == "end" else 6
        parts.append(f'<path class="peak-mark" d="M{_f(x)},{_f(y - 1)}l-5,-8h10z"/>'
                     f'<text class="peak-label" x="{_f(x + dx)}" y="{_f(y - 10)}" text-anchor="{anchor}">'
                     f'peak {_esc(format_bytes(peak))}</text>')
    xt = [(v, f"{int(v):,}") for v in _linear_ticks(0, d.n_ops, 8) if v <= d.n_ops]
    parts.append(_x_axis(ax, xt, "ops of the recorded step (recomputed ops sit between the ops they follow)"
                         if which == "pred" else "ops of the recorded step"))
    parts.append(f'<rect class="hover" data-timeline="{which}" x="{_f(ax.left)}" y="{_f(ax.top)}" '
                 f'width="{_f(ax.width)}" height="{_f(ax.height)}"/>')
    parts.append(f'<line class="cursor" x1="0" x2="0" y1="{_f(ax.top)}" y2="{_f(ax.bottom)}" visibility="hidden"/>')
    return _svg_open(height, f"timeline-{which}", series, title) + "".join(parts) + "</svg>"


def _legend(names: list[str]) -> str:
    items = "".join(f'<span class="key"><i style="background:{CATEGORY_COLORS[n]}"></i>{_esc(CATEGORY_LABELS[n])}</span>'
                    for n in names)
    return f'<div class="legend">{items}</div>'


def _timeline_section(d: _TimelineData, plan: dict | None) -> str:
    present = [n for c, n in enumerate(CATEGORY_NAMES) if d.base.rows[:, c].any()
               or (d.pred is not None and d.pred.rows[:, c].any())]
    phases = "".join(f'<span class="key"><i style="background:{PHASE_FILL[int(p)]};border:1px solid #ccc"></i>{p.label}</span>'
                     for p in Phase)
    out = ['<section id="timeline"><h2>Memory over the step</h2>']
    if d.n_ops == 0:
        return out[0] + "<p>The profile recorded no ops.</p></section>"
    bucketed = (f"{d.n_ops:,} ops shown as {len(d.base.rows):,} buckets, each at its largest total"
                if len(d.base.rows) < d.n_ops else f"{d.n_ops:,} ops")
    out.append(f'<p class="note">Live bytes on the training device after each op, by category ({bucketed}). '
               'Hover for exact figures.</p>')
    legend = _legend(present)
    extra = ('<span class="key"><i class="dash"></i>predicted total under plan '
             f'{_esc("#" + str(plan["rank"]) + " " + plan["strategy"])}</span>') if plan else ""
    out.append(legend.replace("</div>", extra + phases + "</div>"))
    out.append(_timeline_svg(d, "base", "memory timeline of the recorded step"))
    if d.pred is not None and plan is not None:
        p = plan["predicted"]
        out.append(f'<h3>Predicted under plan #{plan["rank"]} {_esc(plan["strategy"])}</h3>'
                   f'<p class="note">The same step replayed by the simulator with the plan\'s actions: peak '
                   f'{_esc(format_bytes(d.pred_peak))} against {_esc(format_bytes(d.base_peak))} recorded '
                   f'({_esc(format_percent((d.pred_peak or 0) / d.base_peak - 1 if d.base_peak else 0))}), '
                   f'step time {_esc(format_percent(p["overhead"]))}. Red marks under the axis: recomputed ops; '
                   'the grey line is the recorded total.</p>')
        out.append(_timeline_svg(d, "pred", "memory timeline predicted under the plan"))
    out.append(_json_script("timeline-data", d.payload))
    out.append("</section>")
    return "".join(out)


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
    records = tree.profile.units

    def act(u: int) -> int:
        return int(records[u].get("activation_bytes") or 0)

    def visit(u: int, x: float, y: float, w: float, h: float, depth: int) -> None:
        if len(boxes) >= MAX_TREEMAP_RECTS or w * h < MIN_TREEMAP_AREA:
            return
        box = _Box(u, x, y, w, h, depth)
        boxes.append(box)
        kids = [c for c in tree.units[u].children if records[c].get("in_root") and act(c) > 0]
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


def _short_name(name: str) -> str:
    """``blocks.3.attn`` → ``attn``; ``blocks.3`` → ``blocks.3`` (an index alone says little)."""
    parts = name.split(".")
    return ".".join(parts[-2:]) if parts[-1].isdigit() else parts[-1]


def _treemap_section(profile: Profile, sim: Simulator) -> str:
    tree = UnitTree(profile, sim.trace)
    records = profile.units
    roots = [u.index for u in tree.units if records[u.index].get("in_root") and u.parent is None
             and int(records[u.index].get("activation_bytes") or 0) > 0]
    head = ('<section id="modules"><h2>Activation memory by module</h2>'
            '<p class="note">Each rectangle is a module, sized by the activation memory of its subtree (bytes held '
            'for backward when backward starts) and coloured by what recomputing it costs per byte: its forward '
            'time over its activation bytes. Cheap, large modules are the best to checkpoint.</p>')
    if not roots:
        return head + "<p>No module holds activations for backward.</p></section>"
    root = max(roots, key=lambda u: int(records[u]["activation_bytes"]))
    height = 440.0
    boxes = _treemap_layout(tree, root, WIDTH, height)
    total = max(1, int(records[root]["activation_bytes"]))

    def cost(u: int) -> float:
        r = records[u]
        b = int(r.get("activation_bytes") or 0)
        return float(r.get("fwd_time_ms") or 0.0) / (b / 2**20) if b else 0.0

    costs = [cost(b.unit) for b in boxes]
    positive = [c for c in costs if c > 0]
    lo, hi = (min(positive), max(positive)) if positive else (1.0, 1.0)
    span = math.log(hi / lo) if hi > lo else 1.0
    parts = []
    for box, c in zip(boxes, costs):
        r = records[box.unit]
        t = (math.log(c / lo) / span) if c > 0 and hi > lo else 0.0
        fill = _cost_color(t)
        name = display_unit(r["name"])
        b = int(r["activation_bytes"])
        tip = (f"{name} ({r.get('type', '?')})\nactivations {_exact(b)}, {b / total:.1%} of the model's\n"
               f"forward {float(r.get('fwd_time_ms') or 0):.3f} ms: {c:.3f} ms per MiB to recompute")
        if int(r.get("calls", 1)) > 1:
            tip += f"\ncalled {r['calls']} times per step"
        parts.append(f'<rect data-series="module" data-tip="{_esc(tip)}" x="{_f(box.x)}" y="{_f(box.y)}" '
                     f'width="{_f(box.w)}" height="{_f(box.h)}" fill="{fill}"/>')
        short = _short_name(r["name"]) if box.depth else f"{r.get('type', '')} (root)".strip()
        label = f"{short} · {format_bytes(b)}"
        room = int((box.w - 6) / 6.6)
        if box.h >= 14 and room >= 4:
            text = label if len(label) <= room else (short if len(short) <= room else short[: room - 1] + "…")
            color = "#fff" if t > 0.5 else "#111"
            parts.append(f'<text class="tm-label" x="{_f(box.x + 4)}" y="{_f(box.y + 11)}" fill="{color}">{_esc(text)}</text>')
    expected = len(boxes)
    svg = _svg_open(height, "treemap", expected, "treemap of activation memory by module") + "".join(parts) + "</svg>"
    ramp = ", ".join(COST_RAMP)
    legend = (f'<div class="legend"><span class="key">cheap to recompute {lo:.3g} ms/MiB</span>'
              f'<span class="ramp" style="background:linear-gradient(90deg, {ramp})"></span>'
              f'<span class="key">{hi:.3g} ms/MiB expensive</span>'
              f'<span class="key muted">{len(boxes):,} of {sum(1 for r in records if r.get("in_root") and int(r.get("activation_bytes") or 0) > 0):,} '
              'modules drawn</span></div>')
    return head + legend + svg + "</section>"


# ---------------------------------------------------------------------------- plans
def _pareto_section(plan_file: PlanFile, chosen: dict | None) -> str:
    plans = plan_file.plans
    base = plan_file.baseline
    rec = (plan_file.doc.get("recommendation") or {}).get("rank")
    out = ['<section id="plans"><h2>Plans: peak against step time</h2>'
           '<p class="note">Every plan <code>suggest</code> predicted, and the recorded step (no recompute). '
           'Filled points are on the Pareto front: no other plan is both lower and faster.</p>']
    if not plans:
        return out[0] + "<p>The plan file holds no plans.</p></section>"
    pts = [(float(p["predicted"]["step_time_s"]) * 1000, int(p["predicted"]["peak_bytes"])) for p in plans]
    bx, by = float(base["step_time_s"]) * 1000, int(base["peak_bytes"])
    xs = [x for x, _ in pts] + [bx]
    ys = [y for _, y in pts] + [by]
    xpad = (max(xs) - min(xs)) * 0.08 or max(xs) * 0.05 or 1.0
    height = 360
    ax = _Axes(78, 20, WIDTH - 78 - 24, height - 20 - 52, min(xs) - xpad, max(xs) + xpad, 0, max(ys) * 1.1 or 1)
    parts = [_y_axis(ax, _byte_ticks(ax.y1))]
    xt = [(v, f"{v:g} ms") for v in _linear_ticks(ax.x0, ax.x1, 7)]
    parts.append(_x_axis(ax, xt, "predicted step time"))
    # the front as a staircase from the baseline down to the lowest peak
    front = sorted([(x, y) for (x, y), p in zip(pts, plans) if p.get("pareto")] + [(bx, by)])
    series = 0
    if len(front) > 1:
        d = f"M{_f(ax.sx(front[0][0]))},{_f(ax.sy(front[0][1]))}"
        for x, y in front[1:]:
            d += f"H{_f(ax.sx(x))}V{_f(ax.sy(y))}"
        parts.append(f'<path data-series="front" class="front" d="{d}"/>')
        series += 1
    dots = []
    for (x, y), p in zip(pts, plans):
        pr = p["predicted"]
        tip = (f"#{p['rank']} {p['strategy']}{' (recommended)' if p['rank'] == rec else ''}\n"
               f"peak {_exact(pr['peak_bytes'])} ({format_percent(pr['peak_bytes'] / by - 1 if by else 0)})\n"
               f"activations {_exact(pr['activation_bytes'])}\n"
               f"step {float(pr['step_time_s']) * 1000:.2f} ms ({format_percent(pr['overhead'])})\n"
               f"{len(p['actions'])} action(s){'; on the Pareto front' if p.get('pareto') else ''}")
        cls = "dot front-dot" if p.get("pareto") else "dot"
        dots.append(f'<circle class="{cls}" data-tip="{_esc(tip)}" cx="{_f(ax.sx(x))}" cy="{_f(ax.sy(y))}" r="4.5"/>')
    parts.append(f'<g data-series="plans">{"".join(dots)}</g>')
    series += 1
    btip = f"recorded step, no recompute\npeak {_exact(by)}\nactivations {_exact(base['activation_bytes'])}\nstep {bx:.2f} ms"
    bxp, byp = ax.sx(bx), ax.sy(by)
    parts.append(f'<path data-series="baseline" class="baseline-dot" data-tip="{_esc(btip)}" '
                 f'd="M{_f(bxp)},{_f(byp - 7)}l7,7l-7,7l-7,-7z"/>'
                 f'<text class="dot-label" x="{_f(bxp + 10)}" y="{_f(byp - 6)}">no recompute</text>')
    series += 1

    def marker(p: dict, cls: str, text: str) -> str:
        x, y = ax.sx(float(p["predicted"]["step_time_s"]) * 1000), ax.sy(int(p["predicted"]["peak_bytes"]))
        anchor = "end" if x > ax.left + ax.width * 0.75 else "start"
        dx = -12 if anchor == "end" else 12
        return (f'<circle data-series="{cls}" class="{cls}" cx="{_f(x)}" cy="{_f(y)}" r="9"/>'
                f'<text class="dot-label strong" x="{_f(x + dx)}" y="{_f(y + 4)}" text-anchor="{anchor}">{_esc(text)}</text>')

    rec_plan = next((p for p in plans if p["rank"] == rec), None)
    if rec_plan is not None:
        parts.append(marker(rec_plan, "recommended", f"#{rec} {rec_plan['strategy']} (recommended)"))
        series += 1
    if chosen is not None and chosen["rank"] != rec:
        parts.append(marker(chosen, "chosen", f"#{chosen['rank']} {chosen['strategy']} (shown above)"))
        series += 1
    out.append(_svg_open(height, "pareto", series, "plans: predicted peak against step time") + "".join(parts) + "</svg>")
    out.append(_plans_table(plans, base, rec, chosen))
    out.append("</section>")
    return "".join(out)


def _plans_table(plans: list[dict], base: dict, rec: int | None, chosen: dict | None, top: int = 12) -> str:
    rows = []
    for p in plans[:top]:
        pr = p["predicted"]
        cls = ' class="rec"' if p["rank"] == rec else (' class="chosen"' if chosen and p["rank"] == chosen["rank"] else "")
        peak_change = pr["peak_bytes"] / base["peak_bytes"] - 1 if base["peak_bytes"] else 0.0
        rows.append(
            f"<tr{cls}><td>{p['rank']}</td><td>{_esc(p['strategy'])}{'*' if p.get('pareto') else ''}</td>"
            f"<td>{len(p['actions'])}</td><td title=\"{pr['peak_bytes']:,} B\">{_esc(format_bytes(pr['peak_bytes']))} "
            f"<span class=muted>{_esc(format_percent(peak_change))}</span></td>"
            f"<td title=\"{pr['activation_bytes']:,} B\">{_esc(format_bytes(pr['activation_bytes']))}</td>"
            f"<td>{_esc(format_percent(pr['overhead']))}</td></tr>"
        )
    more = f'<p class="note">{len(plans) - top} more in the plan file.</p>' if len(plans) > top else ""
    return ('<table class="plans"><thead><tr><th>#</th><th>strategy</th><th>actions</th><th>peak</th>'
            '<th>activations</th><th>step time</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>"
            '<p class="note">* on the Pareto front</p>' + more)


# ---------------------------------------------------------------------------- verify
def _verify_section(verify: dict, chosen: dict | None) -> str:
    rows = verify["rows"]
    base_ms = float(verify["baseline_step_time_s"]) * 1000
    groups = [
        ("peak", [rows["peak_bytes"]["baseline_measured"], rows["peak_bytes"]["predicted"], rows["peak_bytes"]["measured"]],
         rows["peak_bytes"].get("error"), "bytes"),
        ("activations", [rows["activation_bytes"]["baseline_measured"], rows["activation_bytes"]["predicted"],
                         rows["activation_bytes"]["measured"]], rows["activation_bytes"].get("error"), "bytes"),
        # measured: the baseline's time with the median change of the pairs (one pair: that pair's)
        ("step time", [base_ms, base_ms * (1 + float(rows["overhead"]["predicted"])),
                       base_ms * (1 + float(rows["overhead"]["measured"]))], None, "ms"),
    ]
    kinds = ("baseline", "predicted", "measured")
    colors = {"baseline": "#bab0ac", "predicted": "#4e79a7", "measured": "#e15759"}
    bar_h, gap, label_w = 18, 26, 110
    height = 24 + len(groups) * (3 * bar_h + gap)
    width = WIDTH - label_w - 200
    bars: dict[str, list[str]] = {k: [] for k in kinds}
    labels = []
    y = 12.0
    for name, values, err, unit in groups:
        top = max(float(v) for v in values) or 1.0
        labels.append(f'<text class="vlabel" x="0" y="{_f(y + 1.5 * bar_h + 4)}">{_esc(name)}</text>')
        if err is not None:
            labels.append(f'<text class="tick" x="0" y="{_f(y + 1.5 * bar_h + 20)}">error {float(err):.2%}</text>')
        for k, v in zip(kinds, values):
            w = float(v) / top * width
            text = _exact(v) if unit == "bytes" else f"{float(v):.1f} ms"
            what = {"baseline": "measured without the plan", "predicted": "predicted with the plan",
                    "measured": "measured with the plan"}[k]
            bars[k].append(f'<rect data-tip="{_esc(name + ", " + what + chr(10) + text)}" x="{label_w}" y="{_f(y)}" '
                           f'width="{_f(max(w, 0.5))}" height="{bar_h - 3}" fill="{colors[k]}"/>'
                           f'<text class="tick" x="{_f(label_w + w + 6)}" y="{_f(y + bar_h / 2 + 1)}" dy="0.2em">'
                           f'{_esc(format_bytes(v) if unit == "bytes" else text)}</text>')
            y += bar_h
        y += gap
    svg = _svg_open(height, "verify", 3, "predicted against measured") + "".join(labels) + "".join(
        f'<g data-series="{k}">{"".join(v)}</g>' for k, v in bars.items()) + "</svg>"
    plan = verify["plan"]
    same = chosen is None or (plan["rank"] == chosen["rank"] and plan["strategy"] == chosen["strategy"])
    note = "" if same else (f' This verify run measured plan #{plan["rank"]} {_esc(plan["strategy"])}, '
                            f'not the plan shown above.')
    verdict = ("within" if verify.get("passed") else "outside")
    over = rows["overhead"]
    pairs = over.get("measured_pairs") or []
    if len(pairs) > 1:
        note += (f" Step time: the median of {len(pairs)} alternating original/patched pairs "
                 f"({_esc(format_percent(min(pairs)))} to {_esc(format_percent(max(pairs)))}).")
    if over.get("resolved") is False:
        note += " The pairs took both signs: a step-time change within this machine's run-to-run noise."
    legend = "".join(f'<span class="key"><i style="background:{colors[k]}"></i>{k}</span>' for k in kinds)
    return (f'<section id="verify"><h2>Predicted against measured: plan #{plan["rank"]} {_esc(plan["strategy"])}</h2>'
            f'<p class="note">The unpatched and the patched script, each profiled in its own process '
            f'(<code>memadvise apply --verify</code>). Peak {verdict} the tolerance of '
            f'{float(verify.get("tolerance", 0)):.0%}.{note}</p><div class="legend">{legend}</div>{svg}</section>')


# ---------------------------------------------------------------------------- page
def _asset(name: str) -> str:
    return resources.files("memadvise.report").joinpath("assets", name).read_text(encoding="utf-8")


def _header(inputs: ReportInputs) -> str:
    profile = inputs.profile
    s = profile.summary
    env = profile.environment
    script = profile.script
    cards = [
        ("peak", format_bytes(s["peak_bytes"]), f"{s['peak_bytes']:,} B in {s['peak_phase']}"),
        ("activations", format_bytes(s["activation_bytes"]), f"{s['activation_bytes']:,} B held for backward"),
        ("step time", f"{float(s['step_time_s']) * 1000:.1f} ms", "uninstrumented, median"),
    ]
    plan = inputs.plan
    if plan is not None:
        p = plan["predicted"]
        base_peak = inputs.plan_file.baseline["peak_bytes"] if inputs.plan_file else s["peak_bytes"]
        change = p["peak_bytes"] / base_peak - 1 if base_peak else 0.0
        cards.append((f"plan #{plan['rank']} {plan['strategy']}", format_bytes(p["peak_bytes"]),
                      f"peak {format_percent(change)}, step time {format_percent(p['overhead'])}"))
    card_html = "".join(f'<div class="card"><div class="k">{_esc(k)}</div><div class="v">{_esc(v)}</div>'
                        f'<div class="s">{_esc(sub)}</div></div>' for k, v, sub in cards)
    device = env["device"]
    cmd = " ".join([script["path"], *script.get("args", [])])
    notes = "".join(f'<p class="warn">{_esc(n)}</p>' for n in inputs.notes)
    return (f'<header><h1>memadvise report <span class="muted">{_esc(script["path"].rsplit("/", 1)[-1])}</span></h1>'
            f'<p class="muted"><code>{_esc(cmd)}</code> · {_esc(device["type"])} ({_esc(device.get("name"))}) · '
            f'torch {_esc(env.get("torch"))} · profiled {_esc(profile.doc.get("created_at", "?"))}</p>'
            f'<div class="cards">{card_html}</div>{notes}</header>')


def render_report(inputs: ReportInputs, *, max_points: int = MAX_POINTS,
                  progress: Callable[[str], None] | None = None) -> str:
    """The report as one HTML document (a string).

    ``inputs.plan`` (one plan of ``inputs.plan_file``) is simulated for the predicted
    timeline; ``max_points`` caps the buckets of each timeline series.
    """
    profile = inputs.profile
    if progress:
        progress("reading the trace")
    sim = Simulator(profile)
    timeline = _timeline_data(sim, inputs.plan, max_points, progress)
    if progress:
        progress("drawing modules and plans")
    sections = [_timeline_section(timeline, inputs.plan), _treemap_section(profile, sim)]
    if inputs.plan_file is not None:
        sections.append(_pareto_section(inputs.plan_file, inputs.plan))
    if inputs.verify is not None:
        sections.append(_verify_section(inputs.verify, inputs.plan))
    sources = f"profile {_esc(profile.path or '(in memory)')}" + (
        f", plan file {_esc(inputs.plan_file.path)}" if inputs.plan_file else "")
    title = f"memadvise report: {profile.script['path'].rsplit('/', 1)[-1]}"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        # no network, ever: the page may load nothing but itself
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        f"<title>{_esc(title)}</title><style>{_asset('report.css')}</style></head><body>"
        + _header(inputs) + "".join(sections)
        + f'<footer>memadvise {_esc(__version__)} · from {sources}</footer>'
        + '<div id="tip" role="tooltip"></div>'
        + f"<script>{_asset('report.js')}</script></body></html>\n"
    )


def report_summary(inputs: ReportInputs, path: str, size_bytes: int) -> dict:
    """The ``--json`` output of ``memadvise report``."""
    sections = ["timeline", "modules"] + (["plans"] if inputs.plan_file else []) + (["verify"] if inputs.verify else [])
    plan = inputs.plan
    return {
        "report": path,
        "bytes": size_bytes,
        "sections": sections,
        "profile": str(inputs.profile.path) if inputs.profile.path else None,
        "plan_file": inputs.plan_file.path if inputs.plan_file else None,
        "plan": ({"rank": plan["rank"], "strategy": plan["strategy"], "predicted": plan["predicted"]} if plan else None),
        "verify": ({"rank": inputs.verify["plan"]["rank"], "passed": inputs.verify.get("passed")} if inputs.verify else None),
        "notes": list(inputs.notes),
    }
