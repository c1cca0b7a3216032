"""The HTML report of ``memadvise report``: one self-contained file that opens offline.

Everything is drawn here, in Python, as inline SVG (primitives in ``report/svg.py``, from
data prepared by ``report/chart_data.py``); a small inline script (``assets/report.js``)
only adds hover tooltips. The page loads nothing: no CDN, no font, no image, no
``<script src>``. Sections:

* the memory timeline of the step, stacked by category, phases marked, with the total
  predicted under the chosen plan overlaid; then the predicted timeline itself;
* activation memory by module (a treemap sized by bytes, coloured by recompute cost
  per byte);
* the plans' Pareto chart (predicted peak against step time), recommendation marked;
* predicted against measured, when a verify result is given.

A 50,000-op step makes a report of about 1 MB (timelines are bucketed).
"""

from __future__ import annotations

from importlib import resources
from typing import Callable, Sequence

import numpy as np

from memadvise._version import __version__
from memadvise.analysis.simulator import Simulator
from memadvise.report.chart_data import (
    MAX_POINTS, ReportInputs, TimelineData, TreemapData, phase_spans, timeline_data, treemap_data,
)
from memadvise.report.svg import (
    CATEGORY_COLORS, CATEGORY_LABELS, COST_RAMP, PHASE_FILL, WIDTH, Axes, byte_ticks, coord, cost_color, esc,
    exact_bytes, json_script, linear_ticks, step_area, step_line, svg_open, x_axis, y_axis,
)
from memadvise.schema.actions import display_unit
from memadvise.schema.categories import CATEGORY_NAMES, Phase
from memadvise.schema.plan import PlanEntry, PlanFile, Prediction
from memadvise.schema.verify import VerifyResult
from memadvise.sizes import format_bytes, format_percent

TREEMAP_HEIGHT = 440.0  # SVG user units

# ---------------------------------------------------------------------------- timeline
def _timeline_payload(d: TimelineData, plan: PlanEntry | None) -> dict:
    """What the hover script reads: per bucket, the bytes by category and the op, module
    and phase of the bucket's row."""
    payload = {
        "n": d.n_ops,
        "buckets": len(d.base.rows),
        "cats": CATEGORY_NAMES,
        "labels": [CATEGORY_LABELS[c] for c in CATEGORY_NAMES],
        "colors": [CATEGORY_COLORS[c] for c in CATEGORY_NAMES],
        "base": d.base.rows.tolist(),
        "op": d.op,
        "mod": d.mod,
        "phase": d.phase,
        "pred": None,
        "plan": None,
    }
    if d.pred is not None and plan is not None:
        payload["pred"] = d.pred.rows.tolist()
        payload["pred_op"] = d.pred_op
        payload["rc"] = [int(x) for x in d.pred.recompute]
        payload["plan"] = plan.label
    payload["names"] = d.names
    return payload


