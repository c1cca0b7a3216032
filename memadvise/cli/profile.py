"""``memadvise profile``: run a training script for a few steps and record its memory."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from memadvise.cli.app import app
from memadvise.cli.common import DEFAULT_DIR, err_console, out_console, print_json, progress_bar


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
    vary: Optional[str] = typer.Option(None, "--vary", help="Profile at several sizes for `fit`: NAME=V1,V2 replaces {NAME} in the script's arguments."),
    vary_env: Optional[str] = typer.Option(None, "--vary-env", help="With --vary: pass the value in this environment variable instead."),
    nproc_per_node: int = typer.Option(1, "--nproc-per-node", help="Launch N processes with torch.distributed.run; rank 0 merges their profiles."),
    probe_compile: bool = typer.Option(False, "--probe-compile", help="Also measure torch.compile's fixed cost and its random numbers on this device, for the compile plan (compiles: ~15 s the first time)."),
    compile_plans: bool = typer.Option(False, "--compile-plans", help="Also read torch.compile's partition at activation memory budgets 1.0 ... 0.1, for compile(budget) plans (traces the model once: seconds to a minute)."),
) -> None:
    from memadvise.collect.api import profile_script, profile_varied
    from memadvise.report.profile_report import profile_summary, render_profile_done
    from memadvise.sizes import format_bytes

    import contextlib
    import sys

    console = err_console()
    # with --json, stdout carries only our JSON: the script's prints go to stderr
    quiet = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    if nproc_per_node > 1:
        from memadvise._errors import UsageError
        from memadvise.collect.distributed import launch
        from memadvise.schema.profile import read_profile

        if vary is not None:
            raise UsageError("--vary and --nproc-per-node cannot be combined")
        with quiet:
            launch(script, script_args or [], nproc_per_node, out=out, warmup=warmup, steps=steps,
                   timing_steps=timing_steps, timeout=timeout)
        profile = read_profile(out)
        if as_json:
            print_json(profile_summary(profile))
        else:
            render_profile_done(out_console(), profile)
        return
    if nproc_per_node < 1:
        from memadvise._errors import UsageError

        raise UsageError("--nproc-per-node must be at least 1")
    if vary is not None:
        with progress_bar(console, enabled=not as_json) as progress, quiet:
            profiles = profile_varied(script, script_args or [], vary, env_var=vary_env, out_dir=out.parent,
                                      warmup=warmup, steps=steps, timing_steps=timing_steps, timeout=timeout,
                                      progress=progress)
        if as_json:
            print_json([profile_summary(p) for p in profiles])
        else:
            con = out_console()
            for p in profiles:
                v = p.records.settings.vary  # profile_varied records the value it profiled at
                label = f"{v.name}={v.value}" if v is not None else "?"
                con.print(f"{label}: peak {format_bytes(p.records.summary.peak_bytes)} -> {p.path}")
            paths = " ".join(f"--profile {p.path}" for p in profiles)
            con.print(f"next: [bold]memadvise fit {paths} --device-memory 24GiB[/bold]")
        return
    with progress_bar(console, enabled=not as_json) as progress, quiet:
        profile = profile_script(
            script, script_args or [], warmup=warmup, steps=steps, timing_steps=timing_steps,
            timeout=timeout, out=out, progress=progress, probe_compile=probe_compile,
            compile_plans=compile_plans,
        )
    if as_json:
        print_json(profile_summary(profile))
    else:
        render_profile_done(out_console(), profile)
