"""``memadvise suggest``: simulate recompute strategies on a profile and rank the plans."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from memadvise.cli.app import app
from memadvise.cli.common import DEFAULT_DIR, err_console, out_console, print_json


@app.command("suggest", help="Predict peak memory and step time of recompute plans, and rank them.")
def suggest_command(
    profile_path: Path = typer.Option(DEFAULT_DIR / "profile.json", "--profile", "-p", help="Profile to read."),
    budget: Optional[str] = typer.Option(None, "--budget", "-b", help="Peak-memory budget: 6GiB, 6000MB or 60% of the baseline peak."),
    budget_metric: str = typer.Option("peak", "--budget-metric", help="What the budget limits: peak or activation (memory)."),
    top: int = typer.Option(10, "--top", help="How many plans to show."),
    allow_precision: bool = typer.Option(False, "--allow-precision", help="Also consider mixed precision (changes numerics)."),
    out: Path = typer.Option(DEFAULT_DIR / "plan.json", "--out", "-o", help="Where to write the plan file."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan document on stdout."),
) -> None:
    from memadvise._errors import EXIT_FAILED, UsageError
    from memadvise.planning.suggest import suggest
    from memadvise.report.suggest_report import render_suggest
    from memadvise.schema.plan import write_plan
    from memadvise.schema.profile import read_profile
    from memadvise.sizes import parse_budget

    if top < 1:
        raise UsageError("--top must be at least 1")
    parsed = parse_budget(budget) if budget is not None else None
    profile = read_profile(profile_path)
    with err_console().status("suggest: simulating strategies", spinner="dots"):
        doc = suggest(profile, budget=parsed, profile_path=str(profile_path), budget_metric=budget_metric,
                      allow_precision=allow_precision)
    write_plan(doc, out)
    if as_json:
        print_json(doc)
    else:
        render_suggest(out_console(), doc, top=top, plan_path=str(out))
    if parsed is not None and doc["recommendation"] is None and not doc["budget"].get("met_by_baseline"):
        raise typer.Exit(EXIT_FAILED)
