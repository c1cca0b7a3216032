"""``memadvise apply``: turn a plan into a patch (or patch the script), and verify it."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from memadvise.cli.app import app
from memadvise.cli.common import DEFAULT_DIR, err_console, out_console, print_json, stages


@app.command("apply", help="Write a plan as a patch of the profiled script (or apply it with --write); --verify measures it.")
def apply_command(
    plan_path: Path = typer.Option(DEFAULT_DIR / "plan.json", "--plan", help="Plan file from `memadvise suggest`."),
    rank: Optional[int] = typer.Option(None, "--rank", help="Plan to apply, by rank (default: 1)."),
    strategy: Optional[str] = typer.Option(None, "--strategy", help="Plan to apply, by strategy name."),
    traffic: Optional[List[str]] = typer.Option(None, "--traffic", help="Traffic strategy to apply too (repeatable): optimizer-fused, compile, ..."),
    runtime: str = typer.Option("inline", "--runtime", help="inline: the patch carries memadvise's runtime (the script needs only PyTorch); import: it imports memadvise.apply.runtime."),
    script: Optional[Path] = typer.Option(None, "--script", help="The script to patch (default: the plan's, relative to this directory)."),
    patch_path: Path = typer.Option(DEFAULT_DIR / "plan.patch", "--patch", help="Where to write the patch."),
    write: bool = typer.Option(False, "--write", help="Patch the script in place, keeping SCRIPT.orig."),
    verify: bool = typer.Option(False, "--verify", help="Profile the patched script and compare with the prediction."),
    tolerance: str = typer.Option("5%", "--tolerance", help="Largest accepted peak error for --verify."),
    verify_repeats: int = typer.Option(1, "--verify-repeats", help="Alternate original and patched runs this many times; the overhead is the median of the pairs."),
    verify_out: Optional[Path] = typer.Option(None, "--verify-out", help="Also write the verify result as JSON here (for `memadvise report --verify`)."),
    force: bool = typer.Option(False, "--force", help="Apply to a changed script; overwrite an existing backup."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
) -> None:
    from memadvise._errors import EXIT_FAILED
    from memadvise.apply.apply import prepare, write_in_place, write_patch_file
    from memadvise.report.apply_report import apply_document, render_patch, render_verify
    from memadvise.schema.verify import VerifyResult
    from memadvise.schema.plan import read_plan, select_entry
    from memadvise.sizes import parse_percent

    from memadvise._errors import UsageError

    if verify_out is not None and not verify:
        raise UsageError("--verify-out needs --verify")
    if verify_repeats < 1:
        raise UsageError("--verify-repeats must be at least 1")
    tol = parse_percent(tolerance, what="tolerance", allow_zero=True)
    plan_file = read_plan(plan_path)
    plan = None if (traffic and rank is None and strategy is None) else select_entry(plan_file, rank=rank, strategy=strategy)
    from memadvise.apply.apply import script_of

    target = script_of(plan_file, script, project=Path.cwd())
    prepared = prepare(plan_file, plan, force=force, traffic=traffic or [], runtime=runtime, script=target)
    written: dict = {}
    if write:
        written["backup"] = str(write_in_place(prepared, force=force))
        written["script"] = str(prepared.script)
    else:
        written["patch"] = str(write_patch_file(prepared, patch_path))
    result = None
    if verify:
        from memadvise.apply.verify import verify as run_verify

        with stages(err_console(), "verifying") as progress:
            result = run_verify(plan_file, prepared, tolerance=tol, repeats=verify_repeats, progress=progress)
    if verify_out is not None and result is not None:
        from memadvise.schema.io import atomic_write_json

        atomic_write_json(verify_out, apply_document(prepared, written, result), indent=1)
        written["verify"] = str(verify_out)
    if as_json:
        print_json(apply_document(prepared, written, result))
    else:
        console = out_console()
        render_patch(console, prepared, written)
        if result is not None:
            render_verify(console, VerifyResult.from_json(result))
    if result is not None and not VerifyResult.from_json(result).passed:
        raise typer.Exit(EXIT_FAILED)
