"""Turn a finished recording into a profile document (see ``memadvise.schema.profile``).

This is where raw columns become the words of docs/design.md: categories of every storage,
per-step peaks and activation memory, per-unit figures, and the trace of the
representative step that ``suggest`` simulates.
"""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from memadvise._version import __version__
from memadvise.schema.timeline import FOREVER, live_by_category, live_bytes
from memadvise.collect.allocator import MAX_BLOCK_SLACK_BYTES
from memadvise.collect.recorder import PHASE_BACKWARD, PHASE_FORWARD, Recorder
from memadvise.collect.session import RawRun
from memadvise.schema.categories import N_CATEGORIES, Category
from memadvise.schema.profile import (FORMAT, SCHEMA_VERSION, Device, DistributedInfo, Environment, ModelInfo,
                                      OptimizerInfo, Script, Settings, StepRecord, Summary)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def environment(device: torch.device) -> dict:
    cuda_version = cuda_capability = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        name, total_memory = props.name, int(props.total_memory)
        cuda_version = torch.version.cuda
        cuda_capability = tuple(torch.cuda.get_device_capability(device))
    else:
        name = platform.processor() or platform.machine() or "cpu"
        try:
            total_memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total_memory = None
    return Environment(
        torch=torch.__version__.split("+")[0],
        torch_build=torch.__version__,
        python=platform.python_version(),
        platform=platform.platform(),
        hostname=socket.gethostname(),
        cpu_count=os.cpu_count(),
        device=Device(type=device.type, index=device.index, name=name, total_memory_bytes=total_memory),
        cuda_version=cuda_version,
        cuda_capability=cuda_capability,
    ).to_json()


def _fqn_map(root: torch.nn.Module | None) -> dict[int, str]:
    names: dict[int, str] = {}
    if root is None:
        return names
    for name, module in root.named_modules(remove_duplicate=False):
        names.setdefault(id(module), name)
    return names


class _Arrays:
    """The recorder's columns as numpy arrays."""

    def __init__(self, rec: Recorder) -> None:
        self.op_clock = np.asarray(rec.op_clock, dtype=np.int64)
        self.op_phase = np.asarray(rec.op_phase, dtype=np.int8)
        self.op_call = np.asarray(rec.op_call, dtype=np.int64)
        self.op_node = np.asarray(rec.op_node, dtype=np.int64)
        self.op_dur = np.asarray(rec.op_dur_ns, dtype=np.float64)
        self.st_bytes = np.asarray(rec.st_bytes, dtype=np.int64)
        self.st_device = np.asarray(rec.st_device, dtype=np.int64)
        self.st_alloc = np.asarray(rec.st_alloc_clock, dtype=np.int64)
        self.st_free = np.asarray(rec.st_free_clock, dtype=np.int64)
        self.st_free_n = np.where(self.st_free < 0, FOREVER, self.st_free)
        self.st_alloc_op = np.asarray(rec.st_alloc_op, dtype=np.int64)
        self.sv_storage = np.asarray(rec.sv_storage, dtype=np.int64)
        self.sv_pack = np.asarray(rec.sv_pack_clock, dtype=np.int64)
        self.sv_phase = np.asarray(rec.sv_phase, dtype=np.int8)
        self.op_scratch = np.zeros(len(rec.op_name), dtype=np.int64)
        self.op_untracked = np.zeros(len(rec.op_name), dtype=np.int64)
        self.allocator = False  # per-op allocator readings applied (set_allocator)

    def set_allocator(self, rec: Recorder, on_dev: np.ndarray) -> None:
        """The device allocator's readings around each op (collect/allocator.py) become
        the truth: storages count as the blocks the allocator gave them, each op's peak
        above what it left allocated is its scratch, and what is allocated after the op
        but held by no live tensor is untracked (workspaces)."""
        n = len(rec.op_name)
        if rec.allocator is None or len(rec.op_alloc_after) != n or n == 0:
            return
        block = np.vectorize(rec.allocator.block_bytes, otypes=[np.int64])
        if on_dev.any():
            self.st_bytes = self.st_bytes.copy()
            self.st_bytes[on_dev] = block(self.st_bytes[on_dev])
        if len(rec.op_alloc_before) == n:
            self._block_slack(np.asarray(rec.op_alloc_before, dtype=np.int64),
                              np.asarray(rec.op_alloc_after, dtype=np.int64), on_dev)
        after = np.asarray(rec.op_alloc_after, dtype=np.int64)
        peak = np.asarray(rec.op_alloc_peak, dtype=np.int64)
        tensors = live_bytes(self.op_clock, self.st_alloc[on_dev], self.st_free_n[on_dev], self.st_bytes[on_dev])
        self.op_scratch = np.maximum(peak - after, 0)
        self.op_untracked = np.maximum(after - tensors, 0)
        self.allocator = True

    def _block_slack(self, before: np.ndarray, after: np.ndarray, on_dev: np.ndarray) -> None:
        """Where an op's allocation grew by more than its new storages' rounded bytes, by
        at most MAX_BLOCK_SLACK_BYTES, the allocator handed out a cached block whole: the
        excess belongs to the op's largest new storage (dies with it, in plans too). A
        larger excess is a workspace the op kept: untracked."""
        made = np.nonzero(on_dev & (self.st_alloc_op >= 0))[0]
        if not len(made):
            return
        ops = self.st_alloc_op[made]
        per_op = np.zeros(len(before), dtype=np.int64)
        np.add.at(per_op, ops, self.st_bytes[made])
        excess = (after - before) - per_op
        fits = (per_op > 0) & (excess > 0) & (excess <= MAX_BLOCK_SLACK_BYTES)
        if not fits.any():
            return
        # the largest new storage of each op (ties: the first)
        order = np.lexsort((-made, self.st_bytes[made], ops))
        last_of_op = np.r_[ops[order][1:] != ops[order][:-1], True]
        largest = made[order][last_of_op]
        largest_op = self.st_alloc_op[largest]
        take = fits[largest_op]
        self.st_bytes[largest[take]] += excess[largest_op[take]]

    def set_scratch(self, scratch: dict[int, int], n_ops: int) -> None:
        self.op_scratch = np.zeros(n_ops, dtype=np.int64)
        for i, nbytes in scratch.items():
            if 0 <= i < n_ops:
                self.op_scratch[i] = nbytes


