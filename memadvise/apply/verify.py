"""``apply --verify``: measure the patched script against the unpatched one, in separate
processes, and compare with the plan's predictions.

The peak reported as "measured" comes from an instrument that is not memadvise's
recorder (``memadvise.collect.independent``, run as its own process): the CUDA caching
allocator's ``max_memory_allocated`` over one steady-state step, or PyTorch's profiler
memory timeline on CPU. memadvise's own reading of the same runs is kept beside it."""

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
from memadvise.schema.profile import Settings, read_profile


def _profile_subprocess(script: Path, args: list[str], settings: Settings, cwd: str, timing_steps: int,
                        timeout: float | None, nproc: int = 1, env: dict | None = None) -> dict:
    out_fd, out_path = tempfile.mkstemp(prefix="memadvise-verify-", suffix=".json")
    os.close(out_fd)
    cmd = [sys.executable, "-m", "memadvise", "profile", str(script), "--out", out_path, "--json",
           "--warmup", str(settings.warmup or 1), "--steps", str(settings.steps or 3),
           "--timing-steps", str(timing_steps)]
    if timeout:
        cmd += ["--timeout", str(timeout)]
    if nproc > 1:  # the same world size as the profile
        cmd += ["--nproc-per-node", str(nproc)]
    cmd += ["--", *args]
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                              env=dict(os.environ, **env) if env else None)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise ScriptError(f"verification run of {script.name} failed: {last}")
        summary = read_profile(out_path).records.summary  # validated, as any profile is read
        return {"step_time_s": summary.step_time_s, "peak_bytes": summary.peak_bytes,
                "activation_bytes": summary.activation_bytes}
    finally:
        for leftover in [out_path] + [out_path.replace(".json", f".rank{r}.json") for r in range(nproc)]:
            try:
                os.unlink(leftover)
            except OSError:
                pass


INDEPENDENT_MODULE = "memadvise.collect.independent"  # run, never imported: apply/ does not import collect/


def _independent_subprocess(script: Path, args: list[str], cwd: str, warmup: int, timeout: float | None,
                            nproc: int = 1) -> dict:
    """The peak of one steady-state step of ``script`` (the end of optimizer step
    ``warmup`` to the end of the next), measured in its own process(es) without
    memadvise's recorder; the highest rank's where several run. Raises ScriptError."""
    tail = ["-m", INDEPENDENT_MODULE, "--warmup", str(warmup), str(script), *args]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *tail]
    else:
        cmd = [sys.executable, *tail]
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ScriptError(f"the independent measurement of {script.name} timed out after {timeout:g} s") from None
    results = []
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            try:
                results.append(json.loads(line))
            except json.JSONDecodeError:  # two ranks' lines run together: that rank is missed
                pass
    if proc.returncode != 0 or len(results) < nproc:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ScriptError(f"the independent measurement of {script.name} failed: {last}")
    return max(results, key=lambda r: r["peak_bytes"])


# Words for what the plan's actions do to a unit, for "0 of 5 units were checkpointed".
_DONE = {"checkpoint": "checkpointed", "selective": "selectively recomputed", "offload": "offloaded"}


def applied_units(expected: list[str], actions: list[str], wrapped: set[str]) -> dict | None:
    """Which of the plan's units the patched run wrapped (``MEMADVISE_APPLIED_OUT``), and
    in words what that means; None for a plan without units (traffic changes only)."""
    if not expected:
        return None
    missing = [u for u in expected if u not in wrapped]
    done = len(expected) - len(missing)
    verb = _DONE.get(actions[0], "wrapped") if len(set(actions)) == 1 else "wrapped"
    said = f"{done} of {len(expected)} units were {verb}"
    if done == 0:
        said += ": the inserted code did not run (it sits on a path the script did not take)"
    elif missing:
        said += f": {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} were not"
    return {"expected": len(expected), "wrapped": done, "missing": missing, "took_effect": not missing, "said": said}


