"""The profile file: what ``memadvise profile`` recorded about a script's training steps.

A JSON document with a header (``format``, ``schema_version``), the environment it was
taken on, per-step figures, per-unit figures and the columnar trace of the
representative step (see ``memadvise.collect.build``). Writes are atomic; reads refuse
another format or version with one sentence.
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
    minor_faults_per_step: float | None = None
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


@dataclass(frozen=True)
class StepRecord:
    """One recorded step: its ``index`` in the run, ``peak_bytes`` and the bytes by
    category there, the ``peak_phase`` and ``peak_op``, ``activation_bytes`` held for
    backward, the live bytes at its start (``start_bytes``), its op count ``n_ops`` and
    instrumented ``wall_time_s`` (None in files without them)."""

    index: int
    peak_bytes: int
    activation_bytes: int
    by_category_at_peak: Mapping[str, int] = field(default_factory=dict)
    peak_phase: str | None = None
    peak_op: str | None = None
    start_bytes: int | None = None
    n_ops: int | None = None
    wall_time_s: float | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "StepRecord":
        return cls(index=int(d["index"]), peak_bytes=int(d["peak_bytes"]), activation_bytes=int(d["activation_bytes"]),
                   by_category_at_peak={k: int(v) for k, v in (d.get("by_category_at_peak") or {}).items()},
                   peak_phase=d.get("peak_phase"), peak_op=d.get("peak_op"),
                   start_bytes=_int_or_none(d.get("start_bytes")), n_ops=_int_or_none(d.get("n_ops")),
                   wall_time_s=_float_or_none(d.get("wall_time_s")))


@dataclass(frozen=True)
class Device:
    """The device the step ran on: ``type`` (``cpu`` or ``cuda``), its ``index`` (None:
    the default), ``name`` (the GPU's or the processor's) and ``total_memory_bytes``."""

    type: str
    index: int | None = None
    name: str | None = None
    total_memory_bytes: int | None = None


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
            device=Device(type=str(dev["type"]), index=_int_or_none(dev.get("index")), name=dev.get("name"),
                          total_memory_bytes=_int_or_none(dev.get("total_memory_bytes"))),
            torch_build=d.get("torch_build"),
            platform=d.get("platform"),
            hostname=d.get("hostname"),
            cpu_count=_int_or_none(d.get("cpu_count")),
            cuda_version=cuda.get("version"),
            cuda_capability=(int(cap[0]), int(cap[1])) if cap else None,
        )


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


@dataclass(frozen=True)
class Vary:
    """``memadvise profile --vary NAME=V1,V2``: the size this profile was taken at.
    ``value`` is as recorded (an integer from the command line); ``predicted``: True for
    a profile the scaling model made (``analysis.scaling``), not measured."""

    name: str
    value: float
    predicted: bool = False


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
                   vary=Vary(name=str(v["name"]), value=v["value"], predicted=bool(v.get("predicted", False))) if v else None)


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
