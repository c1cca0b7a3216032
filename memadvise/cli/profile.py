"""``memadvise profile``: run a training script for a few steps and record its memory."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from memadvise.cli.app import app
from memadvise.cli.common import DEFAULT_DIR, err_console, out_console, print_json


@app.command(
    "profile",
    help="Run SCRIPT [-- ARGS...] for a few training steps and record its memory and time.",
)
def profile_command(
    script: Path = typer.Argument(..., help="The training script, run as `python SCRIPT ARGS`."),
    script_args: Optional[List[str]] = typer.Argument(None, help="Arguments for the script, after `--`."),
    warmup: int = typer.Option(1, "--warmup", help="Steps run first and discarded."),
    steps: int = typer.Option(3, "--steps", help="Steps recorded."),
    timing_steps: int = typer.Option(3, "--timing-steps", help="Uninstrumented steps timed for the step time."),
    out: Path = typer.Option(DEFAULT_DIR / "profile.json", "--out", "-o", help="Where to write the profile."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Stop the script after this many seconds."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    from memadvise.collect.api import profile_script
    from memadvise.report.profile_report import profile_summary, render_profile_done

    import contextlib
    import sys

    console = err_console()
    # with --json, stdout carries only our JSON: the script's prints go to stderr
    quiet = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    with _progress(console, enabled=not as_json) as progress, quiet:
        profile = profile_script(
            script, script_args or [], warmup=warmup, steps=steps, timing_steps=timing_steps,
            timeout=timeout, out=out, progress=progress,
        )
    if as_json:
        print_json(profile_summary(profile))
    else:
        render_profile_done(out_console(), profile)


class _progress:
    """A rich progress bar over the script's steps (on stderr), or nothing."""

    def __init__(self, console, enabled: bool) -> None:
        self.console = console
        self.enabled = enabled and console.is_terminal
        self._progress = None
        self._task = None

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("profiling"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
            TimeElapsedColumn(), console=self.console, transient=True,
        )
        self._progress.__enter__()
        self._task = self._progress.add_task("steps", total=None)

        def update(done: int, total: int) -> None:
            self._progress.update(self._task, completed=done, total=total)

        return update

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