def verify(plan_file: PlanFile, prepared: PreparedPatch, *, tolerance: float, timing_steps: int | None = None,
           timeout: float | None = None, progress: Callable[[str], None] | None = None, repeats: int = 1) -> dict:
    """Profile the original and the patched script (each in its own process) and compare.

    ``repeats`` > 1: a first run of the original is discarded (cold file caches, a CPU
    clocking up), then ``repeats`` pairs run, original first in odd pairs and patched
    first in even ones, so that a machine slowing down or speeding up between two runs
    does not pass for the plan's effect. The overhead is the median of the per-pair
    step-time ratios, resolved only where the pairs' spread is smaller than it; memory
    comes from the first pair. The patched run writes the units it wrapped to the file
    named by ``MEMADVISE_APPLIED_OUT``: a plan whose code did not run is said so, not
    reported as a prediction that missed.
    ``timing_steps``: uninstrumented steps timed per run; by default as many as the
    profile timed, at least 5."""
    script = prepared.script
    settings = plan_file.settings
    if timing_steps is None:
        timing_steps = max(5, settings.timing_steps)
    args = list(plan_file.script.get("args", []))
    # a relative script path was relative to the directory profiled in: this one, or its copy
    relative = not os.path.isabs(str(plan_file.script.get("path") or "/"))
    cwd = os.getcwd() if relative else (plan_file.script.get("cwd") or os.getcwd())
    if not os.path.isdir(cwd):
        cwd = os.getcwd()
    nproc = plan_file.world_size
    stem = f".{script.stem}.memadvise-verify-{os.getpid()}"
    original = script.with_name(stem + "-orig.py")
    patched = script.with_name(stem + "-patched.py")
    fd, applied_path = tempfile.mkstemp(prefix="memadvise-applied-", suffix=".txt")
    os.close(fd)
    repeats = max(1, repeats)
    try:
        original.write_text(prepared.source, encoding="utf-8")
        patched.write_text(prepared.patch.new_source, encoding="utf-8")
        if repeats > 1:
            if progress:
                progress("a warm-up run of the original script (discarded)")
            _profile_subprocess(original, args, settings, cwd, timing_steps, timeout, nproc)
        pairs = []
        for k in range(repeats):
            of = f" ({k + 1}/{repeats})" if repeats > 1 else ""
            order = ("original", "patched") if k % 2 == 0 else ("patched", "original")
            got = {}
            for which in order:
                if progress:
                    progress(f"profiling the {which} script{of}")
                path = original if which == "original" else patched
                env = {"MEMADVISE_APPLIED_OUT": applied_path} if which == "patched" and k == 0 else None
                got[which] = (_profile_subprocess(path, args, settings, cwd, timing_steps, timeout, nproc, env=env)
                              if env else _profile_subprocess(path, args, settings, cwd, timing_steps, timeout, nproc))
            pairs.append((got["original"], got["patched"]))
        base, meas = pairs[0]
        warmup = max(2, settings.warmup or 1)  # a steady-state step: optimizer state exists
        independent: dict = {}
        try:
            if progress:
                progress("measuring both peaks without memadvise (separate processes)")
            independent["original"] = _independent_subprocess(original, args, cwd, warmup, timeout, nproc)
            independent["patched"] = _independent_subprocess(patched, args, cwd, warmup, timeout, nproc)
        except ScriptError as exc:
            independent = {"error": str(exc)}
        with open(applied_path, encoding="utf-8") as f:
            wrapped = {line.rstrip("\n") for line in f}
    finally:
        for p in (original, patched, Path(applied_path)):
            try:
                p.unlink()
            except OSError:
                pass
    pred = prepared.plan.predicted
    ratios = [m["step_time_s"] / b["step_time_s"] - 1 for b, m in pairs if b["step_time_s"] > 0]
    measured_overhead = statistics.median(ratios) if ratios else 0.0
    spread = timing_spread(ratios)
    actions = prepared.plan.actions
    expected = list(prepared.plan.units) or [a.unit for a in actions]
    applied = applied_units(expected, [a.action for a in actions], wrapped)

    def err(p: float, m: float) -> float | None:
        return abs(p - m) / m if m else None

    peak_row = {"predicted": pred.peak_bytes, "memadvise": meas["peak_bytes"],
                "memadvise_baseline": base["peak_bytes"]}
    if "error" in independent:  # said in words by the report; memadvise's reading stands in
        peak_row.update(measured=meas["peak_bytes"], baseline_measured=base["peak_bytes"], instrument="memadvise",
                        independent_error=independent["error"])
    else:
        peak_row.update(measured=independent["patched"]["peak_bytes"],
                        baseline_measured=independent["original"]["peak_bytes"],
                        instrument=independent["patched"].get("method"))
    peak_row["error"] = err(pred.peak_bytes, peak_row["measured"])
    rows = {
        "peak_bytes": peak_row,
        "activation_bytes": {"predicted": pred.activation_bytes, "measured": meas["activation_bytes"],
                             "baseline_measured": base["activation_bytes"],
                             "error": err(pred.activation_bytes, meas["activation_bytes"])},
        "overhead": {"predicted": pred.overhead or 0.0, "measured": measured_overhead,
                     "error": abs((pred.overhead or 0.0) - measured_overhead), "measured_pairs": ratios, **spread},
    }
    if prepared.plan.compile is not None:  # the recorder's module hooks split dynamo's graph: it measures eager
        rows["activation_bytes"].update(
            error=None, unmeasured="not measured: memadvise's recorder cannot see inside torch.compile's graphs "
                                   "(the peak above is measured independently)")
    peak_error = rows["peak_bytes"]["error"] or 0.0
    took_effect = applied is None or applied["took_effect"]
    return {
        "plan": {"rank": prepared.plan.rank, "strategy": prepared.plan.strategy},
        "rows": rows,
        "applied": applied,
        "baseline_step_time_s": base["step_time_s"],
        "patched_step_time_s": meas["step_time_s"],
        "tolerance": tolerance,
        "passed": took_effect and peak_error <= tolerance,
    }


