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
    import shlex
    import sys
    from time import perf_counter

    from memadvise._errors import EXIT_FAILED, InputFileError, UsageError
    from memadvise.check.gate import Limits, baseline_changes, compare
    from memadvise.report.check_report import (
        CheckContext, check_document, markdown_summary, render_check, update_line,
    )
    from memadvise.schema.baseline import (
        DEFAULT_PATH, BaselineEntry, read_baseline, read_baseline_for_update, write_baseline,
    )
    from memadvise.schema.profile import read_profile

    started = perf_counter()
    limits = Limits.parse(tolerance=tolerance, max_peak=max_peak, metric=metric)
    if profile_path is not None and (script is not None or script_args):
        raise UsageError("give SCRIPT to profile or --profile to read, not both")
    if profile_path is None and script is None:
        raise UsageError("give the SCRIPT to profile, or --profile PATH to read an existing profile")
    path = baseline_path if baseline_path is not None else DEFAULT_PATH
    if junit is not None and junit.resolve() == path.resolve():
        raise UsageError("--junit would overwrite the baseline file")

    # Read the baseline before running anything: a missing or corrupt one fails in a second.
    warnings: list[str] = []
    baseline = None
    if update_baseline:
        baseline, warning = read_baseline_for_update(path)
        warnings += [warning] if warning else []
    elif baseline_path is None and limits.max_peak_bytes is not None and not path.exists():
        pass  # an absolute limit needs no baseline
    else:
        baseline = read_baseline(path)

    if profile_path is not None:
        profile = read_profile(profile_path)
    else:
        from memadvise.cli.common import progress_bar
        from memadvise.collect.api import profile_script

        # Tensors of earlier runs in this process that only the cycle collector frees
        # would otherwise be counted as live (tests and notebooks run several checks).
        gc.collect()
        # stdout carries our verdict first; the script's prints go to stderr
        with progress_bar(err_console(), enabled=not as_json) as progress, contextlib.redirect_stdout(sys.stderr):
            profile = profile_script(
                script, script_args or [], warmup=warmup, steps=steps, timing_steps=timing_steps,
                timeout=timeout, out=CHECK_PROFILE, progress=progress,
                calibrate_overheads=False,  # recompute overheads matter to `suggest`, not to a memory gate
            )

    current = BaselineEntry.from_profile(profile, relative_to=path.parent)
    key = current.device_key
    entry = baseline.entries.get(key) if baseline is not None else None
    if baseline is not None and entry is None and not update_baseline:
        others = ", ".join(sorted(baseline.entries)) or "none"
        if limits.max_peak_bytes is None:
            raise InputFileError(
                f"baseline {str(path)!r} has no entry for device {key!r} (it has: {others}); "
                "add one with `memadvise check SCRIPT --update-baseline` on this device"
            )
        warnings.append(f"baseline {str(path)!r} has no entry for device {key!r}; only --max-peak is checked")

    result = compare(current, entry, limits, gate_baseline=not update_baseline)
    result.warnings[:0] = warnings
    context = CheckContext(baseline_path=str(path), profile_path=str(profile.path) if profile.path else None)
    if update_baseline:
        assert baseline is not None
        context.updated = entry is None or not entry.same_figures(current)
        if context.updated:
            context.changes = baseline_changes(entry, current)
            write_baseline(baseline.with_entry(key, current), path)
        if not result.gated_rows:  # nothing was checked: the verdict is what the update did
            result.verdict = update_line(result, context)
    else:
        command = ["memadvise", "check"]
        command += ["--profile", str(profile_path)] if profile_path is not None else [str(script)]
        command += ["--baseline", str(path), "--update-baseline"]
        command += ["--", *script_args] if script_args else []
        context.update_command = shlex.join(command)

    if junit is not None:
        from memadvise.check.junit import junit_xml
        from memadvise.schema.io import atomic_write_text

        atomic_write_text(junit, junit_xml(result, time_s=perf_counter() - started))
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        try:
            with open(summary_file, "a", encoding="utf-8") as f:  # GitHub collects appended sections
                f.write(markdown_summary(result, context))
        except OSError as exc:
            err_console().print(f"[yellow]warning:[/yellow] cannot write $GITHUB_STEP_SUMMARY: {exc.strerror}")

    if as_json:
        print_json(check_document(result, context))
    else:
        render_check(out_console(), result, context)
    if not result.passed:
        raise typer.Exit(EXIT_FAILED)