def _timeline_svg(d: TimelineData, which: str, title: str) -> str:
    """``which="base"``: recorded stacks, predicted total overlaid; ``"pred"``: predicted
    stacks, recorded total overlaid, recomputed ops marked under the axis."""
    main = d.base if which == "base" else d.pred
    other = d.pred if which == "base" else d.base
    assert main is not None
    height = 330
    top_y = max(d.base_peak, d.pred_peak or 0) * 1.08 or 1
    ax = Axes(78, 28, WIDTH - 78 - 16, height - 28 - 62, 0, max(d.n_ops, 1), 0, top_y)
    edges = main.edges()
    xs = [coord(ax.sx(e)) for e in edges]
    parts = []
    # phases as background bands
    for ph, s, e in d.spans:
        x0, x1 = ax.sx(s), ax.sx(e)
        parts.append(f'<rect class="phase" x="{coord(x0)}" y="{coord(ax.top)}" width="{coord(max(x1 - x0, 0.5))}" '
                     f'height="{coord(ax.height)}" fill="{PHASE_FILL.get(ph, "#f4f4f4")}"/>')
        if x1 - x0 > 60:
            parts.append(f'<text class="phase-label" x="{coord((x0 + x1) / 2)}" y="{coord(ax.top - 8)}" '
                         f'text-anchor="middle">{Phase(ph).label}</text>')
    parts.append(y_axis(ax, byte_ticks(top_y)))
    # stacked categories
    cum = np.zeros(len(main.rows), dtype=np.int64)
    series = 0
    prev = [coord(ax.sy(0))] * len(main.rows)
    for c, name in enumerate(CATEGORY_NAMES):
        col = main.rows[:, c]
        if not col.any():
            continue
        cum = cum + col
        top = [coord(ax.sy(v)) for v in cum.tolist()]
        parts.append(f'<path data-series="{name}" class="area" fill="{CATEGORY_COLORS[name]}" d="{step_area(xs, top, prev)}"/>')
        prev = top
        series += 1
    # the other timeline's total, for comparison
    if other is not None:
        ys = [coord(ax.sy(v)) for v in other.total.tolist()]
        cls, label = ("predicted-total", "predicted") if which == "base" else ("recorded-total", "recorded")
        parts.append(f'<path data-series="{cls}" class="{cls}" d="{step_line(xs, ys)}"><title>{label} total</title></path>')
        series += 1
    # recomputed ops under the axis
    if which == "pred" and main.recompute.any():
        runs = phase_spans(main.recompute.astype(np.int8))
        rects = "".join(
            f'<rect x="{xs[s]}" y="{coord(ax.bottom + 1)}" width="{coord(max(float(xs[e]) - float(xs[s]), 1.0))}" height="5"/>'
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
        parts.append(f'<path class="peak-mark" d="M{coord(x)},{coord(y - 1)}l-5,-8h10z"/>'
                     f'<text class="peak-label" x="{coord(x + dx)}" y="{coord(y - 10)}" text-anchor="{anchor}">'
                     f'peak {esc(format_bytes(peak))}</text>')
    xt = [(v, f"{int(v):,}") for v in linear_ticks(0, d.n_ops, 8) if v <= d.n_ops]
    parts.append(x_axis(ax, xt, "ops of the recorded step (recomputed ops sit between the ops they follow)"
                         if which == "pred" else "ops of the recorded step"))
    parts.append(f'<rect class="hover" data-timeline="{which}" x="{coord(ax.left)}" y="{coord(ax.top)}" '
                 f'width="{coord(ax.width)}" height="{coord(ax.height)}"/>')
    parts.append(f'<line class="cursor" x1="0" x2="0" y1="{coord(ax.top)}" y2="{coord(ax.bottom)}" visibility="hidden"/>')
    return svg_open(height, f"timeline-{which}", series, title) + "".join(parts) + "</svg>"


def _legend(names: list[str]) -> str:
    items = "".join(f'<span class="key"><i style="background:{CATEGORY_COLORS[n]}"></i>{esc(CATEGORY_LABELS[n])}</span>'
                    for n in names)
    return f'<div class="legend">{items}</div>'


def _timeline_section(d: TimelineData, plan: PlanEntry | None) -> str:
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
             f'{esc(plan.label)}</span>') if plan else ""
    out.append(legend.replace("</div>", extra + phases + "</div>"))
    out.append(_timeline_svg(d, "base", "memory timeline of the recorded step"))
    if d.pred is not None and plan is not None:
        out.append(f'<h3>Predicted under plan #{plan.rank} {esc(plan.strategy)}</h3>'
                   f'<p class="note">The same step replayed by the simulator with the plan\'s actions: peak '
                   f'{esc(format_bytes(d.pred_peak))} against {esc(format_bytes(d.base_peak))} recorded '
                   f'({esc(format_percent((d.pred_peak or 0) / d.base_peak - 1 if d.base_peak else 0))}), '
                   f'step time {esc(format_percent(plan.predicted.overhead))}. Red marks under the axis: recomputed ops; '
                   'the grey line is the recorded total.</p>')
        out.append(_timeline_svg(d, "pred", "memory timeline predicted under the plan"))
    out.append(json_script("timeline-data", _timeline_payload(d, plan)))
    out.append("</section>")
    return "".join(out)