def _categorize(rec: Recorder, arr: _Arrays, boundaries: list[tuple[int, int, int]], steps: list) -> np.ndarray:
    """Category of every storage (precedence: parameter > gradient > optimizer > input > activation)."""
    n = len(rec.st_bytes)
    cat = np.full(n, int(Category.TEMPORARY), dtype=np.int8)

    # activation: saved by autograd in a forward, or made inside a module in a forward,
    # live when its backward starts and freed during that backward (what checkpoint
    # machinery holds without saved-tensor hooks: selective-checkpoint caches)
    saved_fwd = arr.sv_storage[(arr.sv_phase == PHASE_FORWARD) & (arr.sv_storage >= 0)]
    cat[np.unique(saved_fwd)] = int(Category.ACTIVATION)
    if n:
        alloc_phase = np.full(n, -1, dtype=np.int8)
        has_op = arr.st_alloc_op >= 0
        alloc_phase[has_op] = arr.op_phase[arr.st_alloc_op[has_op]]
        in_module = np.asarray(rec.st_call, dtype=np.int64) >= 0
        for step_start, boundary, segment_end in boundaries:
            held = (
                (alloc_phase == PHASE_FORWARD)
                & in_module
                & (arr.st_alloc >= step_start)
                & (arr.st_alloc < boundary)
                & (arr.st_free_n > boundary)
                & (arr.st_free_n < segment_end)
            )
            cat[held] = int(Category.ACTIVATION)

    # input: the batch — made outside any module in a forward, after the previous
    # backward (or the step start) and still live when a top-level module call starts;
    # or pre-existing and handed to a top-level call
    made_outside = np.asarray(rec.st_call, dtype=np.int64) == -1
    seg_ends = sorted(e for _, _, e in boundaries)
    for call, parent in enumerate(rec.call_parent):
        if parent != -1 or rec.call_phase[call] != PHASE_FORWARD:
            continue
        t_call = rec.call_start_clock[call]
        for sid in rec.call_inputs[call]:
            if rec.st_alloc_clock[sid] < 0:
                cat[sid] = int(Category.INPUT)
        i = _step_of(steps, t_call)
        lo = steps[i].start_clock if i >= 0 else 0
        prior = [e for e in seg_ends if lo <= e <= t_call]
        if prior:
            lo = prior[-1]
        sel = made_outside & (arr.st_alloc >= lo) & (arr.st_alloc < t_call) & (arr.st_free_n > t_call)
        cat[sel] = int(Category.INPUT)
    for sids, c in ((rec.opt_sids, Category.OPTIMIZER_STATE), (rec.grad_sids, Category.GRADIENT), (rec.param_sids, Category.PARAMETER)):
        if sids:
            cat[np.fromiter(sids, dtype=np.int64)] = int(c)
    return cat


def _step_of(steps: list, clock: int) -> int:
    for i, mark in enumerate(steps):
        if mark.start_clock <= clock and (mark.end_clock < 0 or clock < mark.end_clock):
            return i
    return -1


def _backward_segments(arr: _Arrays, op_lo: int, op_hi: int, step_end_clock: int) -> list[tuple[int, int]]:
    """(boundary clock, end clock) of each forward→backward transition in ops [lo, hi)."""
    out = []
    phases = arr.op_phase[op_lo:op_hi]
    clocks = arr.op_clock[op_lo:op_hi]
    i = 0
    n = len(phases)
    while i < n:
        if phases[i] == PHASE_BACKWARD and (i == 0 or phases[i - 1] != PHASE_BACKWARD):
            j = i
            while j < n and phases[j] == PHASE_BACKWARD:
                j += 1
            end = int(clocks[j]) if j < n else step_end_clock
            out.append((int(clocks[i]), end))
            i = j
        else:
            i += 1
    return out


