"""``memadvise check``: a CI gate that compares a script's memory with a committed baseline."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from memadvise.cli.app import app
from memadvise.cli.common import DEFAULT_DIR, err_console, out_console, print_json

CHECK_PROFILE = DEFAULT_DIR / "check-profile.json"


@app.command(
    "check",
    help="Profile SCRIPT [-- ARGS...] (or read --profile) and compare its memory with a baseline file "
    "or an absolute limit. Exit 0 pass, 1 regression or limit exceeded, 2 bad usage or input.",
)
def check_command(
    script: Optional[Path] = typer.Argument(None, help="The training script; omit it with --profile."),
    script_args: Optional[List[str]] = typer.Argument(None, help="Arguments for the script, after `--`."),
    baseline_path: Optional[Path] = typer.Option(
        None, "--baseline", help="Baseline file to compare with (default: memadvise-baseline.json)."
    ),
    tolerance: str = typer.Option("5%", "--tolerance", help="Allowed growth over the baseline, e.g. 5% or 2.5."),
    max_peak: Optional[str] = typer.Option(None, "--max-peak", help="Absolute peak limit (needs no baseline), e.g. 6GiB."),
    metric: str = typer.Option("all", "--metric", help="Gated against the baseline: peak, activation or all."),
    update_baseline: bool = typer.Option(False, "--update-baseline", help="Write this run's figures into the baseline."),
    profile_path: Optional[Path] = typer.Option(None, "--profile", "-p", help="Read this profile instead of running SCRIPT."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Also write the result as JUnit XML here."),
    warmup: int = typer.Option(1, "--warmup", help="Steps run first and discarded."),
    steps: int = typer.Option(3, "--steps", help="Steps recorded."),
    timing_steps: int = typer.Option(3, "--timing-steps", help="Uninstrumented steps timed (reported, not gated)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Stop the script after this many seconds."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object (verdict, passed, rows, warnings)."),
) -> None:
    import contextlib
    import gc
    import os
    import sys
    from time import perf_counter

    from memadvise._errors import EXIT_FAILED
    from memadvise.check.run import CheckRequest, append_step_summary, run_check, write_junit
    from memadvise.report.check_report import check_document, markdown_summary, render_check
    from memadvise.schema.profile import read_profile

    started = perf_counter()
    request = CheckRequest.parse(
        script=script, script_args=script_args, profile_path=profile_path, baseline=baseline_path,
        tolerance=tolerance, max_peak=max_peak, metric=metric, update_baseline=update_baseline, junit=junit,
    )

    def get_profile():
        if profile_path is not None:
            return read_profile(profile_path)
        from memadvise.cli.common import progress_bar
        from memadvise.collect.api import profile_script

        # Tensors of earlier runs in this process that only the cycle collector frees
        # would otherwise be counted as live (tests and notebooks run several checks).
        gc.collect()
        # stdout carries our verdict first; the script's prints go to stderr
        with progress_bar(err_console(), enabled=not as_json) as progress, contextlib.redirect_stdout(sys.stderr):
            return profile_script(
                script, script_args or [], warmup=warmup, steps=steps, timing_steps=timing_steps,
                timeout=timeout, out=CHECK_PROFILE, progress=progress,
                calibrate_overheads=False,  # recompute overheads matter to `suggest`, not to a memory gate
            )

    result, context = run_check(request, get_profile)
    if junit is not None:
        write_junit(junit, result, time_s=perf_counter() - started)
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:  # GitHub collects appended sections
        warning = append_step_summary(summary_file, markdown_summary(result, context))
        if warning:
            err_console().print(f"[yellow]warning:[/yellow] {warning}")
    if as_json:
        print_json(check_document(result, context))
    else:
        render_check(out_console(), result, context)
    if not result.passed:
        raise typer.Exit(EXIT_FAILED)