# ---------------------------------------------------------------------------- treemap
def short_name(name: str) -> str:
    """``blocks.3.attn`` → ``attn``; ``blocks.3`` → ``blocks.3`` (an index alone says little)."""
    parts = name.split(".")
    return ".".join(parts[-2:]) if parts[-1].isdigit() else parts[-1]



def _treemap_section(d: TreemapData) -> str:
    records = d.records
    head = ('<section id="modules"><h2>Activation memory by module</h2>'
            '<p class="note">Each rectangle is a module, sized by the activation memory of its subtree (bytes held '
            'for backward when backward starts) and coloured by what recomputing it costs per byte: its forward '
            'time over its activation bytes. Cheap, large modules are the best to checkpoint.</p>')
    if d.root is None:
        return head + "<p>No module holds activations for backward.</p></section>"
    height = TREEMAP_HEIGHT
    parts = []
    for box, c, t in zip(d.boxes, d.costs, d.shades):
        r = records[box.unit]
        fill = cost_color(t)
        name = display_unit(r.name)
        b = r.activation_bytes
        tip = (f"{name} ({r.type})\nactivations {exact_bytes(b)}, {b / d.total:.1%} of the model's\n"
               f"forward {r.fwd_time_ms:.3f} ms: {c:.3f} ms per MiB to recompute")
        if r.calls > 1:
            tip += f"\ncalled {r.calls} times per step"
        parts.append(f'<rect data-series="module" data-tip="{esc(tip)}" x="{coord(box.x)}" y="{coord(box.y)}" '
                     f'width="{coord(box.w)}" height="{coord(box.h)}" fill="{fill}"/>')
        short = short_name(r.name) if box.depth else f"{r.type} (root)".strip()
        label = f"{short} · {format_bytes(b)}"
        room = int((box.w - 6) / 6.6)
        if box.h >= 14 and room >= 4:
            text = label if len(label) <= room else (short if len(short) <= room else short[: room - 1] + "…")
            color = "#fff" if t > 0.5 else "#111"
            parts.append(f'<text class="tm-label" x="{coord(box.x + 4)}" y="{coord(box.y + 11)}" fill="{color}">{esc(text)}</text>')
    expected = len(d.boxes)
    svg = svg_open(height, "treemap", expected, "treemap of activation memory by module") + "".join(parts) + "</svg>"
    ramp = ", ".join(COST_RAMP)
    legend = (f'<div class="legend"><span class="key">cheap to recompute {d.lo:.3g} ms/MiB</span>'
              f'<span class="ramp" style="background:linear-gradient(90deg, {ramp})"></span>'
              f'<span class="key">{d.hi:.3g} ms/MiB expensive</span>'
              f'<span class="key muted">{len(d.boxes):,} of {d.candidates:,} '
              'modules drawn</span></div>')
    return head + legend + svg + "</section>"


