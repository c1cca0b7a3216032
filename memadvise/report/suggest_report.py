"""The ranked plan table of ``memadvise suggest``."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from memadvise.schema.actions import SELECTIVE, Action, display_unit
from memadvise.schema.plan import PlanEntry, Prediction, traffic_entries
from memadvise.sizes import format_bytes, format_percent


_SHORT = {"checkpoint": "ckpt", "selective": "sel", "offload": "offl"}


def _units_label(plan: PlanEntry, width: int = 16) -> str:
    """``ckpt ×4`` / ``ckpt ×2 sel ×3`` / ``ckpt (root)``: what the plan acts on."""
    acts = plan.actions
    if plan.compile_budget is not None:  # a compile-budget plan: the whole model, compiled
        eager = len(plan.compile_eager_modules)
        return "compiled model" + (f", {eager} eager" if eager else "")
    if len(acts) == 1:
        text = f"{_SHORT[acts[0].action]} {display_unit(acts[0].unit)}"
        return text if len(text) <= width else text[: width - 1] + "…"
    counts: dict[str, int] = {}
    for a in acts:
        counts[a.action] = counts.get(a.action, 0) + 1
    return " ".join(f"{_SHORT[k]} ×{n}" for k, n in counts.items())


def _with_change(value: int, change: float) -> str:
    return f"{format_bytes(value)} {change * 100:+.0f}%"


def _kind(a: Action) -> str:
    """``checkpoint``, ``selective save-linear``, ``selective (keeps addmm:0,1 mm)``."""
    if a.action != SELECTIVE:
        return a.action
    if a.policy:
        return f"selective {a.policy}"
    calls: dict[str, list[str]] = {}
    for op, k in a.keep or ():
        calls.setdefault(op, []).append("" if k is None else str(k))
    kept = " ".join(op if "" in ks else f"{op}:{','.join(ks)}" for op, ks in calls.items())
    return f"selective (keeps {kept or 'nothing'})"


def describe_actions(plan: PlanEntry, width: int = 78) -> list[str]:
    by: dict[str, list[str]] = {}
    for a in plan.actions:
        by.setdefault(_kind(a), []).append(display_unit(a.unit))
    lines = []
    for kind, names in by.items():
        text = f"  {kind}: " + ", ".join(names)
        lines.append(text if len(text) <= width else text[: width - 1] + "…")
    return lines


def render_suggest(console: Console, doc: dict, *, top: int, plan_path: str) -> None:
    base = Prediction.from_json(doc["baseline"])
    plans = [PlanEntry.from_json(p) for p in doc["plans"]]
    budget = doc.get("budget")
    console.print(
        f"baseline: peak [bold]{format_bytes(base.peak_bytes)}[/bold] (in {base.peak_phase}), "
        f"activations {format_bytes(base.activation_bytes)}, step {base.step_time_s * 1000:.1f} ms"
        + (f"; {budget.get('metric', 'peak')} budget {budget['text']} = {format_bytes(budget['bytes'])}" if budget else "")
    )
    wide = console.width >= 96
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    columns = [("#", "right"), ("strategy", "left"), ("acts on", "left"), ("peak", "right"),
               ("activations", "right"), ("time", "right")] + ([("MiB/ms", "right")] if wide else [])
    for col, justify in columns:
        table.add_column(col, justify=justify, no_wrap=True)
    for plan in plans[:top]:
        p = plan.predicted
        name = plan.strategy + ("*" if plan.pareto else "")
        style = "bold" if doc.get("recommendation") and plan.rank == doc["recommendation"]["rank"] else None
        if plan.meets_budget is False:
            style = "dim"
        row = [
            str(plan.rank), name, _units_label(plan), _with_change(p.peak_bytes, plan.change["peak"]),
            _with_change(p.activation_bytes, plan.change["activation"]), f"{(p.overhead or 0.0) * 100:+.0f}%",
        ]
        if wide:
            row.append(f"{(plan.bytes_saved_per_ms or 0.0) / 2**20:.2f}")
        table.add_row(*row, style=style)
    console.print(table)
    console.print("[dim]* on the Pareto front of (peak, step time); time = predicted step-time overhead[/dim]")
    _render_recompute(console, plans[:top])
    _render_traffic(console, doc)
    for u in doc.get("unavailable", []):
        console.print(f"[dim]not applicable: {u['strategy']}: {u['reason']}[/dim]")
    for note in doc.get("notes", []):
        console.print(f"[yellow]note:[/yellow] {note}")
    rec = doc.get("recommendation")
    if rec:
        plan = next(p for p in plans if p.rank == rec["rank"])
        for line in describe_actions(plan):
            console.print(line)
        for w in plan.warnings:
            console.print(f"[yellow]warning:[/yellow] {w}")
        p = plan.predicted
        console.print(
            f"recommendation: [bold]#{rec['rank']} {rec['strategy']}[/bold] — {rec['reason']}: peak "
            f"{format_bytes(p.peak_bytes)} ({format_percent(plan.change['peak'])}), step time "
            f"{format_percent(p.overhead)}"
        )
        console.print(f"next: [bold]memadvise apply --plan {plan_path} --rank {rec['rank']}[/bold]")
    elif budget and not budget.get("met_by_baseline"):
        activation = budget.get("metric") == "activation"
        lowest = doc["lowest_activation_bytes"] if activation else doc["lowest_peak_bytes"]
        console.print(
            f"[red]no plan meets the budget {format_bytes(budget['bytes'])}[/red]: the lowest predicted "
            f"{'activation memory' if activation else 'peak'} is {format_bytes(lowest)}; the closest plans are listed first"
        )


RECOMPUTE_OPS_SHOWN = 3  # op kinds per plan in the recompute lines, the most bytes freed first


def recompute_line(plan: PlanEntry, n: int = RECOMPUTE_OPS_SHOWN) -> str:
    """``gelu ×12 105 µs −32.0 KiB, _softmax ×12 ...``: what a plan recomputes, the ops
    that free most first (calls, predicted µs, saved bytes freed)."""
    rows = plan.recompute or ()
    if not rows and plan.compile is not None:  # the partition's recompute is not broken down by op kind
        c = plan.compile
        flops = f", {c.recomputed_flops / 1e6:.1f} MFLOP of matmuls" if c.recomputed_flops else ""
        return (f"{c.recomputed_count} op(s) in the compiled backward{flops} (torch.compile's partition; "
                "not broken down by op kind)")
    parts = [f"{r.op} ×{r.calls} {r.us:.0f} µs" + (f" −{format_bytes(r.freed_bytes)}" if r.freed_bytes else "")
             for r in rows[:n]]
    more = len(rows) - n
    if more > 0:
        parts.append(f"+{more} ops {sum(r.us for r in rows[n:]):.0f} µs")
    return ", ".join(parts) if parts else "nothing (offload, or nothing unpacked)"


def _render_recompute(console: Console, plans: list[PlanEntry]) -> None:
    rows = [p for p in plans if p.recompute is not None]
    if not rows:
        return
    console.print("recomputed in backward, by op (calls, predicted time, − saved bytes freed):")
    for plan in rows:
        console.print(f"  {plan.label}: {recompute_line(plan)}", overflow="fold")


def _render_traffic(console: Console, doc: dict) -> None:
    traffic = doc.get("traffic") or {}
    plans = traffic_entries(doc)
    if not plans:
        return
    table = Table(title="traffic: bytes moved, not held (combinable with a plan: apply --traffic NAME)",
                  title_justify="left", show_edge=False, box=None, header_style="bold")
    for col, justify in (("strategy", "left"), ("peak", "right"), ("time", "right"), ("with #1", "right"), ("note", "left")):
        table.add_column(col, justify=justify, no_wrap=col != "note")
    base = traffic.get("baseline_peak_bytes") or 1
    for p in plans:
        pred, combo = p.predicted, p.with_plan
        table.add_row(
            p.strategy, _with_change(pred.peak_bytes, pred.peak_bytes / base - 1), f"{(pred.overhead or 0.0) * 100:+.0f}%",
            f"{(combo.overhead or 0.0) * 100:+.0f}%" if combo else "-", p.short,
        )
    console.print(table)
