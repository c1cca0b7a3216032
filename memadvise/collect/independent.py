"""Independent measurement of one steady-state training step: what ``verify`` reports
as "measured", and what the tests check memadvise against.

It uses only PyTorch's own instruments and imports nothing of memadvise's recorder (its
package's ``__init__`` imports only the version), so that the two can disagree:

* on CUDA, the caching allocator's ``torch.cuda.max_memory_allocated`` over the step,
  after ``reset_peak_memory_stats`` at its start (a synchronize at both ends);
* on CPU, PyTorch's profiler (torch.profiler with profile_memory=True and its private
  memory-timeline analysis).

    python -m memadvise.collect.independent [--warmup N] SCRIPT [ARGS...]

runs SCRIPT as ``__main__`` (with ``sys.argv = [SCRIPT, *ARGS]``), lets it take
``warmup`` optimizer steps, measures the next full step (from the end of step
``warmup`` to the end of step ``warmup + 1``), stops the script, and prints one
JSON object as the last line of stdout (the script's own prints go to stderr):

    device               "cpu" or "cuda" (where the optimizer's parameters live)
    method               "torch.profiler memory timeline" or "torch.cuda.max_memory_allocated"
    peak_bytes           CPU: max over the step of all live CPU bytes the profiler
                         tracked (every category, including "unknown");
                         CUDA: max_memory_allocated over the step
    allocated_at_start_bytes
                         CUDA only: memory_allocated when the step started

and on CPU only:

    by_category_at_peak  {category: bytes} at that moment; names are
                         torch.profiler._memory_profiler.Category lower-cased,
                         plus "unknown" for the uncategorized bytes
    activation_bytes     bytes of Category.ACTIVATION tensors live when the
                         first backward() of the step starts
    activation_freed_in_backward_bytes
                         the part of activation_bytes destroyed before the
                         step ends (i.e. not still held by the script)
    timeline_len         number of (time, action, tensor, bytes) events
    step_wall_s          seconds from the step's start to its end (CPU: profiler
                         overhead included, so slower than an unprofiled step)

Exit status 0 with the JSON, or 1 with a message on stderr.

Known limitations:
* One optimizer per script (every ``Optimizer.step`` call counts as a step); on CPU the
  forward/backward boundary is found only for ``Tensor.backward()``, not
  ``torch.autograd.backward()``/``grad()``.
* CPU: the profiler only sees tensors touched during the profiled step: a tensor
  allocated earlier and never used in the step is invisible.
* CPU: the timeline is bucketed to whole microseconds (``_coalesce_timeline``), so an
  allocation freed within the same microsecond can be missed by ``peak_bytes_coalesced``
  (``peak_bytes`` replays the raw timeline at nanosecond resolution).
* ``activation_bytes`` includes ACTIVATION tensors the script itself still holds,
  chiefly the loss. On CPU ``F.mse_loss`` returns a scalar whose storage keeps the
  unreduced size (batch * out * 4 bytes), so for sample_models/mlp.py
  activation_bytes = closed form + batch * out * 4, and
  activation_freed_in_backward_bytes = closed form exactly.
* "unknown" bytes are allocations the profiler could not tie to a tensor
  (no tensor id), e.g. oneDNN convolution scratch buffers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import runpy
import subprocess
import sys
import time
import traceback

MODULE = "memadvise.collect.independent"  # run as `python -m`: the subprocess's cwd stays first on sys.path


def measure_script(
    script: str, args: list[str] = (), *, warmup: int = 2, timeout: float = 300
) -> dict:
    """Measure ``script`` in a subprocess and return its JSON.

    Raises RuntimeError (with the subprocess's stderr tail) if it fails, and
    subprocess.TimeoutExpired after ``timeout`` seconds.
    """
    cmd = [sys.executable, "-m", MODULE, "--warmup", str(warmup),
           script, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"the independent measurement failed (exit {proc.returncode}) on {script} {' '.join(args)}:\n"
            + proc.stderr[-4000:]
        )
    return json.loads(lines[-1])


class _StopScript(BaseException):
    """Raised from the optimizer hook once the profiled step is done.

    A BaseException so that ``except Exception`` in the script cannot swallow it.
    """


class _Harness:
    def __init__(self, warmup: int):
        import torch

        self.torch = torch
        self.warmup = warmup
        self.steps_done = 0
        self.prof = None
        self.in_profiled_step = False
        self.backward_marked = False
        self.t_start = 0.0
        self.wall_s = 0.0
        self.device = None
        self.cuda_result = None

    def _after_step_cuda(self):
        """The caching allocator's peak over the step: host-side counters, read after a
        synchronize so that every kernel of the step has been launched and finished."""
        cuda = self.torch.cuda
        if self.steps_done == self.warmup:
            cuda.synchronize(self.device)
            self.allocated_at_start = cuda.memory_allocated(self.device)
            cuda.reset_peak_memory_stats(self.device)
            self.t_start = time.perf_counter()
            self.in_profiled_step = True
        elif self.steps_done == self.warmup + 1:
            cuda.synchronize(self.device)
            self.cuda_result = {
                "rank": int(os.environ.get("RANK", "0")),
                "device": "cuda",
                "method": "torch.cuda.max_memory_allocated",
                "peak_bytes": int(cuda.max_memory_allocated(self.device)),
                "allocated_at_start_bytes": int(self.allocated_at_start),
                "max_reserved_bytes": int(cuda.max_memory_reserved(self.device)),
                "step_wall_s": round(time.perf_counter() - self.t_start, 6),
            }
            self.in_profiled_step = False
            raise _StopScript

    def install(self):
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self._hook_handle = register_optimizer_step_post_hook(self._after_step)
        orig_backward = self._orig_backward = self.torch.Tensor.backward
        harness = self

        def backward(tensor, *args, **kwargs):
            if harness.in_profiled_step and not harness.backward_marked:
                harness.backward_marked = True
                with harness.torch.profiler.record_function("independent::backward"):
                    return orig_backward(tensor, *args, **kwargs)
            return orig_backward(tensor, *args, **kwargs)

        self.torch.Tensor.backward = backward
        self.forward_marked = False

        def mark_forward(module, args):
            # the first module call of the profiled step: a zero-length marker event
            if harness.in_profiled_step and not harness.forward_marked:
                harness.forward_marked = True
                with harness.torch.profiler.record_function("independent::forward"):
                    pass

        self._fwd_handle = self.torch.nn.modules.module.register_module_forward_pre_hook(mark_forward)

    def uninstall(self):
        self._hook_handle.remove()
        self._fwd_handle.remove()
        self.torch.Tensor.backward = self._orig_backward

    def _after_step(self, optimizer, args, kwargs):
        self.steps_done += 1
        if self.device is None:
            self.device = next((p.device for g in optimizer.param_groups for p in g["params"]),
                               self.torch.device("cpu"))
        if self.device.type == "cuda":
            self._after_step_cuda()
            return
        if self.steps_done == self.warmup:
            from torch.profiler import ProfilerActivity, profile

            self.prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True,
                                record_shapes=True, with_stack=True)
            self.t_start = time.perf_counter()
            self.prof.start()
            self.in_profiled_step = True
        elif self.steps_done == self.warmup + 1:
            self.prof.stop()
            self.wall_s = time.perf_counter() - self.t_start
            self.in_profiled_step = False
            raise _StopScript


def _find_event_start_ns(prof, name: str) -> int | None:
    """Start time (ns) of the first op-tree event called ``name``.

    The op tree (``experimental_event_tree``) is what the memory timeline is
    built from, so its ``start_time_ns`` is on the same clock as the timeline.
    ``prof.events()`` is not: those times are microseconds since trace start.
    """
    roots = prof.profiler.kineto_results.experimental_event_tree()
    stack, found = list(roots), []
    while stack:
        e = stack.pop()
        if e.name == name:
            found.append(e.start_time_ns)
        stack.extend(e.children)
    return min(found) if found else None


def _raw_timeline(prof):
    """The memory timeline without categories, as PyTorch's MemoryProfile.timeline builds
    it but without its data-flow graph: tensors seen in the op tree and never allocated
    while profiling are pre-existing; allocations and frees come from the allocator's
    events. Used when the data-flow graph refuses a step ("version mismatch": FSDP2
    mutates tensors from gloo's background threads)."""
    from torch._C._profiler import _EventType
    from torch.profiler import _memory_profiler as mp_mod

    op_tree = mp_mod.OpTree(prof.profiler.kineto_results)
    sizes = mp_mod.SizeMap(op_tree)._values
    out, allocated, live_unknown = [], set(), {}
    for event in op_tree.dfs():
        if event.typed[0] != _EventType.Allocation:
            continue
        fields = event.typed[1]
        size, t = fields.alloc_size, event.start_time_ns
        tkey = mp_mod.TensorKey.from_allocation(fields)
        key = tkey if tkey is not None else mp_mod.Key(fields.device)
        if size > 0:
            if tkey is not None:
                allocated.add(tkey)
            elif (fields.ptr, key.device) in live_unknown:
                # allocated again where a live block is: its free was not seen (freed on
                # another thread). PyTorch's timeline counts no new bytes for it; nor do we
                out.append((t, mp_mod.Action.INCREMENT_VERSION, (key, 0), size))
                continue
            else:
                live_unknown[(fields.ptr, key.device)] = True
            out.append((t, mp_mod.Action.CREATE, (key, 0), size))
        else:
            out.append((t, mp_mod.Action.DESTROY, (key, 0), -size))
            known = tkey in allocated if tkey is not None else live_unknown.pop((fields.ptr, key.device), False)
            if not known:
                out.append((-1, mp_mod.Action.PREEXISTING, (key, 0), -size))
                if tkey is not None:
                    allocated.add(tkey)
    out += [(-1, mp_mod.Action.PREEXISTING, (k, 0), n) for k, n in sizes.items() if k not in allocated]
    out.sort(key=lambda x: (x[0], x[1].value))
    return out


class _Uncategorised:
    """Stands in for MemoryProfileTimeline when only category-free figures can be had."""

    def __init__(self, timeline) -> None:
        self.timeline = timeline
        self.categories = {}

    def _coalesce_timeline(self, device_str):
        times, sizes, total = [], [], 0
        for t, action, _key, nbytes in self.timeline:
            if action.name in ("PREEXISTING", "CREATE"):
                total += nbytes
            elif action.name == "DESTROY":
                total -= nbytes
            else:
                continue
            us = max(t, 0) // 1000
            if times and times[-1] == us:
                sizes[-1] = [0, total]
            else:
                times.append(us)
                sizes.append([0, total])
        return times, sizes


def _peak(timeline, device) -> int:
    """Highest live total on ``device`` replaying a memory timeline (ns resolution)."""
    from torch.profiler import _memory_profiler as mp_mod

    live_total = peak = 0
    for _t, action, (key, _version), nbytes in timeline:
        if key.device != device:
            continue
        if action in (mp_mod.Action.PREEXISTING, mp_mod.Action.CREATE):
            live_total += nbytes
        elif action == mp_mod.Action.DESTROY:
            live_total -= nbytes
        peak = max(peak, live_total)
    return peak


def _total_before(timeline, device, t_ns: int) -> int:
    """Live total on ``device`` just before ``t_ns``, replaying a memory timeline (ns)."""
    from torch.profiler import _memory_profiler as mp_mod

    total = 0
    for t, action, (key, _version), nbytes in timeline:
        if key.device != device or (t != -1 and t >= t_ns):
            continue
        if action in (mp_mod.Action.PREEXISTING, mp_mod.Action.CREATE):
            total += nbytes
        elif action == mp_mod.Action.DESTROY:
            total -= nbytes
    return total


def _analyze(prof, wall_s: float) -> dict:
    import torch
    from torch.profiler import _memory_profiler as mp_mod

    try:
        tl = mp_mod.MemoryProfileTimeline(prof._memory_profile())
        categorised = True
    except AssertionError as exc:
        if "version mismatch" not in str(exc):
            raise
        tl, categorised = _Uncategorised(_raw_timeline(prof)), False
    device = torch.device("cpu")
    names = (["unknown" if c is None else c.name.lower() for c in mp_mod._CATEGORY_TO_INDEX] if categorised
             else ["uncategorised"])

    # Totals over time. sizes[i][0] is an unused slot; category k is at k + 1.
    times, sizes = tl._coalesce_timeline("cpu")
    if not times:
        raise RuntimeError("the profiler recorded no CPU memory events")
    totals = [sum(s) for s in sizes]
    i_peak = max(range(len(totals)), key=totals.__getitem__)
    by_category = {n: sizes[i_peak][k + 1] for k, n in enumerate(names)}
    # The coalesced timeline is in whole microseconds and applies, within one, every
    # allocation before any free: two events in the same microsecond (the optimizer's
    # temporaries) can show a transient that never existed. Replay the raw timeline at
    # nanosecond resolution instead.
    peak_ns = _peak(tl.timeline, device)

    # Activations live at the forward/backward boundary: replay the raw timeline
    # (ns, same clock as the op tree) up to the boundary.
    t_bwd = _find_event_start_ns(prof, "independent::backward")
    if t_bwd is None:
        raise RuntimeError("no backward() call seen in the profiled step "
                           "(only Tensor.backward is instrumented)")
    stamps = [t for t, *_ in tl.timeline if t != -1]
    if not stamps[0] <= t_bwd <= stamps[-1]:
        raise RuntimeError("independent::backward lies outside the memory timeline: "
                           "the two clocks disagree")
    t_fwd = _find_event_start_ns(prof, "independent::forward")
    live: dict = {}  # TensorKey -> (version, bytes)
    created_at: dict = {}
    destroyed_after: set = set()
    for t, action, (key, version), nbytes in tl.timeline:
        if key.device != device or not isinstance(key, mp_mod.TensorKey):
            continue
        if t == -1 or t < t_bwd:
            if action in (mp_mod.Action.PREEXISTING, mp_mod.Action.CREATE):
                live[key] = (version, nbytes)
                if action == mp_mod.Action.CREATE:
                    created_at[key] = t
            elif action == mp_mod.Action.INCREMENT_VERSION:
                live[key] = (version + 1, nbytes)
            elif action == mp_mod.Action.DESTROY:
                live.pop(key, None)
        elif action == mp_mod.Action.DESTROY:
            destroyed_after.add(key)
    act = ({k: b for k, (v, b) in live.items() if tl.categories.get(k, v) == mp_mod.Category.ACTIVATION}
           if categorised else {})

    import bisect

    i_bwd = max(0, bisect.bisect_right(times, t_bwd // 1000) - 1)
    # category-free: made during the forward (after its first module call), live when
    # backward starts, destroyed during the step — what the forward left for backward
    forward_made = sum(b for k, (v, b) in live.items()
                       if k in destroyed_after and t_fwd is not None and created_at.get(k, -1) >= t_fwd)
    extra = {}
    if categorised and os.environ.get("MEMADVISE_ORACLE_CROSSCHECK"):
        # the category-free fallback on the same profile, to check it against PyTorch's
        # timeline where both work (tests/integration/test_oracle_fallback.py, FSDP2 runs)
        extra["fallback_peak_bytes"] = _peak(_raw_timeline(prof), device)
    return {
        **extra,
        "rank": int(os.environ.get("RANK", "0")),
        "device": "cpu",
        "method": "torch.profiler memory timeline",
        "activation_forward_made_bytes": forward_made,
        # category-free and blind to who frees what: the bytes the forward added and still
        # holds when backward starts (saved values and outputs; a compiled graph's too)
        "held_for_backward_bytes": (_total_before(tl.timeline, device, t_bwd)
                                    - _total_before(tl.timeline, device, t_fwd)) if t_fwd is not None else None,
        "total_at_backward_bytes": totals[i_bwd],
        "peak_bytes": peak_ns,
        "peak_bytes_coalesced": totals[i_peak],
        "by_category_at_peak": by_category,
        "activation_bytes": sum(act.values()),
        "activation_freed_in_backward_bytes": sum(
            b for k, b in act.items() if k in destroyed_after),
        "timeline_len": len(tl.timeline),
        "categorised": categorised,
        "step_wall_s": round(wall_s, 6),
    }


def _run_one(script: str, args: list[str], warmup: int) -> dict:
    """Profile one steady-state step of ``script``; {"error": ...} on failure."""
    import gc

    script = os.path.abspath(script)
    if not os.path.isfile(script):
        return {"error": f"no such script: {script}"}
    saved_argv, saved_path0 = sys.argv[:], sys.path[0]
    sys.argv = [script, *args]
    sys.path[0] = os.path.dirname(script)  # as `python SCRIPT` would have it
    harness = _Harness(warmup)
    harness.install()
    error = None
    try:
        with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the JSON
            runpy.run_path(script, run_name="__main__")
    except _StopScript:
        pass
    except SystemExit as e:
        if e.code not in (None, 0):
            error = f"{script} exited with {e.code}"
    except BaseException:
        traceback.print_exc()
        error = f"{script} raised"
    finally:
        if harness.in_profiled_step and harness.prof is not None:  # never leave the profiler
            harness.prof.stop()       # running at exit: the interpreter segfaults on shutdown
        harness.uninstall()
        sys.argv, sys.path[0] = saved_argv, saved_path0
    if error:
        return {"error": error}
    if harness.cuda_result is not None:
        return harness.cuda_result
    if harness.prof is None or harness.in_profiled_step:
        return {"error": f"{script} finished after {harness.steps_done} optimizer step(s); need {warmup + 1}"}
    try:
        result = _analyze(harness.prof, harness.wall_s)
    except Exception:
        return {"error": "analysing the profile failed: " + traceback.format_exc()[-1500:]}
    harness.prof = None
    gc.collect()
    return result


def _json_objects(text: str) -> list[dict]:
    """Every JSON object that starts a line of ``text``, even where two ranks' lines ran together."""
    decoder, out = json.JSONDecoder(), []
    for line in text.splitlines():
        pos = 0
        while line.startswith("{", pos):
            try:
                obj, end = decoder.raw_decode(line, pos)
            except json.JSONDecodeError:
                break
            out.append(obj)
            pos = end
    return out


def measure_distributed(script: str, args: list[str] = (), *, nproc: int = 2, warmup: int = 2,
                        timeout: float = 600) -> list[dict]:
    """Each rank's measurement, the script launched by torch.distributed.run."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", MODULE, "--warmup", str(warmup), script, *args]
    for _attempt in range(3):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        results = _json_objects(proc.stdout)
        if proc.returncode == 0 and len(results) == nproc:
            return sorted(results, key=lambda r: r["rank"])
        # PyTorch's memory profiler sometimes trips on its own data-flow graph
        # ("version mismatch") when FSDP2 mutates tensors from a background
        # thread; that is the measurement's flake, not the script's, so measure again.
        if "analysing the profile failed" not in proc.stderr:
            break
    raise RuntimeError(f"the distributed independent measurement failed (exit {proc.returncode}):\n" + proc.stderr[-4000:])


def measure_scripts(jobs: list, *, warmup: int = 2, timeout: float = 900) -> list[dict]:
    """Measure several ``(script, args)`` one after the other in ONE subprocess (one
    torch import); each result is a dict as from ``measure_script`` or {"error": ...}."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([[str(s), [str(a) for a in args]] for s, args in jobs], f)
        name = f.name
    try:
        cmd = [sys.executable, "-m", MODULE, "--warmup", str(warmup), "--batch", name]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    finally:
        os.unlink(name)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the independent measurement batch failed (exit {proc.returncode}):\n" + proc.stderr[-4000:])
    results = json.loads(lines[-1])
    # PyTorch's profiler occasionally garbles an event name after many sessions in one
    # process (a UnicodeDecodeError while analysing): measure that one alone, afresh
    for i, r in enumerate(results):
        if "error" in r and "analysing" in r["error"]:
            s, a = jobs[i]
            results[i] = measure_script(str(s), [str(x) for x in a], warmup=warmup, timeout=timeout)
    return results


def main() -> int:
    p = argparse.ArgumentParser(description="Profile one steady-state training step.")
    p.add_argument("--warmup", type=int, default=2,
                   help="optimizer steps to run before the profiled one (>= 1)")
    p.add_argument("--batch", help="a JSON file listing [script, args] pairs to measure in turn")
    p.add_argument("script", nargs="?")
    p.add_argument("args", nargs=argparse.REMAINDER)
    ns = p.parse_args()
    if ns.warmup < 1:
        print("memadvise.collect.independent: --warmup must be >= 1", file=sys.stderr)
        return 1
    if ns.batch:
        with open(ns.batch) as f:
            jobs = json.load(f)
        print(json.dumps([_run_one(script, args, ns.warmup) for script, args in jobs]))
        return 0
    if not ns.script:
        print("memadvise.collect.independent: give a script or --batch", file=sys.stderr)
        return 1
    result = _run_one(ns.script, ns.args, ns.warmup)
    if "error" in result:
        print(f"memadvise.collect.independent: {result['error']}", file=sys.stderr)
        return 1
    # one write of the whole line: the ranks share the launcher's stdout, and print()'s
    # separate write of the newline let another rank's line land in between
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), (json.dumps(result) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
