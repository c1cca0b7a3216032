"""Multi-process training: one profile per rank, merged by rank 0 into one profile.

``memadvise profile --nproc-per-node N SCRIPT`` runs PyTorch's own elastic launcher
(``python -m torch.distributed.run``) over ``python -m memadvise profile SCRIPT``; running
``torchrun ... -m memadvise profile SCRIPT`` yourself works the same way. Each rank
writes ``profile.rank<R>.json`` beside the requested output; rank 0 waits for every rank
of the same run, then writes the merged profile once (atomically): the worst rank's
trace (the rank that would OOM first) with every rank's figures. A rank that fails
writes nothing, so nothing is merged.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from memadvise._errors import InputFileError, ScriptError
from memadvise.schema.profile import read_profile

MERGE_WAIT_S = 120.0


def rank_env() -> tuple[int, int] | None:
    """(rank, world size) when launched by torchrun with more than one process."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
    except ValueError:
        return None
    return (rank, world) if world > 1 else None


def exit_rank(code: Any) -> None:
    """Leave a torchrun rank now, skipping interpreter teardown. A process that exits
    with a gloo process group alive can abort in teardown ("terminate called without an
    active exception", SIGABRT: gloo's threads still hold work whose tensors reference
    Python objects), and torchrun then reports that signal, not the rank's finished
    profile or its one-line error, and stops the other ranks before they print theirs.
    Our session stops the script mid-run, so the script's own cleanup never runs;
    everything of ours is already on disk (profiles are written atomically)."""
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def run_id() -> str:
    return os.environ.get("TORCHELASTIC_RUN_ID") or f"{os.environ.get('MASTER_ADDR', '')}:{os.environ.get('MASTER_PORT', '')}"


def rank_path(out: Path, rank: int) -> Path:
    return out.with_name(f"{out.stem}.rank{rank}{out.suffix}")


def describe(doc: dict) -> dict:
    """Record the process group in the profile (called on every rank, before writing)."""
    info: dict[str, Any] = {"rank": 0, "world_size": 1, "backend": None, "ranks": [], "run_id": None}
    env = rank_env()
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            info.update(rank=dist.get_rank(), world_size=dist.get_world_size(), backend=str(dist.get_backend()))
    except Exception:  # a process group that is gone: fall back to the launcher's environment
        pass
    if env is not None:
        info.setdefault("rank", env[0])
        info["rank"], info["world_size"] = info["rank"] or env[0], max(info["world_size"], env[1])
        info["local_rank"] = int(os.environ.get("LOCAL_RANK", "0"))
        info["run_id"] = run_id()
    doc["distributed"] = info
    return info


def rank_summary(doc: dict, path: Path) -> dict:
    s = doc["summary"]
    return {"rank": doc["distributed"]["rank"], "peak_bytes": s["peak_bytes"], "activation_bytes": s["activation_bytes"],
            "step_time_s": s["step_time_s"], "by_category_at_peak": s["by_category_at_peak"],
            "peak_phase": s["peak_phase"], "profile": str(path),
            "collective_time_s": _collective_time(doc)}


def _collective_time(doc: dict) -> float:
    t = doc["trace"]
    names = t["strings"]
    scale = float(t.get("time_scale", 1.0))
    return sum(d for i, d in zip(t["ops"]["name"], t["ops"]["dur_us"]) if _is_collective(names[i])) * scale / 1e6


def _is_collective(name: str) -> bool:
    return bool(re.match(r"^_?(allreduce|all_reduce|allgather|all_gather|reduce_scatter|broadcast|all_to_all|alltoall|barrier|send|recv)", name))


def merge_when_ready(out: Path, world: int, my_run: str, timeout: float = MERGE_WAIT_S) -> dict:
    """Rank 0: wait for every rank's profile of this run, merge, return the merged doc."""
    deadline = time.monotonic() + timeout
    docs: dict[int, tuple[dict, Path]] = {}
    while True:
        for r in range(world):
            if r in docs:
                continue
            path = rank_path(out, r)
            try:  # written atomically: absent until complete
                doc = read_profile(path).doc
            except InputFileError:
                continue
            if (doc.get("distributed") or {}).get("run_id") == my_run:
                docs[r] = (doc, path)
        if len(docs) == world:
            break
        if time.monotonic() > deadline:
            missing = sorted(set(range(world)) - set(docs))
            raise ScriptError(f"rank {missing[0]} wrote no profile within {timeout:g} s (it failed or hangs); nothing merged")
        time.sleep(0.2)
    return merge([d for _, (d, _p) in sorted(docs.items())], [p for _, (_d, p) in sorted(docs.items())])


