"""Terminal and JSON views of a profile (``memadvise profile`` and ``memadvise show``)."""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from memadvise.analysis.traffic import nvml_window
from memadvise.report.names import MIN_UNIT_WIDTH, cut_right, fit_width, short_names
from memadvise.report.traffic_report import nvml_line
from memadvise.schema.trace import Trace
from memadvise.schema.categories import CATEGORY_NAMES, Phase
from memadvise.schema.profile import Profile, Summary, UnitRecord
from memadvise.sizes import format_bytes

SPARK = "▁▂▃▄▅▆▇█"
PAGE_BYTES = 4096  # what one minor fault maps, on the usual Linux page size


def profile_summary(profile: Profile) -> dict:
    out = _summary(profile, profile.records.summary)
    doc = profile.doc.get("compile_plans")
    if doc is not None:  # only with --compile-plans: other summaries are unchanged
        out["compile_plans"] = ({"available": True, "graphs": doc.get("graphs"),
                                 "graph_breaks": len(doc.get("graph_breaks") or []),
                                 "saved_bytes": {f"{r['budget']:g}": r["saved_bytes"] for r in doc["budgets"]}}
                                if doc.get("available") else {"available": False, "reason": doc.get("reason")})
    return out


def _summary(profile: Profile, s: Summary) -> dict:
    return {
        "profile": str(profile.path) if profile.path else None,
        "script": profile.records.script.path,
        "device": profile.device_type,
        "peak_bytes": s.peak_bytes,
        "activation_bytes": s.activation_bytes,
        "step_time_s": s.step_time_s,
        "minor_faults_per_step": s.minor_faults_per_step,
        "by_category": dict(s.by_category_at_peak),
        "peak_phase": s.peak_phase,
        "peak_op": s.peak_op,
        "peak_unit": s.peak_unit,
        "steps": [{"index": st.index, "peak_bytes": st.peak_bytes, "activation_bytes": st.activation_bytes}
                  for st in profile.records.steps],
        "distributed": profile.doc.get("distributed"),
        "notes": profile.notes,
    }


def top_units(profile: Profile, top: int) -> list[dict]:
    total_act = max(1, profile.records.summary.activation_bytes)
    units = [u for u in profile.records.units if u.in_root and u.name != "" and u.activation_bytes > 0]
    units.sort(key=lambda u: (-u.activation_bytes, u.name))
    return [
        {
            "unit": u.name,
            "type": u.type,
            "activation_bytes": u.activation_bytes,
            "share": u.activation_bytes / total_act,
            "fwd_time_ms": u.fwd_time_ms,
            "bwd_time_ms": u.bwd_time_ms,
            "calls": u.calls,
            "flags": _flags(u),
        }
        for u in units[:top]
    ]


def _flags(u: UnitRecord) -> list[str]:
    flags = []
    if u.uses_rng:
        flags.append("rng")
    if u.batchnorm_training or u.mutates_state:
        flags.append("buffers")
    if u.calls > 1:
        flags.append(f"x{u.calls}")
    return flags


def timeline_points(profile: Profile, buckets: int = 64) -> dict:
    """The step's memory over its ops, bucketed: max total and the phase of each bucket."""
    trace = Trace(profile)
    tl = trace.baseline_timeline()
    total = tl.total
    n = len(total)
    if n == 0:
        return {"bucket_max_bytes": [], "bucket_phase": [], "ops": 0}
    edges = np.linspace(0, n, num=min(buckets, n) + 1).astype(int)
    maxes, phases = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        b = max(b, a + 1)
        maxes.append(int(total[a:b].max()))
        vals, counts = np.unique(tl.phase[a:b], return_counts=True)
        phases.append(Phase(int(vals[np.argmax(counts)])).label)
    marks = {}
    for label in ("forward", "backward", "optimizer"):
        m = tl.phase == int(Phase[label.upper()])
        if m.any():
            marks[f"{label}_end_bytes"] = int(total[np.nonzero(m)[0][-1]])
    return {"bucket_max_bytes": maxes, "bucket_phase": phases, "ops": n, **marks}


