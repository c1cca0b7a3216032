"""``memadvise show``: print what a profile recorded."""

from __future__ import annotations

from pathlib import Path

import typer

from memadvise.cli.app import app
from memadvise.cli.common import DEFAULT_DIR, out_console, print_json


@app.command("show", help="Show a profile: memory at peak by category, top units, timeline, environment.")
def show_command(
    profile_path: Path = typer.Option(DEFAULT_DIR / "profile.json", "--profile", "-p", help="Profile to read."),
    top: int = typer.Option(12, "--top", help="How many units to list."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
) -> None:
    from memadvise._errors import UsageError
    from memadvise.report.profile_report import render_show, show_document
    from memadvise.schema.profile import read_profile

    if top < 1:
        raise UsageError("--top must be at least 1")
    profile = read_profile(profile_path)
    if as_json:
        print_json(show_document(profile, top=top))
    else:
        render_show(out_console(), profile, top=top)
