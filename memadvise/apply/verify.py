"""``apply --verify``: measure the patched script against the unpatched one, in separate
processes, and compare with the plan's predictions."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from memadvise._errors import ScriptError
from memadvise.apply.apply import PreparedPatch
from memadvise.schema.plan import PlanFile


def _profile_subprocess(script: Path, args: list[str], settings: dict, cwd: str, timing_steps: int,
                        timeout: float | None, nproc: int = 1) -> dict:
    out_fd, out_path = tempfile.mkstemp(prefix="memadvise-verify-", suffix=".json")
    os.close(out_fd)
    cmd = [sys.executable, "-m", "memadvise", "profile", str(script), "--out", out_path, "--json",
           "--warmup", str(settings.get("warmup", 1)), "--steps", str(settings.get("steps", 3)),
           "--timing-steps", str(timing_steps)]
    if timeout:
        cmd += ["--timeout", str(timeout)]
    if nproc > 1:  # the same world size as the profile
        cmd += ["--nproc-per-node", str(nproc)]
    cmd += ["--", *args]
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise ScriptError(f"verification run of {script.name} failed: {last}")
        with open(out_path, encoding="utf-8") as f:
            return json.load(f)["summary"]
    finally:
        for leftover in [out_path] + [out_path.replace(".json", f".rank{r}.json") for r in range(nproc)]:
            try:
                os.unlink(leftover)
            except OSError:
                pass


def verify(plan_file: PlanFile, prepared: PreparedPatch, *, tolerance: float, timing_steps: int | None = None,
           timeout: float | None = None, progress: Callable[[str], None] | None = None, repeats: int = 1) -> dict:
    """Profile the original and the patched script (each in its own process) and compare.

    ``repeats`` > 1 alternates the two (original, patched, original, ...) and takes the
    median of the per-pair step-time ratios, so that a machine slowing down or speeding
    up between two runs does not pass for the plan's effect; memory comes from the first pair.
    ``timing_steps``: uninstrumented steps timed per run; by default as many as the
    profile timed, at least 5."""
    script = prepared.script
    settings = plan_file.doc.get("settings") or {}
    if timing_steps is None:
        timing_steps = max(5, int(settings.get("timing_steps") or 0))
    args = list(plan_file.script.get("args", []))
    cwd = plan_file.script.get("cwd") or os.getcwd()
    if not os.path.isdir(cwd):
        cwd = os.getcwd()
    nproc = int((plan_file.doc.get("distributed") or {}).get("world_size") or 1)
    stem = f".{script.stem}.memadvise-verify-{os.getpid()}"
    original = script.with_name(stem + "-orig.py")
    patched = script.with_name(stem + "-patched.py")
    try:
        original.write_text(prepared.source, encoding="utf-8")
        patched.write_text(prepared.patch.new_source, encoding="utf-8")
        pairs = []
        for k in range(max(1, repeats)):
            of = f" ({k + 1}/{repeats})" if repeats > 1 else ""
            if progress:
                progress(f"profiling the original script{of}")
            b = _profile_subprocess(original, args, settings, cwd, timing_steps, timeout, nproc)
            if progress:
                progress(f"profiling the patched script{of}")
            m = _profile_subprocess(patched, args, settings, cwd, timing_steps, timeout, nproc)
            pairs.append((b, m))
        base, meas = pairs[0]
    finally:
        for p in (original, patched):
            try:
                p.unlink()
            except OSError:
                pass
    pred = prepared.plan["predicted"]
    ratios = [m["step_time_s"] / b["step_time_s"] - 1 for b, m in pairs if b["step_time_s"] > 0]
    measured_overhead = statistics.median(ratios) if ratios else 0.0
    spread = timing_spread(ratios)

    def err(p: float, m: float) -> float | None:
        return abs(p - m) / m if m else None

    rows = {
        "peak_bytes": {"predicted": pred["peak_bytes"], "measured": meas["peak_bytes"],
                       "baseline_measured": base["peak_bytes"], "error": err(pred["peak_bytes"], meas["peak_bytes"])},
        "activation_bytes": {"predicted": pred["activation_bytes"], "measured": meas["activation_bytes"],
                             "baseline_measured": base["activation_bytes"],
                             "error": err(pred["activation_bytes"], meas["activation_bytes"])},
        "overhead": {"predicted": pred["overhead"], "measured": measured_overhead,
                     "error": abs(pred["overhead"] - measured_overhead), "measured_pairs": ratios, **spread},
    }
    peak_error = rows["peak_bytes"]["error"] or 0.0
    return {
        "plan": {"rank": prepared.plan["rank"], "strategy": prepared.plan["strategy"]},
        "rows": rows,
        "baseline_step_time_s": base["step_time_s"],
        "patched_step_time_s": meas["step_time_s"],
        "tolerance": tolerance,
        "passed": peak_error <= tolerance,
    }


def timing_spread(ratios: list[float]) -> dict:
    """How far the measured step-time change can be told from the machine's noise.

    ``resolved``: True where every pair moved the same way (at least three pairs), False
    where the pairs took both signs (the change is within this machine's run-to-run
    noise: its sign is not measured), None with fewer than three pairs."""
    if not ratios:
        return {"pairs_range": None, "resolved": None}
    lo, hi = min(ratios), max(ratios)
    resolved = None if len(ratios) < 3 else bool(lo > 0 or hi < 0)
    return {"pairs_range": [lo, hi], "resolved": resolved}
