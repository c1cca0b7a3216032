"""``profile_script``: the library entry point of the collection stage."""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from memadvise._errors import UsageError
from memadvise.collect.build import build_profile
from memadvise.collect.calibrate import calibrate
from memadvise.collect.nvml import NvmlSampler
from memadvise.collect.session import ProfileSession
from memadvise.schema.io import check_writable
from memadvise.schema.profile import Profile, write_profile


def profile_script(
    script: str | os.PathLike,
    args: Sequence[str] = (),
    *,
    warmup: int = 1,
    steps: int = 3,
    timing_steps: int = 3,
    timeout: float | None = None,
    out: str | os.PathLike | None = None,
    progress: Callable[[int, int], Any] | None = None,
    calibrate_overheads: bool = True,
    probe_compile: bool = False,
    vary: dict | None = None,
    allocator: Any = "auto",
    compile_plans: bool = False,
) -> Profile:
    """Run ``script`` with ``args`` for warmup + timing + recorded steps and return its profile.

    ``out``: where to write the profile (atomically); nothing is written if the run fails.
    ``allocator``: the device allocator's statistics read around each op
    (``collect.allocator``); "auto" reads CUDA's caching allocator on a GPU and nothing
    on CPU; tests pass a ``FakeAllocatorStats``.
    ``compile_plans``: also read torch.compile's partition at a ladder of activation
    memory budgets (the profile's ``compile_plans``; see ``collect.compile_plans``). It
    traces the model with torch.compile after the recorded steps, so this profile is
    unaffected; a later profile in the same process records a few more temporary bytes
    (80 B to 5 KiB measured), so profile other scripts in a fresh process.

    Example::

        profile = profile_script("train.py", ["--batch", "8"], steps=3)
        print(profile.summary["peak_bytes"])
    """
    if warmup < 0 or steps < 1 or timing_steps < 0:
        raise UsageError("--steps must be at least 1, --warmup and --timing-steps at least 0")
    if timeout is not None and timeout <= 0:
        raise UsageError("--timeout must be a positive number of seconds")
    if out is not None:
        check_writable(out)
    session = ProfileSession(
        script, list(args), warmup=warmup, steps=steps, timing_steps=timing_steps,
        timeout=timeout, progress=progress, allocator=allocator, capture_batch=compile_plans,
    )
    sampler = NvmlSampler.for_device_type("cuda" if _cuda_likely() else "cpu")
    gc.collect()  # what an earlier run left in reference cycles is not this script's memory
    with sampler:
        raw = session.run()
    try:
        heap = {}
        scratch = raw.recorder.probe.run(raw.device)
        if calibrate_overheads and raw.device.type == "cpu":
            # the step's allocations replayed on the heap as the script left it (faults
            # under each traffic change), then the probes below on a pinned heap, the
            # step's own faults priced apart
            from memadvise.collect.fault_replay import fault_replay
            from memadvise.collect.host_memory import page_fault_cost_s, pin_heap

            try:
                replayed = fault_replay(Profile(doc=build_profile(raw, scratch=scratch)))
            except Exception as exc:  # an estimate: never fail a profile over it
                replayed, heap["fault_replay_error"] = None, f"{type(exc).__name__}: {exc}"
            if replayed:
                heap["fault_replay"] = {k: round(v, 1) for k, v in replayed.items()}
            heap["heap_pinned"] = pin_heap()
            cost = page_fault_cost_s()
            if cost is not None:
                heap["page_fault_us"] = round(cost * 1e6, 4)
        calibration = calibrate(raw.device) if calibrate_overheads else {}
        calibration.update(heap)
        if calibrate_overheads:
            from memadvise.collect.probe import time_channels_last, time_signatures

            calibration["op_replay_s"] = time_signatures(raw.recorder.probe, raw.device)
            calibration["channels_last_op_ratio"] = time_channels_last(raw.recorder.probe, raw.device)
            calibration.update(_autocast_ratios(raw))
        if probe_compile:
            from memadvise.collect.compile_probe import probe_compile as _probe_compile

            calibration["compile_probe"] = _probe_compile(raw.device)
        doc = build_profile(raw, calibration=calibration, nvml=sampler.summary(raw), scratch=scratch)
        doc["notes"] = doc.get("notes", []) + estimate_notes(raw.recorder.probe, calibration)
        if compile_plans:
            from memadvise.collect.compile_plans import compile_plans as _compile_plans

            doc["compile_plans"] = _compile_plans(raw.root.module if raw.root is not None else None, raw.batch)
            raw.batch = None
            if not doc["compile_plans"]["available"]:
                doc["notes"].append(f"compile plans are unavailable: {doc['compile_plans']['reason']}")
        if calibrate_overheads and raw.optimizer is not None and doc.get("optimizer"):
            from memadvise.collect.optimizer_probe import probe_optimizer

            doc["optimizer"]["probe"] = probe_optimizer(raw.optimizer, raw.device)
        if vary:
            doc["settings"]["vary"] = dict(vary)
    finally:
        raw.recorder.release()
        raw.root = None
        raw.optimizer = None
        del raw
        gc.collect()
    from memadvise.collect import distributed

    info = distributed.describe(doc)
    path = Path(out) if out is not None else None
    if info["world_size"] > 1 and distributed.rank_env() is not None and path is not None:
        # one file per rank; rank 0 merges them into `out` once every rank has written
        mine = distributed.rank_path(path, info["rank"])
        write_profile(doc, mine)
        if info["rank"] != 0:
            return Profile(doc=doc, path=mine)
        doc = distributed.merge_when_ready(path, info["world_size"], info["run_id"])
    if path is not None:
        write_profile(doc, path)
    return Profile(doc=doc, path=path)