# ---------------------------------------------------------------------------- plans
def _pareto_section(plan_file: PlanFile, chosen: PlanEntry | None) -> str:
    plans = plan_file.entries
    base = plan_file.baseline_figures
    rec = (plan_file.doc.get("recommendation") or {}).get("rank")
    out = ['<section id="plans"><h2>Plans: peak against step time</h2>'
           '<p class="note">Every plan <code>suggest</code> predicted, and the recorded step (no recompute). '
           'Filled points are on the Pareto front: no other plan is both lower and faster.</p>']
    if not plans:
        return out[0] + "<p>The plan file holds no plans.</p></section>"
    pts = [(p.predicted.step_time_s * 1000, p.predicted.peak_bytes) for p in plans]
    bx, by = base.step_time_s * 1000, base.peak_bytes
    xs = [x for x, _ in pts] + [bx]
    ys = [y for _, y in pts] + [by]
    xpad = (max(xs) - min(xs)) * 0.08 or max(xs) * 0.05 or 1.0
    height = 360
    ax = Axes(78, 20, WIDTH - 78 - 24, height - 20 - 52, min(xs) - xpad, max(xs) + xpad, 0, max(ys) * 1.1 or 1)
    parts = [y_axis(ax, byte_ticks(ax.y1))]
    xt = [(v, f"{v:g} ms") for v in linear_ticks(ax.x0, ax.x1, 7)]
    parts.append(x_axis(ax, xt, "predicted step time"))
    # the front as a staircase from the baseline down to the lowest peak
    front = sorted([(x, y) for (x, y), p in zip(pts, plans) if p.pareto] + [(bx, by)])
    series = 0
    if len(front) > 1:
        d = f"M{coord(ax.sx(front[0][0]))},{coord(ax.sy(front[0][1]))}"
        for x, y in front[1:]:
            d += f"H{coord(ax.sx(x))}V{coord(ax.sy(y))}"
        parts.append(f'<path data-series="front" class="front" d="{d}"/>')
        series += 1
    dots = []
    for (x, y), p in zip(pts, plans):
        pr = p.predicted
        tip = (f"{p.label}{' (recommended)' if p.rank == rec else ''}\n"
               f"peak {exact_bytes(pr.peak_bytes)} ({format_percent(pr.peak_bytes / by - 1 if by else 0)})\n"
               f"activations {exact_bytes(pr.activation_bytes)}\n"
               f"step {pr.step_time_s * 1000:.2f} ms ({format_percent(pr.overhead)})\n"
               f"{len(p.actions)} action(s){'; on the Pareto front' if p.pareto else ''}")
        cls = "dot front-dot" if p.pareto else "dot"
        dots.append(f'<circle class="{cls}" data-tip="{esc(tip)}" cx="{coord(ax.sx(x))}" cy="{coord(ax.sy(y))}" r="4.5"/>')
    parts.append(f'<g data-series="plans">{"".join(dots)}</g>')
    series += 1
    btip = f"recorded step, no recompute\npeak {exact_bytes(by)}\nactivations {exact_bytes(base.activation_bytes)}\nstep {bx:.2f} ms"
    bxp, byp = ax.sx(bx), ax.sy(by)
    parts.append(f'<path data-series="baseline" class="baseline-dot" data-tip="{esc(btip)}" '
                 f'd="M{coord(bxp)},{coord(byp - 7)}l7,7l-7,7l-7,-7z"/>'
                 f'<text class="dot-label" x="{coord(bxp + 10)}" y="{coord(byp - 6)}">no recompute</text>')
    series += 1

    def marker(p: PlanEntry, cls: str, text: str) -> str:
        x, y = ax.sx(p.predicted.step_time_s * 1000), ax.sy(p.predicted.peak_bytes)
        anchor = "end" if x > ax.left + ax.width * 0.75 else "start"
        dx = -12 if anchor == "end" else 12
        return (f'<circle data-series="{cls}" class="{cls}" cx="{coord(x)}" cy="{coord(y)}" r="9"/>'
                f'<text class="dot-label strong" x="{coord(x + dx)}" y="{coord(y + 4)}" text-anchor="{anchor}">{esc(text)}</text>')

    rec_plan = next((p for p in plans if p.rank == rec), None)
    if rec_plan is not None:
        parts.append(marker(rec_plan, "recommended", f"{rec_plan.label} (recommended)"))
        series += 1
    if chosen is not None and chosen.rank != rec:
        parts.append(marker(chosen, "chosen", f"{chosen.label} (shown above)"))
        series += 1
    out.append(svg_open(height, "pareto", series, "plans: predicted peak against step time") + "".join(parts) + "</svg>")
    out.append(_plans_table(plans, base, rec, chosen))
    out.append("</section>")
    return "".join(out)