def show_document(profile: Profile, *, top: int = 12) -> dict:
    doc = profile_summary(profile)
    doc["top_units"] = top_units(profile, top)
    doc["timeline"] = timeline_points(profile)
    doc["environment"] = profile.environment
    doc["model"] = profile.doc.get("model")
    doc["optimizer"] = profile.doc.get("optimizer")
    doc["nvml"] = _finite(profile.doc.get("nvml"))
    doc["settings"] = profile.doc.get("settings")
    return doc


def _finite(value):
    """``value`` with every NaN or infinite float replaced by None (what older profiles'
    NVML readings may hold), so that no NaN reaches an output."""
    if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _category_table(profile: Profile) -> Table:
    by = profile.records.summary.by_category_at_peak
    peak = max(1, profile.records.summary.peak_bytes)
    table = Table(title="memory at peak", title_justify="left", show_edge=False)
    table.add_column("category")
    table.add_column("bytes", justify="right")
    table.add_column("share", justify="right")
    for name in CATEGORY_NAMES:
        value = by.get(name, 0)
        if name == "untracked" and not value:  # no allocator was read (CPU): nothing to say
            continue
        table.add_row(name.replace("_", " "), format_bytes(value), f"{value / peak:.1%}")
    table.add_row("[bold]total[/bold]", f"[bold]{format_bytes(peak)}[/bold]", "")
    return table


def _units_table(profile: Profile, top: int, width: int = 80) -> Table:
    """The units table, ``width`` columns wide at most: long unit names are cut on the left
    (``…layers.7.self_attn``, unique), then long type names on the right."""
    header = ("unit", "type", "activations", "share", "fwd ms", "bwd ms", "notes")
    rows = [[u["unit"], u["type"], format_bytes(u["activation_bytes"]), f"{u['share']:.1%}",
             f"{u['fwd_time_ms']:.2f}", f"{u['bwd_time_ms']:.2f}", " ".join(u["flags"])]
            for u in top_units(profile, top)]
    need = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    unit_room = fit_width(width, need[1:], len(header))
    if unit_room < need[0]:
        unit_room = max(unit_room, MIN_UNIT_WIDTH)
        type_room = max(fit_width(width, [unit_room] + need[2:], len(header)), len("type"))
        shown = short_names([r[0] for r in rows], unit_room)
        for r in rows:
            r[0], r[1] = shown[r[0]], cut_right(r[1], type_room)
    table = Table(title="top units by activation memory", title_justify="left", show_edge=False)
    for col in header:
        table.add_column(col, justify="left" if col in ("unit", "type", "notes") else "right", no_wrap=True)
    for r in rows:
        table.add_row(*(escape(c) for c in r))
    return table


def _sparkline(profile: Profile, width: int = 64) -> Text:
    pts = timeline_points(profile, buckets=width)
    values = pts["bucket_max_bytes"]
    text = Text()
    if not values:
        return text
    lo, hi = min(values), max(values)
    colors = {"forward": "cyan", "backward": "magenta", "optimizer": "yellow"}
    for v, ph in zip(values, pts["bucket_phase"]):
        level = 0 if hi == lo else int((v - lo) / (hi - lo) * (len(SPARK) - 1))
        text.append(SPARK[level], style=colors.get(ph, ""))
    text.append(f"  {format_bytes(lo)} .. {format_bytes(hi)}")
    return text


