"""Output of ``memadvise apply``: the patch, and the predicted-vs-measured table."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table

from memadvise.schema.verify import VerifyResult
from memadvise.sizes import format_bytes, format_percent


def apply_document(prepared, written: dict, verify: dict | None) -> dict:
    return {
        "plan": prepared.plan.to_json(),
        "script": str(prepared.script),
        "insert_after_line": prepared.patch.insert_line,
        "where": getattr(prepared, "where", ""),
        "written": written,
        "diff": prepared.patch.diff,
        "verify": verify,
    }


def render_patch(console: Console, prepared, written: dict) -> None:
    if console.is_terminal:
        console.print(Syntax(prepared.patch.diff, "diff", theme="ansi_dark", background_color="default", word_wrap=True))
    else:  # piped or redirected: the diff byte for byte, never cropped to a console width
        console.file.write(prepared.patch.diff if prepared.patch.diff.endswith("\n") else prepared.patch.diff + "\n")
    plan = prepared.plan
    if getattr(prepared, "where", ""):
        console.print(f"the plan goes {escape(prepared.where)}")
    if "patch" in written:
        console.print(f"plan #{plan.rank} ({plan.strategy}) written as a patch to {written['patch']}")
        console.print(f"apply it with: [bold]git apply {written['patch']}[/bold]  (or patch -p1 < {written['patch']})")
    else:
        console.print(f"{written['script']} patched in place; the original is saved as {written['backup']}")


def render_verify(console: Console, result: VerifyResult) -> None:
    table = Table(title="predicted vs measured", title_justify="left", show_edge=False)
    for col in ("metric", "baseline", "predicted", "measured", "error"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for r, label in ((result.peak, "peak"), (result.activation, "activations")):
        err = "-" if r.error is None else f"{r.error:.1%}"
        measured = "-" if r.unmeasured else format_bytes(r.measured)
        table.add_row(label, format_bytes(r.baseline_measured), format_bytes(r.predicted), measured, err)
    o = result.overhead
    table.add_row("step time", f"{result.baseline_step_time_s * 1000:.1f} ms", format_percent(o.predicted),
                  format_percent(o.measured), f"{(o.error or 0.0) * 100:.1f} pts")
    console.print(table)
    if result.activation.unmeasured:
        console.print(f"activations: {result.activation.unmeasured}", markup=False)
    peak = result.peak
    if peak.independent_error:
        console.print(f"[yellow]warning:[/yellow] {peak.independent_error}; the peaks above are memadvise's own "
                      "readings, not an independent measurement")
    elif peak.instrument:
        console.print(f"measured peaks: {peak.instrument}, one steady-state step, in separate processes")
        own = [("patched", peak.memadvise, peak.measured), ("original", peak.memadvise_baseline, peak.baseline_measured)]
        for what, mine, theirs in own:
            if mine is not None and mine != theirs:
                console.print(f"memadvise's own reading of the {what} run: {format_bytes(mine)} "
                              f"({(mine - theirs) / max(theirs, 1):+.1%} against the measurement)")
    if o.verdict:
        console.print(f"step time: {o.verdict}", markup=False)
    elif o.resolved is False and o.pairs_range is not None:  # a verify file from before the verdict
        lo, hi = o.pairs_range
        console.print(f"step time: the {len(o.measured_pairs)} original/patched pairs took both signs "
                      f"({format_percent(lo)} to {format_percent(hi)}): a change this machine's run-to-run noise "
                      "hides; its sign is not measured")
    peak_err = peak.error or 0.0
    if result.applied is not None and not result.applied.took_effect:
        console.print(f"[red]plan not applied[/red]: {escape(result.applied.said)}; the measured memory is not the plan's")
    elif result.passed:
        console.print(f"[green]verified[/green]: peak within {peak_err:.1%} of the prediction (tolerance {result.tolerance:.0%})")
    else:
        console.print(f"[red]failed[/red]: peak off by {peak_err:.1%}, more than the tolerance {result.tolerance:.0%}")