def timing_spread(ratios: list[float]) -> dict:
    """Whether the measured step-time change can be told from the machine's noise.

    ``noise``: half the range of the per-pair changes (the pairs lie within ±noise of
    their middle). ``resolved``: True where the whole range (2 × noise) is smaller than
    the change (the median pair), False where it is not (the change, its sign included,
    is not measured), None with fewer than three pairs (no noise to compare with).
    ``verdict`` says it in words.

    >>> timing_spread([0.05, 0.40, 0.20])["resolved"]
    False
    """
    if not ratios:
        return {"pairs_range": None, "noise": None, "resolved": None,
                "verdict": "not resolved: no step time was measured"}
    lo, hi = min(ratios), max(ratios)
    noise = (hi - lo) / 2
    effect = statistics.median(ratios)
    if len(ratios) < 3:
        n = len(ratios)
        return {"pairs_range": [lo, hi], "noise": noise if n > 1 else None, "resolved": None,
                "verdict": f"not resolved: {'one run' if n == 1 else f'{n} runs'} each, too few to tell a change "
                           "from this machine's run-to-run noise; --verify-repeats 5 alternates five pairs"}
    resolved = hi - lo < abs(effect)
    if resolved:
        verdict = (f"resolved: {effect * 100:+.1f}%, larger than the run-to-run noise (±{noise * 100:.1f}%, "
                   f"pairs {lo * 100:+.1f}% to {hi * 100:+.1f}%)")
    else:
        verdict = (f"not resolved: the machine's run-to-run noise (±{noise * 100:.1f}%, pairs {lo * 100:+.1f}% to "
                   f"{hi * 100:+.1f}%) exceeds the effect ({effect * 100:+.1f}%)")
    return {"pairs_range": [lo, hi], "noise": noise, "resolved": resolved, "verdict": verdict}