def merge(docs: list[dict], paths: list[Path]) -> dict:
    """The worst rank's profile, with every rank's figures in ``distributed.ranks``."""
    ranks = [rank_summary(d, p) for d, p in zip(docs, paths)]
    worst = max(range(len(docs)), key=lambda i: (docs[i]["summary"]["peak_bytes"], -i))
    merged = dict(docs[worst])
    merged["distributed"] = dict(docs[worst]["distributed"], ranks=ranks, worst_rank=ranks[worst]["rank"],
                                 merged=True)
    return merged


# ---------------------------------------------------------------------------- launcher
def launch(script: Path, args: list[str], nproc: int, *, out: Path, warmup: int, steps: int, timing_steps: int,
           timeout: float | None, extra: list[str] | None = None) -> None:
    """Run ``torch.distributed.run --nproc-per-node N -m memadvise profile ...``; on a
    failure, raise one line naming the rank, after every process of the job is gone."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "memadvise", "profile", str(script), "--out", str(out), "--warmup", str(warmup),
           "--steps", str(steps), "--timing-steps", str(timing_steps)]
    if timeout:
        cmd += ["--timeout", str(timeout)]
    cmd += list(extra or []) + ["--", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    limit = (timeout or 0) + MERGE_WAIT_S + 60 if timeout else None
    try:
        stdout, stderr = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        stdout, stderr = proc.communicate()
        raise ScriptError(f"the {nproc}-process job did not finish within {limit:g} s; every process was stopped") from None
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    sys.stderr.write(_script_output(stderr))
    if proc.returncode != 0:
        raise ScriptError(_failure_line(stderr, proc.returncode))


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _script_output(stderr: str) -> str:
    keep = [line for line in stderr.splitlines(keepends=True)
            if not line.startswith(("memadvise: error:", "[rank", "USDT", "W1", "E1", "I1"))
            and "torch.distributed" not in line and "OMP_NUM_THREADS" not in line and not line.startswith("*")]
    return "".join(keep[-20:])


def _exits(text: str) -> list[tuple[int, int]]:
    """(rank, exit code) pairs of the launcher's failure report, in order."""
    out: list[tuple[int, int]] = []
    rank = None
    for line in text.splitlines():
        m = re.match(r"\s*rank\s*:\s*(\d+)", line)
        if m:
            rank = int(m.group(1))
            continue
        m = re.match(r"\s*exitcode\s*:\s*(-?\d+)", line)
        if m and rank is not None:
            out.append((rank, int(m.group(1))))
            rank = None
    return out


def _failure_line(stderr: str, code: int) -> str:
    """One line naming the rank that failed first. A rank's own memadvise error (it
    raised, or timed out) is the cause, in the order the ranks printed them: its peers
    then fail on a broken connection, or are killed by the launcher, and a rank may still
    die of a signal after printing its line. Without one, a rank killed by a signal
    without a word; else the launcher's root cause (the first rank it saw exit)."""
    every = _exits(stderr)
    root = _exits(stderr[stderr.index("Root Cause"):]) if "Root Cause" in stderr else []
    exits = root or every
    own: dict[int, str] = {}
    for line in stderr.splitlines():
        m = re.search(r"memadvise: error: rank (\d+): (.*)", line)
        if m:
            own.setdefault(int(m.group(1)), m.group(2))
    causes = {k: v for k, v in own.items() if not re.search(r"connection|peer|closed", v, re.I)}
    if causes:
        k = next(iter(causes))  # the first printed
        return f"rank {k}: {causes[k]}"
    # killed without a word (SIGKILL, the OOM killer), its peers' errors are only the broken
    # connection; the launcher's SIGTERM to the survivors is its reaction, not a cause
    killed = [(r, c) for r, c in root + every if c < 0 and c != -signal.SIGTERM and r not in own]
    if killed or (exits and exits[0][1] < 0):
        r, c = (killed or exits)[0]
        name = signal.Signals(-c).name if -c in signal.Signals._value2member_map_ else f"signal {-c}"
        return f"rank {r} was killed ({name}); the other ranks were stopped and nothing was merged"
    if exits:
        r, c = exits[0]
        if r in own:
            return f"rank {r}: {own[r]}"
        return f"rank {r} exited with code {c}; the job was stopped and nothing was merged"
    if own:
        k = next(iter(own))
        return f"rank {k}: {own[k]}"
    return f"the distributed launcher failed (exit code {code}); no profile was written"