def _plans_table(plans: Sequence[PlanEntry], base: Prediction, rec: int | None, chosen: PlanEntry | None,
                 top: int = 12) -> str:
    rows = []
    for p in plans[:top]:
        pr = p.predicted
        cls = ' class="rec"' if p.rank == rec else (' class="chosen"' if chosen and p.rank == chosen.rank else "")
        peak_change = pr.peak_bytes / base.peak_bytes - 1 if base.peak_bytes else 0.0
        rows.append(
            f"<tr{cls}><td>{p.rank}</td><td>{esc(p.strategy)}{'*' if p.pareto else ''}</td>"
            f"<td>{len(p.actions)}</td><td title=\"{pr.peak_bytes:,} B\">{esc(format_bytes(pr.peak_bytes))} "
            f"<span class=muted>{esc(format_percent(peak_change))}</span></td>"
            f"<td title=\"{pr.activation_bytes:,} B\">{esc(format_bytes(pr.activation_bytes))}</td>"
            f"<td>{esc(format_percent(pr.overhead))}</td></tr>"
        )
    more = f'<p class="note">{len(plans) - top} more in the plan file.</p>' if len(plans) > top else ""
    return ('<table class="plans"><thead><tr><th>#</th><th>strategy</th><th>actions</th><th>peak</th>'
            '<th>activations</th><th>step time</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>"
            '<p class="note">* on the Pareto front</p>' + more)


# ---------------------------------------------------------------------------- verify
def _verify_section(verify: VerifyResult, chosen: PlanEntry | None) -> str:
    base_ms = verify.baseline_step_time_s * 1000
    peak, act, over = verify.peak, verify.activation, verify.overhead
    groups = [
        ("peak", [peak.baseline_measured, peak.predicted, peak.measured], peak.error, "bytes"),
        ("activations", [act.baseline_measured, act.predicted, act.measured], act.error, "bytes"),
        # measured: the baseline's time with the median change of the pairs (one pair: that pair's)
        ("step time", [base_ms, base_ms * (1 + over.predicted), base_ms * (1 + over.measured)], None, "ms"),
    ]
    if act.unmeasured:  # no measured bar that is not the plan's
        groups = [g for g in groups if g[0] != "activations"]
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
        labels.append(f'<text class="vlabel" x="0" y="{coord(y + 1.5 * bar_h + 4)}">{esc(name)}</text>')
        if err is not None:
            labels.append(f'<text class="tick" x="0" y="{coord(y + 1.5 * bar_h + 20)}">error {float(err):.2%}</text>')
        for k, v in zip(kinds, values):
            w = float(v) / top * width
            text = exact_bytes(v) if unit == "bytes" else f"{float(v):.1f} ms"
            what = {"baseline": "measured without the plan", "predicted": "predicted with the plan",
                    "measured": "measured with the plan"}[k]
            bars[k].append(f'<rect data-tip="{esc(name + ", " + what + chr(10) + text)}" x="{label_w}" y="{coord(y)}" '
                           f'width="{coord(max(w, 0.5))}" height="{bar_h - 3}" fill="{colors[k]}"/>'
                           f'<text class="tick" x="{coord(label_w + w + 6)}" y="{coord(y + bar_h / 2 + 1)}" dy="0.2em">'
                           f'{esc(format_bytes(v) if unit == "bytes" else text)}</text>')
            y += bar_h
        y += gap
    svg = svg_open(height, "verify", 3, "predicted against measured") + "".join(labels) + "".join(
        f'<g data-series="{k}">{"".join(v)}</g>' for k, v in bars.items()) + "</svg>"
    same = chosen is None or (verify.plan_rank == chosen.rank and verify.plan_strategy == chosen.strategy)
    note = "" if same else (f' This verify run measured plan #{verify.plan_rank} {esc(verify.plan_strategy)}, '
                            f'not the plan shown above.')
    verdict = ("within" if verify.passed else "outside")
    pairs = over.measured_pairs
    if len(pairs) > 1:
        note += (f" Step time: the median of {len(pairs)} alternating original/patched pairs "
                 f"({esc(format_percent(min(pairs)))} to {esc(format_percent(max(pairs)))}).")
    if over.verdict:
        note += f" Step time {esc(over.verdict)}."
    elif over.resolved is False:  # a verify file from before the verdict was written
        note += " The pairs took both signs: a step-time change within this machine's run-to-run noise."
    if act.unmeasured:
        note += f" Activations {esc(act.unmeasured)}."
    if verify.applied is not None and not verify.applied.took_effect:
        note += f" The plan did not take effect: {esc(verify.applied.said)}."
    legend = "".join(f'<span class="key"><i style="background:{colors[k]}"></i>{k}</span>' for k in kinds)
    return (f'<section id="verify"><h2>Predicted against measured: plan #{verify.plan_rank} {esc(verify.plan_strategy)}</h2>'
            f'<p class="note">The unpatched and the patched script, each profiled in its own process '
            f'(<code>memadvise apply --verify</code>). Peak {verdict} the tolerance of '
            f'{verify.tolerance:.0%}.{note}</p><div class="legend">{legend}</div>{svg}</section>')