def build_profile(raw: RawRun, *, calibration: dict | None = None, nvml: dict | None = None,
                  scratch: dict[int, int] | None = None) -> dict:
    rec = raw.recorder
    root = raw.root.module if raw.root is not None else None
    if root is not None:
        rec.note_module_state(root)
    for module in rec.modules:
        rec.note_module_state(module)
    arr, train_dev, on_dev = _arrays(raw, scratch or {})
    cat, step_docs = _steps(rec, arr, on_dev)
    best = max(range(len(step_docs)), key=lambda i: (step_docs[i]["peak_bytes"], i))
    mark = rec.steps[best]
    timing = [w / 1e9 for w in raw.timing_wall_ns] or ([raw.plain_step_ns / 1e9] if raw.plain_step_ns else [])
    step_time = statistics.median(timing) if timing else statistics.median(
        [max(1e-9, s["wall_time_s"] - s["instrumentation_s"]) for s in step_docs]
    )
    # op durations measured under instrumentation, rescaled so that the step's ops add up
    # to the uninstrumented step time: the Python and autograd time around ops is spread
    # over them in proportion (recompute re-runs both)
    op_total_s = float(arr.op_dur[mark.start_op:mark.end_op].sum()) / 1e9
    time_scale = step_time / op_total_s if op_total_s > 0 else 1.0
    trace, units = _trace_and_units(raw, arr, cat, mark, train_dev, time_scale, calibration or {})
    summary = _summary(raw, step_docs, best, trace, units, timing=timing, step_time_s=step_time,
                       op_time_s=op_total_s, time_scale=time_scale)
    optimizer = _optimizer_info(raw)
    doc = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tool": {"name": "memadvise", "version": __version__},
        "environment": environment(raw.device),
        "script": _script(raw).to_json(),
        "settings": Settings(warmup=raw.warmup, steps=raw.steps, timing_steps=raw.timing_steps).to_json(),
        "model": _model_info(raw, mark, root).to_json(),
        "optimizer": optimizer.to_json() if optimizer is not None else None,
        "distributed": DistributedInfo().to_json(),  # collect.distributed describes the process group
        "summary": summary.to_json(),
        "steps": step_docs,
        "units": units,
        "calibration": _step_local(calibration or {}, mark),
        "nvml": nvml or {"available": False, "reason": "not an NVIDIA GPU run"},
        "trace": trace,
    }
    notes = allocator_notes(step_docs)
    if rec.allocator is not None and rec.op_name and not arr.allocator:
        notes.append(f"the {rec.allocator.name} allocator's readings around the ops are incomplete "
                     f"({len(rec.op_alloc_after)} for {len(rec.op_name)} ops): the peak is the tensors' alone, "
                     "without scratch inside ops or untracked bytes")
    if notes:
        doc["notes"] = notes
    return doc


def _arrays(raw: RawRun, scratch: dict[int, int]) -> tuple[_Arrays, int, np.ndarray]:
    """The recorder's columns, the training device's index among the recorded devices (-1:
    none) and which storages live on it."""
    rec = raw.recorder
    arr = _Arrays(rec)
    arr.set_scratch(scratch, len(rec.op_name))
    devices = rec.devices()
    train_key = str(raw.device if raw.device.index is not None or raw.device.type == "cpu" else torch.device(raw.device.type, 0))
    train_dev = devices.index(train_key) if train_key in devices else -1
    on_dev = arr.st_device == train_dev
    arr.set_allocator(rec, on_dev)  # replaces the probe's scratch where the allocator was read
    return arr, train_dev, on_dev


