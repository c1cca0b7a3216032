"""Views of a check result: the terminal table, the JSON object and the Markdown summary
that ``memadvise check`` appends to ``$GITHUB_STEP_SUMMARY``."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from memadvise.check.gate import CheckResult, CheckRow
from memadvise.check.run import CheckContext, update_line
from memadvise.sizes import format_bytes, format_percent

_STATUS_STYLE = {"pass": "green", "fail": "bold red", "info": "dim"}


def check_document(result: CheckResult, context: CheckContext) -> dict:
    """The ``--json`` object: verdict, passed, rows, warnings (and where things are)."""
    doc = result.to_json()
    doc["baseline"] = context.baseline_path
    doc["profile"] = context.profile_path
    if context.updated is not None:
        doc["baseline_updated"] = context.updated
        doc["baseline_changes"] = list(context.changes)
    return doc


def metric_label(row: CheckRow) -> str:
    if row.check == "category":
        return f"  {row.metric.replace('_', ' ')}"
    if row.check == "max_peak":
        return "peak (--max-peak)"
    return row.metric.replace("_", " ")


def _value(row: CheckRow, value: float | None) -> str:
    if value is None:
        return "-"
    if row.unit == "s":
        return f"{value * 1000:.1f} ms"
    return format_bytes(value)


def _limit(row: CheckRow) -> str:
    if row.limit is None:
        return "-"
    if row.check == "baseline":
        return f"{format_bytes(row.limit)} ({row.limit_text})"
    return format_bytes(row.limit)


def render_check(console: Console, result: CheckResult, context: CheckContext) -> None:
    """Verdict line first, then the table, warnings, notes, and what to do next."""
    # soft_wrap: the verdict, warnings and commands stay one line each in CI logs, whatever the width
    if context.updated is not None and not result.gated_rows:
        console.print(escape(update_line(result, context)), soft_wrap=True)
    else:
        mark = "[bold green]PASS[/bold green]" if result.passed else "[bold red]FAIL[/bold red]"
        console.print(f"{mark} {escape(result.verdict)}", soft_wrap=True)
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for col, justify in (("metric", "left"), ("baseline", "right"), ("current", "right"),
                         ("change", "right"), ("limit", "right"), ("status", "left")):
        table.add_column(col, justify=justify, no_wrap=True)
    for row in result.rows:
        if row.check == "category" and row is next(r for r in result.rows if r.check == "category"):
            table.add_row("by category at peak:", style="dim")
        style = _STATUS_STYLE[row.status]
        table.add_row(
            metric_label(row), _value(row, row.baseline), _value(row, row.current), format_percent(row.change),
            _limit(row), f"[{style}]{row.status}[/{style}]",
            style="dim" if row.check == "category" else None,
        )
    console.print(table)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)
    for note in result.notes:
        console.print(f"[cyan]note:[/cyan] {escape(note)}", soft_wrap=True)
    if context.updated is not None:
        if result.gated_rows:
            console.print(escape(update_line(result, context)), soft_wrap=True)
        for change in context.changes:
            console.print(f"  {escape(change)}", soft_wrap=True)
    elif not result.passed and context.update_command and any(r.check == "baseline" for r in result.failures):
        console.print(
            f"if the growth is intended, record it: [bold]{escape(context.update_command)}[/bold]", soft_wrap=True
        )


def markdown_summary(result: CheckResult, context: CheckContext) -> str:
    """A Markdown section for the GitHub Actions job summary."""
    if context.updated is not None and not result.gated_rows:
        head = f"### memadvise check: baseline {'updated' if context.updated else 'unchanged'}"
    else:
        head = f"### memadvise check: {'✅ pass' if result.passed else '❌ FAIL'}"
    lines = [head, "", f"**{_md(result.verdict)}**", "",
             f"Device `{result.device_key}`, baseline `{context.baseline_path}`.", "",
             "| metric | baseline | current | change | limit | status |",
             "|---|---:|---:|---:|---:|---|"]
    for row in result.rows:
        status = {"pass": "✅ pass", "fail": "❌ fail", "info": "info"}[row.status]
        label = metric_label(row).strip() + (" (at peak)" if row.check == "category" else "")
        lines.append(
            f"| {_md(label)} | {_value(row, row.baseline)} | {_value(row, row.current)} | "
            f"{format_percent(row.change)} | {_md(_limit(row))} | {status} |"
        )
    extra = [f"> ⚠️ {_md(w)}" for w in result.warnings] + [f"> {_md(n)}" for n in result.notes]
    extra += [f"- {_md(c)}" for c in context.changes]
    if extra:
        lines += [""] + extra
    return "\n".join(lines) + "\n\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")