def render_show(console: Console, profile: Profile, *, top: int = 12) -> None:
    s = profile.records.summary
    env = profile.records.environment
    script = profile.records.script
    model = profile.doc.get("model") or {}
    console.print(f"[bold]{script.path}[/bold] {' '.join(script.args)}".rstrip())
    console.print(
        f"peak [bold]{format_bytes(s.peak_bytes)}[/bold] in {s.peak_phase} "
        f"(op {s.peak_op}{', unit ' + s.peak_unit if s.peak_unit else ''}); "
        f"activations {format_bytes(s.activation_bytes)}; step {s.step_time_s * 1000:.1f} ms"
    )
    for note in profile.notes:
        console.print(f"[yellow]warning:[/yellow] {escape(note)}")
    faults = s.minor_faults_per_step
    if faults and faults * PAGE_BYTES >= max(2**20, 0.05 * s.peak_bytes):  # a MiB and 5% of the peak
        console.print(
            f"[yellow]page faults[/yellow]: {faults:,.0f} per step (~{format_bytes(int(faults * PAGE_BYTES))} of fresh "
            "pages): the allocator returns large blocks to the OS each step and the kernel maps and zeroes them again. "
            "This time is in the measured step but not in memadvise's predictions; a plan that lowers the peak may "
            "also remove it. On glibc, MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ (or jemalloc/tcmalloc) may keep "
            "the blocks.")
    dist = profile.doc.get("distributed") or {}
    if dist.get("world_size", 1) > 1 and dist.get("ranks"):
        per = ", ".join(f"rank {r['rank']} {format_bytes(r['peak_bytes'])}" for r in dist["ranks"])
        console.print(f"{dist['world_size']} ranks ({dist.get('backend')}): {per}; this profile is rank "
                      f"{dist.get('worst_rank', dist.get('rank'))}'s, the highest")
    line = compile_plans_line(profile)
    if line:
        console.print(line)
    console.print(_category_table(profile))
    console.print(_units_table(profile, top, console.width))
    console.print("timeline ([cyan]forward[/cyan] [magenta]backward[/magenta] [yellow]optimizer[/yellow]):")
    console.print(_sparkline(profile))
    nv = profile.doc.get("nvml") or {}
    nvml = "NVML: " + ("available" if nv.get("available") else f"unavailable ({nv.get('reason', 'no GPU')})")
    window = nvml_window(nv) if nv.get("available") else None
    if window:
        console.print(nvml_line(window))
    console.print(
        f"environment: torch {env.torch}, python {env.python}, {env.device.type} ({env.device.name}), "
        f"model {model.get('class')} as `{model.get('expression')}`; {nvml}"
    )


def compile_plans_line(profile: Profile) -> str | None:
    """One line on the partition ladder (``--compile-plans``); None where not measured or
    unavailable (the profile's notes then say why)."""
    doc = profile.doc.get("compile_plans") or {}
    rows = doc.get("budgets") or []
    if not doc.get("available") or not rows:
        return None
    hi = max(rows, key=lambda r: r["budget"])
    lo = min(rows, key=lambda r: r["budget"])
    breaks = len(doc.get("graph_breaks") or [])
    return (f"compile plans: torch.compile saves {format_bytes(hi['saved_bytes'])} at budget {hi['budget']:g} to "
            f"{format_bytes(lo['saved_bytes'])} at {lo['budget']:g} ({len(rows)} budgets, {doc.get('graphs', 1)} "
            f"graph(s), {breaks} graph break(s))")


def render_profile_done(console: Console, profile: Profile) -> None:
    s = profile.records.summary
    parts = ", ".join(f"{k.replace('_', ' ')} {format_bytes(v)}" for k, v in s.by_category_at_peak.items() if v)
    console.print(
        f"peak [bold]{format_bytes(s.peak_bytes)}[/bold] ({parts}); activations "
        f"{format_bytes(s.activation_bytes)}; step {s.step_time_s * 1000:.1f} ms"
    )
    for note in profile.notes:
        console.print(f"[yellow]warning:[/yellow] {escape(note)}")
    line = compile_plans_line(profile)
    if line:
        console.print(line)
    console.print(f"profile written to {profile.path}")
    console.print(f"next: [bold]memadvise suggest --profile {profile.path}[/bold]")