def _steps(rec: Recorder, arr: _Arrays, on_dev: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    """The category of every storage, and each recorded step's figures (``StepRecord``)."""
    steps = rec.steps
    seg_per_step: list[list[tuple[int, int]]] = []
    boundaries: list[tuple[int, int, int]] = []
    for mark in steps:
        segs = _backward_segments(arr, mark.start_op, mark.end_op, mark.end_clock)
        seg_per_step.append(segs)
        boundaries.extend((mark.start_clock, b, e) for b, e in segs)
    cat = _categorize(rec, arr, boundaries, steps)
    step_docs = [_step_summary(rec, arr, cat, on_dev, mark, segs) for mark, segs in zip(steps, seg_per_step)]
    if not step_docs:
        raise RuntimeError("no recorded step")
    return cat, step_docs


def _trace_and_units(raw: RawRun, arr: _Arrays, cat: np.ndarray, mark: Any, train_dev: int, time_scale: float,
                     calibration: dict) -> tuple[dict, list[dict]]:
    """The representative step's trace and its units (modules), their times scaled by
    ``time_scale`` to the uninstrumented step."""
    rec = raw.recorder
    root = raw.root.module if raw.root is not None else None
    trace, call_map = _trace(rec, arr, cat, mark, train_dev, _state_order(rec, root, raw.optimizer))
    trace_modules = [rec.modules[m] for m in trace["_modules_used"]]
    trace["time_scale"] = time_scale
    replay = calibration.get("op_replay_s") or {}
    if replay:  # seconds of each replayed op alone (probe.time_signatures); None where not replayed
        trace["ops"]["replay_us"] = [round(replay[i] * 1e6, 3) if i in replay else None
                                     for i in range(mark.start_op, mark.end_op)]
    # autograd nodes the step's backward ran (each recorded in forward, scheduled in backward)
    nodes = arr.op_node[mark.start_op:mark.end_op]
    trace["backward_nodes"] = int(len(np.unique(nodes[nodes >= 0])))
    units = _units(rec, arr, cat, mark, _fqn_map(root), root, call_map, trace)
    for u, m in zip(units, trace_modules):
        plain = raw.plain_forward_ns.get(id(m))
        if plain:
            u["fwd_plain_ms"] = round(plain[0] / 1e6, 4)
            u["fwd_plain_calls"] = plain[1]
    return trace, units


def _summary(raw: RawRun, step_docs: list[dict], best: int, trace: dict, units: list[dict], *, timing: list[float],
             step_time_s: float, op_time_s: float, time_scale: float) -> Summary:
    """The profile's summary: the peak over the recorded steps, the representative step's
    figures (``step_docs[best]``) and the step's times."""
    rep = step_docs[best]
    owner = trace["ops"]["owner"]
    return Summary(
        peak_bytes=max(s["peak_bytes"] for s in step_docs),
        activation_bytes=rep["activation_bytes"],
        step_time_s=step_time_s,
        step_times_s=tuple(timing),
        # fresh pages mapped per uninstrumented step (median; None where not measurable):
        # on CPU, large blocks the allocator returns every step fault in again
        minor_faults_per_step=statistics.median(raw.timing_minor_faults) if raw.timing_minor_faults else None,
        instrumented_step_times_s=tuple(s["wall_time_s"] for s in step_docs),
        by_category_at_peak=rep["by_category_at_peak"],
        peak_phase=rep["peak_phase"],
        peak_op=rep["peak_op"],
        peak_unit=_unit_name_of_call(owner[rep["peak_op_index"]] if owner else -1, trace, units),
        representative_step=raw.recorder.steps[best].index,
        untracked_bytes=rep.get("untracked_bytes"),
        op_time_s=op_time_s,
        time_scale=time_scale,
    )


def _script(raw: RawRun) -> Script:
    script = raw.script.resolve()
    return Script(path=_project_path(script), args=tuple(raw.args), sha256=_sha256(script), cwd=os.getcwd(),
                  python=sys.executable)


def _model_info(raw: RawRun, mark: Any, root: torch.nn.Module | None) -> ModelInfo:
    """The root model, where the script names it, and its size and inputs."""
    root_info = raw.root
    if root is None or root_info is None:
        return ModelInfo(found=False)
    params = list(root.parameters())
    # positional tensor inputs, then keyword ones by name (HF: input_ids, labels)
    shapes = _with_keywords(_root_input_shapes(raw.recorder, mark, root), raw.root_kwarg_shapes)
    return ModelInfo(
        found=True,
        class_name=type(root).__name__,
        module=type(root).__module__,
        expression=root_info.expression,
        file=root_info.file,
        function=root_info.function,
        frame_line=root_info.frame_line,
        assign_line=_assign_line(raw.script, root_info),
        frames=tuple(root_info.frames),
        input_shapes=None if shapes is None else tuple((dtype, tuple(shape)) for dtype, shape in shapes),
        param_count=int(sum(p.numel() for p in params)),
        param_bytes=int(sum(p.numel() * p.element_size() for p in params)),
        dtype=str(params[0].dtype).replace("torch.", "") if params else None,
    )


def _optimizer_info(raw: RawRun) -> OptimizerInfo | None:
    optimizer = raw.optimizer
    if optimizer is None:
        return None
    defaults = getattr(optimizer, "defaults", {}) or {}
    var = raw.optimizer_variable
    return OptimizerInfo(
        class_name=type(optimizer).__name__,
        foreach=defaults.get("foreach"),
        fused=defaults.get("fused"),
        expression=var.expression if var else None,
        function=var.function if var else None,
        frame_line=var.frame_line if var else None,
    )


def allocator_notes(step_docs: list[dict]) -> list[str]:
    """A sentence where the allocator's peak over a step is not the profile's peak of that
    step (the profile's is built from readings around each op: memory that peaked between
    two ops, outside any aten op, is not in it)."""
    out = []
    for s in step_docs:
        a = (s.get("allocator") or {}).get("max_allocated_bytes")
        if a is not None and a != s["peak_bytes"]:
            out.append(f"step {s['index']}: the device allocator peaked at {a:,} bytes, the profile at "
                       f"{s['peak_bytes']:,} ({(s['peak_bytes'] - a) / max(a, 1):+.2%}): memory allocated outside "
                       "any recorded op is not in the profile's timeline")
    return out


def _project_path(script: Path) -> str:
    """The script's path relative to the working directory, with ``/``, when it lies under
    it (a copy of the project then names its own script); absolute otherwise."""
    try:
        rel = Path(os.path.relpath(script, Path.cwd().resolve()))
    except ValueError:  # another drive on Windows
        return str(script)
    return str(script) if rel.parts[:1] == ("..",) else rel.as_posix()


def _step_local(calibration: dict, mark: Any) -> dict:
    """Per-op calibration keyed by recorder op index → keyed by the trace's op index."""
    out = dict(calibration)
    out.pop("op_replay_s", None)  # per op: in the trace (ops.replay_us)
    for key in ("channels_last_op_ratio", "autocast_op_ratio"):
        ratios = out.pop(key, None)
        if ratios:
            out[key] = {str(i - mark.start_op): round(float(r), 4) for i, r in ratios.items()
                        if mark.start_op <= i < mark.end_op}
    return out


def _with_keywords(shapes: list | None, keyword_shapes: list) -> list | None:
    if not keyword_shapes:
        return shapes
    return (shapes or []) + keyword_shapes


def _root_input_shapes(rec: Recorder, mark: Any, root: torch.nn.Module) -> list | None:
    """[dtype, shape] of each tensor the root model got in its first call of the step."""
    for call, shapes in sorted(rec.call_input_shapes.items()):
        if mark.start_clock <= rec.call_start_clock[call] < mark.end_clock and rec.modules[rec.call_module[call]] is root:
            return shapes
    return None


def _assign_line(script: Path, root_info: Any) -> int | None:
    """The line after which the model's variable is final (where `apply` puts the plan)."""
    if not root_info.expression:
        return None
    try:
        from memadvise.source import find_insertion

        source = script.read_text(encoding="utf-8")
        return find_insertion(source, root_info.expression, root_info.function, root_info.frame_line)[0]
    except Exception:  # the model built where the script cannot name it: apply explains
        return None


def _unit_name_of_call(call: int, trace: dict, units: list[dict]) -> str | None:
    if call is None or call < 0:
        return None
    unit = trace["calls"]["unit"][call]
    return units[unit]["name"] if 0 <= unit < len(units) else None


def _step_summary(rec: Recorder, arr: _Arrays, cat: np.ndarray, on_dev: np.ndarray, mark: Any, segs: list) -> dict:
    c0, c1 = mark.start_clock, mark.end_clock
    sel = on_dev & (arr.st_alloc < c1) & (arr.st_free_n > c0)
    alloc = arr.st_alloc[sel]
    free = arr.st_free_n[sel]
    nbytes = arr.st_bytes[sel]
    cats = cat[sel]
    ops = slice(mark.start_op, mark.end_op)
    q = arr.op_clock[ops]
    if len(q) == 0:
        q = np.asarray([c0], dtype=np.int64)
    by = live_by_category(q, alloc, free, nbytes, cats, N_CATEGORIES)
    if mark.end_op > mark.start_op:  # scratch buffers inside ops (probe.py, allocator.py): temporary
        by[:, int(Category.TEMPORARY)] += arr.op_scratch[ops]
        by[:, int(Category.UNTRACKED)] += arr.op_untracked[ops]
    total = by.sum(axis=1)
    k = int(np.argmax(total))
    op_index = mark.start_op + k if mark.end_op > mark.start_op else -1
    names = rec.strings()
    phase = int(arr.op_phase[op_index]) if op_index >= 0 else PHASE_FORWARD
    act = 0
    for b, e in segs:
        act = max(act, _activation_at(arr, cat, on_dev, c0, b, e))
    start_bytes = int(live_bytes(np.asarray([c0]), alloc, free, nbytes)[0])
    cuda = untracked = allocator = None
    if mark.cuda_max_allocated is not None:
        cuda = {
            "max_memory_allocated": mark.cuda_max_allocated,
            "max_memory_reserved": mark.cuda_max_reserved,
            "allocated_at_start": mark.cuda_allocated_at_start,
        }
        untracked = max(0, (mark.cuda_allocated_at_start or 0) - start_bytes)
    if mark.allocator_max is not None and arr.allocator:
        # the allocator's own peak over the step; the profile's peak is built from the
        # per-op readings, so the two agree unless memory peaked between two ops
        allocator = {
            "source": rec.allocator.name if rec.allocator is not None else None,
            "max_allocated_bytes": int(mark.allocator_max),
            "allocated_at_start_bytes": int(mark.allocator_at_start or 0),
        }
    return StepRecord(
        index=mark.index,
        peak_bytes=int(total[k]),
        activation_bytes=int(act),
        by_category_at_peak={Category(i).label: int(by[k, i]) for i in range(N_CATEGORIES)},
        peak_phase=("forward", "backward", "optimizer")[phase],
        peak_op=names[rec.op_name[op_index]] if op_index >= 0 else None,
        peak_call=int(arr.op_call[op_index]) if op_index >= 0 else -1,
        peak_op_index=int(k),
        start_bytes=start_bytes,
        n_ops=int(mark.end_op - mark.start_op),
        wall_time_s=mark.wall_ns / 1e9,
        instrumentation_s=mark.overhead_ns / 1e9,
        cuda=cuda,
        untracked_bytes=untracked,
        allocator=allocator,
        nvml=mark.nvml or None,
    ).to_json()


def _activation_at(arr: _Arrays, cat: np.ndarray, on_dev: np.ndarray, step_start: int, boundary: int, end: int) -> int:
    """Bytes the forward left for backward: made in this forward, live at the boundary,
    and held by autograd (activation category)."""
    sel = (
        on_dev
        & (cat == int(Category.ACTIVATION))
        & (arr.st_alloc >= step_start)
        & (arr.st_alloc < boundary)
        & (arr.st_free_n > boundary)
    )
    return int(arr.st_bytes[sel].sum())


def _state_order(rec: Recorder, root: torch.nn.Module | None, optimizer: Any) -> dict[int, tuple]:
    """A run-independent order for the model's state: parameters, their gradients and
    optimizer state by parameter index, then buffers (profiles of one script at two
    sizes then list the same storage at the same place: see ``analysis.scaling``)."""
    order: dict[int, tuple] = {}
    if root is None:
        return order
    rec.paused += 1
    try:
        params = list(root.parameters())
        for i, p in enumerate(params):
            order.setdefault(rec._sid(p), (0, i, 0))
            if p.grad is not None:
                order.setdefault(rec._sid(p.grad), (1, i, 0))
            state = optimizer.state.get(p, {}) if optimizer is not None else {}
            for j, key in enumerate(sorted(state, key=str)):
                if isinstance(state[key], torch.Tensor):
                    order.setdefault(rec._sid(state[key]), (2, i, j))
        for i, b in enumerate(root.buffers()):
            order.setdefault(rec._sid(b), (3, i, 0))
    finally:
        rec.paused -= 1
    return order


def _trace(rec: Recorder, arr: _Arrays, cat: np.ndarray, mark: Any, train_dev: int,
           state_order: dict[int, tuple] | None = None) -> tuple[dict, dict[int, int]]:
    """The representative step, columnar, with clocks relative to its start."""
    c0, c1 = mark.start_clock, mark.end_clock
    o0, o1 = mark.start_op, mark.end_op
    rel = lambda c: -1 if c < 0 else int(c - c0)  # noqa: E731

    # storages overlapping the step, in an order that does not depend on discovery:
    # the model's state, then what existed before the step by its death, then by birth
    sel = np.nonzero((arr.st_alloc < c1) & (arr.st_free_n > c0))[0]
    state_order = state_order or {}

    def canon(s: int) -> tuple:
        s = int(s)
        if s in state_order:
            return (0, state_order[s], 0)
        if arr.st_alloc[s] < c0:
            return (1, (int(arr.st_free_n[s]), int(arr.st_bytes[s])), s)
        return (2, (int(arr.st_alloc[s]),), s)

    sel = np.asarray(sorted(sel.tolist(), key=canon), dtype=np.int64)
    local = {int(s): i for i, s in enumerate(sel)}
    st_alloc = [(-1 if rec.st_alloc_clock[s] < c0 else rec.st_alloc_clock[s] - c0) for s in sel]
    st_free = [(-1 if (rec.st_free_clock[s] < 0 or rec.st_free_clock[s] >= c1) else rec.st_free_clock[s] - c0) for s in sel]
    st_nat = []
    for s, a, f in zip(sel, st_alloc, st_free):
        n = rec.st_nat_clock[s]
        if a < 0 or n < 0 or n >= c1:
            st_nat.append(f)  # unknown or outlives the step: natural death = observed death
        else:
            n = max(n, rec.st_last_use[s])  # a missed alias can only make it look earlier
            st_nat.append(min(n - c0, f) if f >= 0 else n - c0)

    # module calls in the step; parents outside the step are cut
    calls = [c for c in range(len(rec.call_module)) if c0 <= rec.call_start_clock[c] < c1]
    call_map = {c: i for i, c in enumerate(calls)}
    modules_used = sorted({rec.call_module[c] for c in calls})
    unit_of_module = {m: i for i, m in enumerate(modules_used)}

    # backward ops → the forward call whose autograd node they run (sequence numbers)
    owner = arr.op_call[o0:o1].copy()
    fwd_calls = [c for c in calls if rec.call_phase[c] == PHASE_FORWARD and rec.call_seq_end[c] >= 0]
    nodes = arr.op_node[o0:o1]
    bwd = np.nonzero(nodes >= 0)[0]
    if len(bwd) and fwd_calls:
        lo = min(rec.call_seq_start[c] for c in fwd_calls)
        hi = max(rec.call_seq_end[c] for c in fwd_calls)
        table = np.full(max(1, hi - lo), -1, dtype=np.int64)
        for c in fwd_calls:  # parents start first: children overwrite their share
            table[rec.call_seq_start[c] - lo : rec.call_seq_end[c] - lo] = c
        seq = nodes[bwd] - lo
        ok = (seq >= 0) & (seq < len(table))
        owner[bwd[ok]] = table[seq[ok]]

    # saves packed in the step
    saves = [r for r in range(len(rec.sv_storage)) if c0 <= rec.sv_pack_clock[r] < c1 and rec.sv_storage[r] in local]

    def m(c: int) -> int:
        return call_map.get(int(c), -1)

    trace = {
        "step": mark.index,
        "end_clock": int(c1 - c0),
        "strings": rec.strings(),
        "devices": rec.devices(),
        "train_device": train_dev,
        "optimizer": {"start": rel(mark.optimizer_start_clock) if mark.optimizer_start_clock >= c0 else -1,
                      "end": rel(mark.optimizer_end_clock) if mark.optimizer_end_clock >= c0 else -1},
        "ops": {
            "name": rec.op_name[o0:o1],
            "clock": [int(c - c0) for c in rec.op_clock[o0:o1]],
            "phase": rec.op_phase[o0:o1],
            "call": [m(c) for c in rec.op_call[o0:o1]],
            "owner": [m(c) for c in owner],
            "dur_us": [round(d / 1000.0, 3) for d in rec.op_dur_ns[o0:o1]],
            "flops": rec.op_flops[o0:o1],
            "in_bytes": rec.op_in_bytes[o0:o1],
            "out_bytes": rec.op_out_bytes[o0:o1],
            "shape": rec.op_shape[o0:o1],
            "mutates": [local.get(x, -1) for x in rec.op_mutates[o0:o1]],
            "scratch": [int(x) for x in arr.op_scratch[o0:o1]],
            **({"untracked": [int(x) for x in arr.op_untracked[o0:o1]]} if arr.allocator else {}),
        },
        "storages": {
            "bytes": [int(arr.st_bytes[s]) for s in sel],
            "device": [int(rec.st_device[s]) for s in sel],
            "category": [int(cat[s]) for s in sel],
            "alloc": st_alloc,
            "free": st_free,
            "natural_free": st_nat,
            "op": [(int(rec.st_alloc_op[s]) - o0 if o0 <= rec.st_alloc_op[s] < o1 else -1) for s in sel],
            "call": [m(rec.st_call[s]) for s in sel],
        },
        "saves": {
            "storage": [local[rec.sv_storage[r]] for r in saves],
            "pack": [rel(rec.sv_pack_clock[r]) for r in saves],
            "call": [m(rec.sv_call[r]) for r in saves],
            "phase": [rec.sv_phase[r] for r in saves],
            "unpack": [rel(rec.sv_unpack_clock[r]) if c0 <= rec.sv_unpack_clock[r] < c1 else -1 for r in saves],
            "release": [rel(rec.sv_release_clock[r]) if c0 <= rec.sv_release_clock[r] < c1 else -1 for r in saves],
        },
        "calls": {
            "unit": [unit_of_module[rec.call_module[c]] for c in calls],
            "parent": [m(rec.call_parent[c]) for c in calls],
            "phase": [rec.call_phase[c] for c in calls],
            "start": [rel(rec.call_start_clock[c]) for c in calls],
            "end": [rel(rec.call_end_clock[c]) if rec.call_end_clock[c] >= 0 else -1 for c in calls],
            "start_op": [rec.call_start_op[c] - o0 for c in calls],
            "end_op": [rec.call_end_op[c] - o0 if rec.call_end_op[c] >= 0 else -1 for c in calls],
            "wall_us": [round(rec.call_wall_ns[c] / 1000.0, 3) for c in calls],
            "inputs": [[local[s] for s in rec.call_inputs[c] if s in local] for c in calls],
            "outputs": [[local[s] for s in rec.call_outputs[c] if s in local] for c in calls],
        },
    }
    trace["_modules_used"] = modules_used  # removed by _units
    return trace, call_map


def _units(rec: Recorder, arr: _Arrays, cat: np.ndarray, mark: Any, fqn: dict[int, str],
           root: torch.nn.Module | None, call_map: dict[int, int], trace: dict) -> list[dict]:
    """One record per module called in the representative step (units of docs/design.md)."""
    modules_used: list[int] = trace.pop("_modules_used")
    scale = float(trace.get("time_scale", 1.0))
    calls = trace["calls"]
    ops = trace["ops"]
    st = trace["storages"]
    sv = trace["saves"]
    n_units = len(modules_used)
    parent_call = calls["parent"]
    unit_of_call = calls["unit"]

    # the chain of units above each call (itself included)
    chains: list[list[int]] = []
    for c in range(len(unit_of_call)):
        chain = []
        x = c
        while x >= 0:
            chain.append(unit_of_call[x])
            x = parent_call[x]
        chains.append(chain)

    act_sets: list[set[int]] = [set() for _ in range(n_units)]
    excluded = {int(Category.PARAMETER), int(Category.GRADIENT), int(Category.OPTIMIZER_STATE), int(Category.INPUT)}
    for sid, call, phase in zip(sv["storage"], sv["call"], sv["phase"]):
        if call < 0 or phase != PHASE_FORWARD or st["category"][sid] in excluded:
            continue
        for u in set(chains[call]):
            act_sets[u].add(sid)
    bwd_us = [0.0] * n_units
    fwd_op_us = [0.0] * n_units
    for owner, phase, dur, call in zip(ops["owner"], ops["phase"], ops["dur_us"], ops["call"]):
        if phase == PHASE_BACKWARD and owner >= 0 and call < 0:
            for u in set(chains[owner]):
                bwd_us[u] += dur
        elif phase == PHASE_FORWARD and call >= 0:
            for u in set(chains[call]):
                fwd_op_us[u] += dur
    n_calls = [0] * n_units
    fwd_us = [0.0] * n_units
    in_bytes = [0] * n_units
    out_bytes = [0] * n_units
    for c, u in enumerate(unit_of_call):
        if calls["phase"][c] != PHASE_FORWARD:
            continue
        n_calls[u] += 1
        fwd_us[u] += calls["wall_us"][c]
        if n_calls[u] == 1:
            in_bytes[u] = sum(st["bytes"][s] for s in set(calls["inputs"][c]))
            out_bytes[u] = sum(st["bytes"][s] for s in set(calls["outputs"][c]))

    # flags propagate to every unit above the module that showed them
    rng = [False] * n_units
    mutates = [False] * n_units
    inplace = [False] * n_units
    bn = [False] * n_units
    for c, u in enumerate(unit_of_call):
        m = modules_used[u]
        module = rec.modules[m]
        is_bn = isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.training and module.track_running_stats
        for v in set(chains[c]):
            rng[v] |= rec.mod_rng[m]
            bn[v] |= is_bn
    # in-place writes in forward: into a parameter or buffer (state), or into a tensor
    # made before the call (its input)
    for call, phase, sid in zip(ops["call"], ops["phase"], ops["mutates"]):
        if call < 0 or phase != PHASE_FORWARD or sid < 0:
            continue
        if st["category"][sid] == int(Category.PARAMETER):
            for v in set(chains[call]):
                mutates[v] = True
        elif st["alloc"][sid] < calls["start"][call]:
            inplace[unit_of_call[call]] = True

    units = []
    name_of: dict[int, str] = {}
    for u, m in enumerate(modules_used):
        module = rec.modules[m]
        name = fqn.get(id(module))
        if name is None:
            name = f"~{type(module).__name__}.{m}"  # outside the root model: not actionable
        name_of[u] = name
    for u, m in enumerate(modules_used):
        module = rec.modules[m]
        name = name_of[u]
        in_root = not name.startswith("~")
        parent_name = name.rsplit(".", 1)[0] if "." in name else ("" if name else None)
        if not in_root:
            parent_name = None
        parent_module = root.get_submodule(parent_name) if (in_root and parent_name is not None and root is not None) else None
        params = {id(p): p for p in module.parameters()}
        units.append(
            {
                "name": name,
                "type": type(module).__name__,
                "in_root": in_root,
                "parent": parent_name,
                "depth": (0 if name == "" else name.count(".") + 1) if in_root else -1,
                "container": type(parent_module).__name__ if parent_module is not None else None,
                "calls": n_calls[u],
                "activation_bytes": int(sum(st["bytes"][s] for s in act_sets[u])),
                "fwd_time_ms": round(fwd_op_us[u] * scale / 1000.0, 4),
                "bwd_time_ms": round(bwd_us[u] * scale / 1000.0, 4),
                "fwd_wall_ms": round(fwd_us[u] / 1000.0, 4),
                "input_bytes": int(in_bytes[u]),
                "output_bytes": int(out_bytes[u]),
                "param_bytes": int(sum(p.numel() * p.element_size() for p in params.values())),
                "uses_rng": bool(rng[u]),
                "mutates_state": bool(mutates[u]),
                "inplace_on_input": bool(inplace[u]),
                "batchnorm_training": bool(bn[u]),
                "training": bool(module.training),
            }
        )
    return units
