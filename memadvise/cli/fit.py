"""``memadvise fit``: what fits on a device, before launching the job."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from memadvise.cli.app import app
from memadvise.cli.common import DEFAULT_DIR, out_console, print_json


@app.command("fit", help="Largest batch (or sequence length) that fits on a device, with and without recompute plans.")
def fit_command(
    profiles: Optional[List[Path]] = typer.Option(None, "--profile", "-p", help="Profiles from `profile --vary` (default: .memadvise/profile.*-*.json)."),
    device_memory: str = typer.Option(..., "--device-memory", "-d", help="A size (24GiB) or a GPU name (H100-80GB, A100-40GB, L4, RTX4090, ...)."),
    target: Optional[str] = typer.Option(None, "--target", help="NAME=VALUE: the plan to use at this size."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
) -> None:
    import re

    from memadvise._errors import InputFileError
    from memadvise.planning.fit import fit
    from memadvise.report.fit_report import render_fit
    from memadvise.schema.profile import read_profile

    paths = list(profiles or [])
    if not paths:
        paths = sorted(p for p in DEFAULT_DIR.glob("profile.*-*.json") if re.match(r"profile\.[A-Za-z_]\w*-\d+\.json$", p.name))
    if len(paths) < 2:
        raise InputFileError("fit needs two or more profiles at different sizes: run `memadvise profile --vary batch=8,16 SCRIPT -- --batch {batch}` first")
    doc = fit([read_profile(p) for p in paths], device_memory=device_memory, target=target)
    if as_json:
        print_json(doc)
    else:
        render_fit(out_console(), doc)