def _cuda_likely() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # a CUDA install that cannot answer: no GPU sampling (the session finds the device)
        return False


def estimate_notes(probe: Any, calibration: dict) -> list[str]:
    """One sentence per measurement that failed after the run (the profile's ``notes``,
    printed by ``show``): each leaves something out of the profile, which must be said."""
    notes = []
    if probe.failure:
        notes.append(f"the scratch probe failed ({probe.failure}): the scratch buffers of {len(probe.signatures)} "
                     "op signature(s) (oneDNN/cuDNN convolutions, low-precision matmuls, attention) are missing "
                     "from the peak")
    if calibration.get("error"):
        notes.append(f"the device probes failed ({calibration['error']}): recompute overheads and the traffic "
                     "model use default figures")
    if calibration.get("fault_replay_error"):
        notes.append(f"the page-fault replay failed ({calibration['fault_replay_error']}): traffic plans leave "
                     "the step's page faults unchanged")
    compile_error = (calibration.get("compile_probe") or {}).get("error")
    if compile_error:
        notes.append(f"the compile probe failed ({compile_error}): the compile plan leaves the compiled graph's "
                     "fixed cost and its random numbers out")
    return notes


def parse_vary(text: str) -> tuple[str, list[int]]:
    """``"batch=8,16"`` → ("batch", [8, 16])."""
    import re

    m = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*([0-9]+(?:\s*,\s*[0-9]+)+)\s*", text or "")
    if not m:
        raise UsageError(f"--vary {text!r} is not NAME=V1,V2[,...] with two or more positive integers (e.g. batch=8,16)")
    values = [int(v) for v in m.group(2).split(",")]
    if len(set(values)) != len(values) or min(values) < 1:
        raise UsageError(f"--vary {text!r} needs distinct positive values")
    return m.group(1), values


def profile_varied(script, args: Sequence[str], vary: str, *, env_var: str | None = None, out_dir="."
                   , **kwargs) -> list[Profile]:
    """Profile ``script`` once per value of ``vary`` ("batch=8,16"): the value replaces
    ``{batch}`` in ``args`` (or is exported as ``env_var``). Writes
    ``OUT_DIR/profile.batch-8.json`` etc. and returns the profiles."""
    name, values = parse_vary(vary)
    placeholder = "{" + name + "}"
    if env_var is None and not any(placeholder in a for a in args):
        raise UsageError(f"no argument contains {placeholder}: write e.g. `-- --batch-size {placeholder}`, or pass --vary-env VAR")
    out = []
    for v in values:
        run_args = [a.replace(placeholder, str(v)) for a in args]
        old = os.environ.get(env_var) if env_var else None
        if env_var:
            os.environ[env_var] = str(v)
        try:
            out.append(profile_script(script, run_args, out=Path(out_dir) / f"profile.{name}-{v}.json",
                                      vary={"name": name, "value": v}, **kwargs))
        finally:
            if env_var:
                if old is None:
                    os.environ.pop(env_var, None)
                else:
                    os.environ[env_var] = old
    return out


def _autocast_ratios(raw) -> dict:
    """Per-op time ratios of the step's ops replayed in the precision autocast would use
    (bfloat16; float16 on CUDA devices before Ampere)."""
    from memadvise.collect.calibrate import low_precision
    from memadvise.collect.probe import time_autocast

    dtype = low_precision(raw.device)
    try:
        ratios = time_autocast(raw.recorder.probe, raw.device, dtype)
    except Exception:  # an estimate: never fail a profile over it
        return {}
    return {"autocast_op_ratio": ratios, "autocast_dtype": str(dtype).replace("torch.", "")}
