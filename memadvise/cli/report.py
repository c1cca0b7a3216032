"""``memadvise report``: one self-contained HTML file with the timeline, modules, plans."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from memadvise.cli.app import app
from memadvise.cli.common import DEFAULT_DIR, err_console, out_console, print_json


@app.command("report", help="Write an HTML report (opens offline): timeline, plan overlay, modules, Pareto chart.")
def report_command(
    profile_path: Path = typer.Option(DEFAULT_DIR / "profile.json", "--profile", "-p", help="Profile to read."),
    plan_path: Optional[Path] = typer.Option(None, "--plan", help="Plan file from `memadvise suggest` (default: .memadvise/plan.json when it exists)."),
    rank: Optional[int] = typer.Option(None, "--rank", help="Plan to overlay, by rank (default: the recommendation)."),
    strategy: Optional[str] = typer.Option(None, "--strategy", help="Plan to overlay, by strategy name."),
    verify_path: Optional[Path] = typer.Option(None, "--verify", help="Output of `memadvise apply --verify --json`, for predicted against measured."),
    out: Path = typer.Option(DEFAULT_DIR / "report.html", "--out", "-o", help="Where to write the report."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    from memadvise._errors import UsageError
    from memadvise.report.chart_data import ReportInputs, check_plan_matches, choose_plan
    from memadvise.schema.verify import read_verify
    from memadvise.report.html import render_report, report_summary
    from memadvise.schema.io import atomic_write_text
    from memadvise.schema.plan import read_plan
    from memadvise.schema.profile import read_profile
    from memadvise.sizes import format_bytes

    profile = read_profile(profile_path)
    notes: list[str] = []
    plan_file = plan = None
    default_plan = DEFAULT_DIR / "plan.json"
    if plan_path is not None or default_plan.exists():
        plan_file = read_plan(plan_path or default_plan)
        mismatch = check_plan_matches(profile, plan_file)
        if mismatch and plan_path is not None:
            raise UsageError(f"{mismatch}; pass its profile with --profile, or run `memadvise suggest` again")
        if mismatch:  # the default plan file belongs to another profile: report without it
            notes.append(f"{mismatch}: plans left out")
            plan_file = None
    elif rank is not None or strategy is not None:
        raise UsageError(f"--rank and --strategy need a plan file; {default_plan} does not exist (run `memadvise suggest`)")
    if plan_file is not None:
        plan = choose_plan(plan_file, rank, strategy)
    verify = read_verify(verify_path) if verify_path else None
    inputs = ReportInputs(profile=profile, plan_file=plan_file, plan=plan, verify=verify, notes=tuple(notes))

    with err_console().status("report", spinner="dots") as status:
        text = render_report(inputs, progress=lambda msg: status.update(f"report: {msg}"))
        atomic_write_text(out, text)
    size = len(text.encode("utf-8"))
    if as_json:
        print_json(report_summary(inputs, str(out), size))
        return
    console = out_console()
    for note in notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    what = f" with plan {plan.label}" if plan else ""
    console.print(f"report{what} written to {out} ({format_bytes(size)})")
    console.print(f"open it in a browser: [bold]{out.resolve().as_uri()}[/bold]")
