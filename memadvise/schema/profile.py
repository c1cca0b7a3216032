"""The profile file: what ``memadvise profile`` recorded about a script's training steps.

A JSON document with a header (``format``, ``schema_version``), the environment it was
taken on, per-step figures, per-unit figures and the columnar trace of the
representative step (see ``memadvise.collect.build``). Writes are atomic; reads refuse
another format or version with one sentence.

The sections are records here (``Summary``, ``StepRecord``, ``Environment``, ``Script``,
``Settings``, ``ModelInfo``, ``OptimizerInfo``, ``DistributedInfo``): ``from_json`` reads
one, ``to_json`` writes it back with the same keys in the same order, which is how
``collect.build`` writes them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

from memadvise._errors import InputFileError
from memadvise.schema.io import atomic_write_json, check_header, read_json

FORMAT = "memadvise-profile"
SCHEMA_VERSION = 1
DEFAULT_PATH = Path(".memadvise") / "profile.json"

_REQUIRED = ("environment", "script", "settings", "summary", "steps", "units", "trace")
_TRACE_TABLES = {
    "ops": ("name", "clock", "phase", "call", "owner", "dur_us", "flops", "in_bytes", "out_bytes", "shape"),
    "storages": ("bytes", "device", "category", "alloc", "free", "natural_free", "op", "call"),
    "saves": ("storage", "pack", "call", "phase", "unpack", "release"),
    "calls": ("unit", "parent", "phase", "start", "end", "start_op", "end_op", "wall_us", "inputs", "outputs"),
}


def _int_or_none(v: Any) -> int | None:
    return None if v is None else int(v)


def _float_or_none(v: Any) -> float | None:
    return None if v is None else float(v)


def _present(**fields: Any) -> dict[str, Any]:
    """The fields that are not None: keys a writer leaves out rather than writing null."""
    return {k: v for k, v in fields.items() if v is not None}


@dataclass(frozen=True)
class Summary:
    """The profile's ``summary``: the step's figures that every stage reads.

    peak_bytes: the highest live bytes over the profiled steps (bytes).
    activation_bytes: bytes saved for backward by the representative step (bytes).
    step_time_s: the uninstrumented step time (seconds).
    by_category_at_peak: bytes live at the peak, by memory category (``schema.categories``);
        they sum to ``peak_bytes``.
    peak_phase: ``forward``, ``backward``, ``optimizer`` or ``other``.
    peak_op / peak_unit: the aten op and the module (qualified name) at the peak; None
        where unknown.
    step_times_s / instrumented_step_times_s: each timed step (seconds).
    minor_faults_per_step: fresh pages mapped per uninstrumented step; None where not measured.
    untracked_bytes: allocator bytes outside any tensor at the peak; None without readings.
    op_time_s / time_scale: the ops' instrumented time (seconds) and the factor to the step time.
    """

    peak_bytes: int
    activation_bytes: int
    step_time_s: float
    by_category_at_peak: Mapping[str, int] = field(default_factory=dict)
    peak_phase: str | None = None
    peak_op: str | None = None
    peak_unit: str | None = None
    representative_step: int | None = None
    step_times_s: tuple[float, ...] = ()
    instrumented_step_times_s: tuple[float, ...] = ()
    minor_faults_per_step: int | float | None = None
    untracked_bytes: int | None = None
    op_time_s: float | None = None
    time_scale: float | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Summary":
        return cls(
            peak_bytes=int(d["peak_bytes"]),
            activation_bytes=int(d["activation_bytes"]),
            step_time_s=float(d["step_time_s"]),
            by_category_at_peak={k: int(v) for k, v in (d.get("by_category_at_peak") or {}).items()},
            peak_phase=d.get("peak_phase"),
            peak_op=d.get("peak_op"),
            peak_unit=d.get("peak_unit"),
            representative_step=_int_or_none(d.get("representative_step")),
            step_times_s=tuple(float(t) for t in d.get("step_times_s") or ()),
            instrumented_step_times_s=tuple(float(t) for t in d.get("instrumented_step_times_s") or ()),
            minor_faults_per_step=d.get("minor_faults_per_step"),  # as recorded: a median, int or float
            untracked_bytes=_int_or_none(d.get("untracked_bytes")),
            op_time_s=_float_or_none(d.get("op_time_s")),
            time_scale=_float_or_none(d.get("time_scale")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "peak_bytes": self.peak_bytes,
            "activation_bytes": self.activation_bytes,
            "step_time_s": self.step_time_s,
            "step_times_s": list(self.step_times_s),
            "minor_faults_per_step": self.minor_faults_per_step,
            "instrumented_step_times_s": list(self.instrumented_step_times_s),
            "by_category_at_peak": dict(self.by_category_at_peak),
            "peak_phase": self.peak_phase,
            "peak_op": self.peak_op,
            "peak_unit": self.peak_unit,
            "representative_step": self.representative_step,
            "untracked_bytes": self.untracked_bytes,
            "op_time_s": self.op_time_s,
            "time_scale": self.time_scale,
        }


@dataclass(frozen=True)
class StepRecord:
    """One recorded step (the profile's ``steps``).

    index: the step's number in the run (warmup steps count).
    peak_bytes: its peak live bytes (bytes); by_category_at_peak: those bytes by category.
    peak_op / peak_phase: the aten op and the phase at the peak.
    peak_call: the module call at the peak (-1: none); peak_op_index: the peak op's
        index among the step's ops.
    activation_bytes: bytes held for backward (bytes); start_bytes: live at its start (bytes).
    n_ops: aten ops recorded; wall_time_s / instrumentation_s: its instrumented wall time
        and the part of it spent in memadvise's hooks (seconds).
    cuda: CUDA's own ``max_memory_allocated`` / ``max_memory_reserved`` /
        ``allocated_at_start`` (bytes), None off CUDA; untracked_bytes: CUDA-allocated
        bytes at the start that no tensor holds (bytes), only with ``cuda``.
    allocator: the device allocator's ``source``, ``max_allocated_bytes`` and
        ``allocated_at_start_bytes`` over the step, where read; nvml: the GPU's readings.
    Fields that older files lack are None and left out when written.
    """

    index: int
    peak_bytes: int
    activation_bytes: int
    by_category_at_peak: Mapping[str, int] = field(default_factory=dict)
    peak_phase: str | None = None
    peak_op: str | None = None
    peak_call: int | None = None
    peak_op_index: int | None = None
    start_bytes: int | None = None
    n_ops: int | None = None
    wall_time_s: float | None = None
    instrumentation_s: float | None = None
    cuda: Mapping[str, Any] | None = None
    untracked_bytes: int | None = None
    allocator: Mapping[str, Any] | None = None
    nvml: Mapping[str, Any] | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "StepRecord":
        return cls(index=int(d["index"]), peak_bytes=int(d["peak_bytes"]), activation_bytes=int(d["activation_bytes"]),
                   by_category_at_peak={k: int(v) for k, v in (d.get("by_category_at_peak") or {}).items()},
                   peak_phase=d.get("peak_phase"), peak_op=d.get("peak_op"),
                   peak_call=_int_or_none(d.get("peak_call")), peak_op_index=_int_or_none(d.get("peak_op_index")),
                   start_bytes=_int_or_none(d.get("start_bytes")), n_ops=_int_or_none(d.get("n_ops")),
                   wall_time_s=_float_or_none(d.get("wall_time_s")),
                   instrumentation_s=_float_or_none(d.get("instrumentation_s")), cuda=d.get("cuda"),
                   untracked_bytes=_int_or_none(d.get("untracked_bytes")), allocator=d.get("allocator"),
                   nvml=d.get("nvml"))

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"index": self.index, "peak_bytes": self.peak_bytes,
                               "by_category_at_peak": dict(self.by_category_at_peak),
                               "peak_op": self.peak_op, "peak_phase": self.peak_phase}
        doc.update(_present(peak_call=self.peak_call, peak_op_index=self.peak_op_index))
        doc["activation_bytes"] = self.activation_bytes
        doc.update(_present(start_bytes=self.start_bytes, n_ops=self.n_ops, wall_time_s=self.wall_time_s,
                            instrumentation_s=self.instrumentation_s))
        doc["cuda"] = None if self.cuda is None else dict(self.cuda)  # null off CUDA
        doc.update(_present(untracked_bytes=self.untracked_bytes,
                            allocator=None if self.allocator is None else dict(self.allocator),
                            nvml=None if self.nvml is None else dict(self.nvml)))
        return doc


@dataclass(frozen=True)
class Device:
    """The device the step ran on: ``type`` (``cpu`` or ``cuda``), its ``index`` (None:
    the default), ``name`` (the GPU's or the processor's) and ``total_memory_bytes``."""

    type: str
    index: int | None = None
    name: str | None = None
    total_memory_bytes: int | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Device":
        return cls(type=str(d["type"]), index=_int_or_none(d.get("index")), name=d.get("name"),
                   total_memory_bytes=_int_or_none(d.get("total_memory_bytes")))

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "index": self.index, "name": self.name, "total_memory_bytes": self.total_memory_bytes}


@dataclass(frozen=True)
class Environment:
    """Where the profile was taken, recorded so later commands work on another machine.

    torch: the release (``2.13.0``); torch_build: with its local tag (``2.13.0+cpu``).
    cuda_version / cuda_capability: None on CPU.
    """

    torch: str
    python: str
    device: Device
    torch_build: str | None = None
    platform: str | None = None
    hostname: str | None = None
    cpu_count: int | None = None
    cuda_version: str | None = None
    cuda_capability: tuple[int, int] | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Environment":
        dev = d["device"]
        cuda = d.get("cuda") or {}
        cap = cuda.get("capability")
        return cls(
            torch=str(d["torch"]),
            python=str(d["python"]),
            device=Device.from_json(dev),
            torch_build=d.get("torch_build"),
            platform=d.get("platform"),
            hostname=d.get("hostname"),
            cpu_count=_int_or_none(d.get("cpu_count")),
            cuda_version=cuda.get("version"),
            cuda_capability=(int(cap[0]), int(cap[1])) if cap else None,
        )

    def to_json(self) -> dict[str, Any]:
        on_cuda = self.cuda_version is not None or self.cuda_capability is not None
        return {
            "torch": self.torch,
            "torch_build": self.torch_build,
            "python": self.python,
            "platform": self.platform,
            "hostname": self.hostname,
            "cpu_count": self.cpu_count,
            "device": self.device.to_json(),
            "cuda": {"version": self.cuda_version,
                     "capability": list(self.cuda_capability) if self.cuda_capability else None} if on_cuda else None,
        }


@dataclass(frozen=True)
class Script:
    """The script that was profiled: its absolute ``path``, ``args``, the ``sha256`` of
    its text (plans refuse another version), the working directory ``cwd`` and the
    ``python`` interpreter (None in old files)."""

    path: str
    sha256: str
    args: tuple[str, ...] = ()
    cwd: str | None = None
    python: str | None = None

    @property
    def file_name(self) -> str:
        """``train.py`` for ``/work/train.py``."""
        return self.path.rsplit("/", 1)[-1]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Script":
        return cls(path=str(d["path"]), sha256=str(d.get("sha256", "")), args=tuple(str(a) for a in d.get("args") or ()),
                   cwd=d.get("cwd"), python=d.get("python"))

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "args": list(self.args), "sha256": self.sha256, "cwd": self.cwd, "python": self.python}


@dataclass(frozen=True)
class Vary:
    """``memadvise profile --vary NAME=V1,V2``: the size this profile was taken at.
    ``value`` is as recorded (an integer from the command line); ``predicted``: True for
    a profile the scaling model made (``analysis.scaling``), not measured."""

    name: str
    value: float
    predicted: bool = False

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Vary":
        return cls(name=str(d["name"]), value=d["value"], predicted=bool(d.get("predicted", False)))

    def to_json(self) -> dict[str, Any]:
        """``predicted`` is written only where True (measured profiles leave it out)."""
        return {"name": self.name, "value": self.value, **({"predicted": True} if self.predicted else {})}


@dataclass(frozen=True)
class Settings:
    """How the script was profiled: ``warmup`` steps run first, ``steps`` recorded,
    ``timing_steps`` timed without instrumentation; ``vary`` with ``--vary``."""

    warmup: int = 0
    steps: int = 0
    timing_steps: int = 0
    vary: Vary | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> "Settings":
        d = d or {}
        v = d.get("vary")
        return cls(warmup=int(d.get("warmup", 0)), steps=int(d.get("steps", 0)), timing_steps=int(d.get("timing_steps", 0)),
                   vary=Vary.from_json(v) if v else None)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"warmup": self.warmup, "steps": self.steps, "timing_steps": self.timing_steps}
        if self.vary is not None:
            doc["vary"] = self.vary.to_json()
        return doc


@dataclass(frozen=True)
class ModelInfo:
    """The profile's ``model``: the root model memadvise found, and where the script names it.

    found: False when no model was found (then nothing else is written).
    class_name / module: its class and the module that defines it (``GPT``, ``__main__``).
    expression: how the script names it (``model``, ``self.model``); file / function /
        frame_line: the script file, function and line (1-based) of the frame holding that name.
    assign_line: the line after which that variable is final (where ``apply`` puts a
        plan); None where the script cannot name it.
    frames: the script's frames at the first step, innermost first, as recorded
        (``collect.root.RootModel.frames``); None in older files, which lack them.
    input_shapes: ``(dtype, shape)`` of each tensor the model got in its first call of
        the representative step, keyword inputs last; None where none was seen.
    param_count: parameters (elements); param_bytes: their size (bytes); dtype: of the
        first parameter (``float32``), None without parameters.
    """

    found: bool
    class_name: str | None = None
    module: str | None = None
    expression: str | None = None
    file: str | None = None
    function: str | None = None
    frame_line: int | None = None
    assign_line: int | None = None
    frames: tuple[Mapping[str, Any], ...] | None = None
    input_shapes: tuple[tuple[str, tuple[int, ...]], ...] | None = None
    param_count: int = 0
    param_bytes: int = 0
    dtype: str | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> "ModelInfo":
        d = d or {}
        # a section without "found" (hand-written, or older) names the model if it has an expression
        if not d.get("found", bool(d.get("expression") or d.get("frames"))):
            return cls(found=False)
        frames, shapes = d.get("frames"), d.get("input_shapes")
        return cls(
            found=True, class_name=d.get("class"), module=d.get("module"), expression=d.get("expression"),
            file=d.get("file"), function=d.get("function"), frame_line=_int_or_none(d.get("frame_line")),
            assign_line=_int_or_none(d.get("assign_line")),
            frames=None if frames is None else tuple(frames),
            input_shapes=None if shapes is None else tuple((str(dt), tuple(int(n) for n in shape)) for dt, shape in shapes),
            param_count=int(d.get("param_count", 0)), param_bytes=int(d.get("param_bytes", 0)), dtype=d.get("dtype"),
        )

    def site_frames(self) -> list[Mapping[str, Any]]:
        """The frames that name the model (``apply`` looks for its site in them): the
        recorded ones with an expression, else one built from ``expression``,
        ``function`` and ``frame_line`` (profiles from before frames were recorded)."""
        frames = [f for f in self.frames or () if f.get("expression")]
        if not frames and self.expression:
            frames = [{"function": self.function, "first_line": None, "line": self.frame_line,
                       "expression": self.expression, "parameter": None, "executed_lines": None}]
        return frames

    def to_json(self) -> dict[str, Any]:
        if not self.found:
            return {"found": False}
        doc: dict[str, Any] = {"found": True, "class": self.class_name, "module": self.module,
                               "expression": self.expression, "file": self.file, "function": self.function,
                               "frame_line": self.frame_line, "assign_line": self.assign_line}
        if self.frames is not None:
            doc["frames"] = [dict(f) for f in self.frames]
        doc["input_shapes"] = (None if self.input_shapes is None
                               else [[dt, list(shape)] for dt, shape in self.input_shapes])
        doc.update(param_count=self.param_count, param_bytes=self.param_bytes, dtype=self.dtype)
        return doc


@dataclass(frozen=True)
class OptimizerInfo:
    """The profile's ``optimizer`` (None in the file where the script has no ``torch.optim``
    optimizer).

    class_name: ``AdamW``; foreach / fused: its ``defaults`` (None: PyTorch chooses).
    expression / function / frame_line: how, in which function and at which line
        (1-based) the script names it; None where it cannot.
    probe: each implementation's time (seconds) and extra peak (bytes), as
        ``collect.optimizer_probe`` recorded them; None where not probed (left out).
    """

    class_name: str
    foreach: bool | None = None
    fused: bool | None = None
    expression: str | None = None
    function: str | None = None
    frame_line: int | None = None
    probe: Mapping[str, Any] | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "OptimizerInfo":
        return cls(class_name=str(d["class"]), foreach=d.get("foreach"), fused=d.get("fused"),
                   expression=d.get("expression"), function=d.get("function"),
                   frame_line=_int_or_none(d.get("frame_line")), probe=d.get("probe"))

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"class": self.class_name, "foreach": self.foreach, "fused": self.fused,
                               "expression": self.expression, "function": self.function, "frame_line": self.frame_line}
        if self.probe is not None:
            doc["probe"] = dict(self.probe)
        return doc


@dataclass(frozen=True)
class DistributedInfo:
    """The profile's ``distributed``: the process group it was taken in.

    rank / world_size: this process's rank and the number of ranks (1: not distributed);
    backend: ``nccl``, ``gloo``, None outside a process group. ranks: each rank's
    figures in a merged profile (``collect.distributed.rank_summary``), empty otherwise.
    extra: the keys ``collect.distributed`` adds after these (``run_id``, ``local_rank``,
    ``worst_rank``, ``merged``), as recorded and in their order.
    """

    rank: int = 0
    world_size: int = 1
    backend: str | None = None
    ranks: tuple[Mapping[str, Any], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> "DistributedInfo":
        d = d or {}
        known = ("rank", "world_size", "backend", "ranks")
        return cls(rank=int(d.get("rank", 0)), world_size=int(d.get("world_size", 1)), backend=d.get("backend"),
                   ranks=tuple(d.get("ranks") or ()), extra={k: v for k, v in d.items() if k not in known})

    def to_json(self) -> dict[str, Any]:
        return {"rank": self.rank, "world_size": self.world_size, "backend": self.backend,
                "ranks": [dict(r) for r in self.ranks], **self.extra}


@dataclass(frozen=True)
class UnitRecord:
    """One module of the script (a unit), keyed by its qualified name.

    name: the module path (``blocks.3.attn``; ``""`` is the root model; ``~...`` a module
        outside the root model). type: its class name. parent: the parent's name (None
        for the root and outside it). depth: 0 for the root, -1 outside it.
    calls: forward calls in the representative step.
    activation_bytes: bytes its forward saved for backward (bytes).
    fwd_time_ms / bwd_time_ms: time of its ops in forward and backward (milliseconds,
        scaled to the uninstrumented step); fwd_wall_ms: instrumented wall time of its
        forward. fwd_plain_ms / fwd_plain_calls: its forward timed without hooks, where
        measured.
    input_bytes / output_bytes / param_bytes: bytes of its inputs, outputs, parameters.
    uses_rng, mutates_state, inplace_on_input, batchnorm_training, training: what
        recomputing it must take care of.
    """

    name: str
    type: str
    in_root: bool
    parent: str | None
    depth: int
    container: str | None
    calls: int
    activation_bytes: int
    fwd_time_ms: float
    bwd_time_ms: float
    input_bytes: int
    output_bytes: int
    param_bytes: int
    uses_rng: bool = False
    mutates_state: bool = False
    inplace_on_input: bool = False
    batchnorm_training: bool = False
    training: bool = True
    fwd_wall_ms: float | None = None
    fwd_plain_ms: float | None = None
    fwd_plain_calls: int | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "UnitRecord":
        return cls(
            name=str(d["name"]), type=str(d["type"]), in_root=bool(d.get("in_root", False)), parent=d.get("parent"),
            depth=int(d.get("depth", -1)), container=d.get("container"), calls=int(d.get("calls", 1)),
            activation_bytes=int(d.get("activation_bytes", 0)), fwd_time_ms=float(d.get("fwd_time_ms", 0.0)),
            bwd_time_ms=float(d.get("bwd_time_ms", 0.0)), input_bytes=int(d.get("input_bytes", 0)),
            output_bytes=int(d.get("output_bytes", 0)), param_bytes=int(d.get("param_bytes", 0)),
            uses_rng=bool(d.get("uses_rng", False)), mutates_state=bool(d.get("mutates_state", False)),
            inplace_on_input=bool(d.get("inplace_on_input", False)),
            batchnorm_training=bool(d.get("batchnorm_training", False)), training=bool(d.get("training", True)),
            fwd_wall_ms=_float_or_none(d.get("fwd_wall_ms")), fwd_plain_ms=_float_or_none(d.get("fwd_plain_ms")),
            fwd_plain_calls=_int_or_none(d.get("fwd_plain_calls")),
        )


@dataclass(frozen=True)
class ProfileRecords:
    """The typed parts of a profile that every stage reads (see ``Profile.records``)."""

    summary: Summary
    environment: Environment
    script: Script
    units: tuple[UnitRecord, ...]
    settings: Settings = field(default_factory=Settings)
    steps: tuple[StepRecord, ...] = ()

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> "ProfileRecords":
        return cls(summary=Summary.from_json(doc["summary"]), environment=Environment.from_json(doc["environment"]),
                   script=Script.from_json(doc["script"]), units=tuple(UnitRecord.from_json(u) for u in doc["units"]),
                   settings=Settings.from_json(doc.get("settings")),
                   steps=tuple(StepRecord.from_json(s) for s in doc.get("steps") or ()))


@dataclass
class Profile:
    """A loaded, validated profile document.

    ``records`` holds its typed parts (summary, environment, script, units), built once
    from the document on first use; ``doc`` is the document itself, for the writer and
    for the columnar trace (``schema.trace.Trace``). The dict properties (``summary``,
    ``units``, ...) are the document's sections as read, kept for older callers.
    """

    doc: dict
    path: Path | None = None

    @cached_property
    def records(self) -> ProfileRecords:
        return ProfileRecords.from_doc(self.doc)

    @property
    def summary(self) -> dict:
        return self.doc["summary"]

    @property
    def units(self) -> list[dict]:
        return self.doc["units"]

    @property
    def trace(self) -> dict:
        return self.doc["trace"]

    @property
    def environment(self) -> dict:
        return self.doc["environment"]

    @property
    def script(self) -> dict:
        return self.doc["script"]

    @property
    def notes(self) -> list[str]:
        """What went wrong while profiling and is missing from the figures, one sentence each."""
        return list(self.doc.get("notes") or [])

    @property
    def device_type(self) -> str:
        return self.records.environment.device.type

    def unit_index(self) -> dict[str, int]:
        return {u.name: i for i, u in enumerate(self.records.units)}


def validate_profile(doc: Any, path: str | os.PathLike) -> None:
    check_header(
        doc, path=path, fmt=FORMAT, version=SCHEMA_VERSION, what="profile",
        hint="re-create it with `memadvise profile`",
    )
    missing = [k for k in _REQUIRED if k not in doc]
    if missing:
        raise InputFileError(f"profile {str(path)!r} is incomplete (missing {', '.join(missing)}); re-create it")
    trace = doc["trace"]
    try:
        for table, columns in _TRACE_TABLES.items():
            cols = trace[table]
            lengths = {len(cols[c]) for c in columns}
            if len(lengths) > 1:
                raise InputFileError(f"profile {str(path)!r} is corrupt (trace.{table} columns differ in length)")
        replay = trace["ops"].get("replay_us")  # optional: seconds of replayed ops, null where none
        if replay is not None and (len(replay) != len(trace["ops"]["name"]) or
                                   any(v is not None and not isinstance(v, (int, float)) for v in replay)):
            raise InputFileError(f"profile {str(path)!r} is corrupt (trace.ops.replay_us is not one number "
                                 "or null per op); re-create it")
        n_storages = len(trace["storages"]["bytes"])
        if any(not (0 <= s < n_storages) for s in trace["saves"]["storage"]):
            raise InputFileError(f"profile {str(path)!r} is corrupt (a saved tensor names no storage)")
        n_units = len(doc["units"])
        if any(not (0 <= u < n_units) for u in trace["calls"]["unit"]):
            raise InputFileError(f"profile {str(path)!r} is corrupt (a module call names no unit)")
        int(doc["summary"]["peak_bytes"])
        plans = doc.get("compile_plans")  # optional: torch.compile's partition per budget (--compile-plans)
        if plans is not None and not _compile_plans_ok(plans):
            raise InputFileError(f"profile {str(path)!r} is corrupt (compile_plans is malformed); re-create it")
        notes = doc.get("notes", [])  # optional: measurements that failed, one sentence each
        if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
            raise InputFileError(f"profile {str(path)!r} is corrupt (notes is not a list of sentences); re-create it")
    except (KeyError, TypeError, ValueError):
        raise InputFileError(f"profile {str(path)!r} is corrupt (malformed trace); re-create it") from None


def _compile_plans_ok(plans: Any) -> bool:
    """``compile_plans``: ``{"available": false, "reason": str}`` or ``{"available": true,
    "budgets": [{"budget": number, "saved_bytes": int >= 0, ...}, ...]}``."""
    try:
        if not isinstance(plans, dict) or not isinstance(plans.get("available"), bool):
            return False
        if not plans["available"]:
            return isinstance(plans.get("reason"), str)
        return all(isinstance(b["budget"], (int, float)) and int(b["saved_bytes"]) >= 0 for b in plans["budgets"])
    except (KeyError, TypeError, ValueError):
        return False


def read_profile(path: str | os.PathLike = DEFAULT_PATH) -> Profile:
    doc = read_json(path, what="profile")
    validate_profile(doc, path)
    profile = Profile(doc=doc, path=Path(path))
    try:
        _ = profile.records  # built once here, so a malformed section fails at read time
    except (KeyError, TypeError, ValueError):
        raise InputFileError(f"profile {str(path)!r} is corrupt (malformed summary, environment, script "
                             "or units); re-create it") from None
    return profile


def write_profile(doc: dict, path: str | os.PathLike = DEFAULT_PATH) -> Path:
    return atomic_write_json(path, doc)