# ---------------------------------------------------------------------------- page
def _asset(name: str) -> str:
    return resources.files("memadvise.report").joinpath("assets", name).read_text(encoding="utf-8")


def _header(inputs: ReportInputs) -> str:
    profile = inputs.profile
    s = profile.records.summary
    env = profile.records.environment
    script = profile.records.script
    cards = [
        ("peak", format_bytes(s.peak_bytes), f"{s.peak_bytes:,} B in {s.peak_phase}"),
        ("activations", format_bytes(s.activation_bytes), f"{s.activation_bytes:,} B held for backward"),
        ("step time", f"{s.step_time_s * 1000:.1f} ms", "uninstrumented, median"),
    ]
    plan = inputs.plan
    if plan is not None:
        p = plan.predicted
        base_peak = inputs.plan_file.baseline_figures.peak_bytes if inputs.plan_file else s.peak_bytes
        change = p.peak_bytes / base_peak - 1 if base_peak else 0.0
        cards.append((f"plan {plan.label}", format_bytes(p.peak_bytes),
                      f"peak {format_percent(change)}, step time {format_percent(p.overhead)}"))
    card_html = "".join(f'<div class="card"><div class="k">{esc(k)}</div><div class="v">{esc(v)}</div>'
                        f'<div class="s">{esc(sub)}</div></div>' for k, v, sub in cards)
    device = env.device
    cmd = " ".join([script.path, *script.args])
    notes = "".join(f'<p class="warn">{esc(n)}</p>' for n in inputs.notes)
    return (f'<header><h1>memadvise report <span class="muted">{esc(script.file_name)}</span></h1>'
            f'<p class="muted"><code>{esc(cmd)}</code> · {esc(device.type)} ({esc(device.name)}) · '
            f'torch {esc(env.torch)} · profiled {esc(profile.doc.get("created_at", "?"))}</p>'
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
    plan = inputs.plan
    if progress and plan is not None:
        progress(f"simulating plan #{plan.rank} ({plan.strategy})")
    timeline = timeline_data(sim, plan, max_points)
    if progress:
        progress("drawing the timeline")
    timeline_section = _timeline_section(timeline, plan)
    if progress:
        progress("drawing modules and plans")
    treemap = treemap_data(profile, sim, WIDTH, TREEMAP_HEIGHT)
    sections = [timeline_section, _treemap_section(treemap)]
    if inputs.plan_file is not None:
        sections.append(_pareto_section(inputs.plan_file, inputs.plan))
    if inputs.verify is not None:
        sections.append(_verify_section(inputs.verify, inputs.plan))
    sources = f"profile {esc(profile.path or '(in memory)')}" + (
        f", plan file {esc(inputs.plan_file.path)}" if inputs.plan_file else "")
    title = f"memadvise report: {profile.records.script.file_name}"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        # no network, ever: the page may load nothing but itself
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        f"<title>{esc(title)}</title><style>{_asset('report.css')}</style></head><body>"
        + _header(inputs) + "".join(sections)
        + f'<footer>memadvise {esc(__version__)} · from {sources}</footer>'
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
        "plan": ({"rank": plan.rank, "strategy": plan.strategy, "predicted": plan.predicted.to_json()}
                 if plan else None),
        "verify": ({"rank": inputs.verify.plan_rank, "passed": inputs.verify.passed} if inputs.verify else None),
        "notes": list(inputs.notes),
    }
