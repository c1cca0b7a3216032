"""The baseline file: the memory figures ``memadvise check`` compares a run with.

A small JSON document that users commit next to their code, written with sorted keys
and two-space indentation so that a change reads well in a diff::

    {
      "entries": {
        "cpu": {
          "activation_bytes": 36864,
          "by_category_at_peak": {"activation": 16384, "gradient": 20800, ...},
          "environment": {"device_name": "x86_64", "device_type": "cpu", "dtype": "float32",
                          "python": "3.11.7", "torch": "2.13.0"},
          "peak_bytes": 156548,
          "script": {"args": ["--depth", "2"], "path": "sample_models/mlp.py"},
          "step_time_s": 0.0037,
          "updated_at": "2025-01-01T12:00:00+00:00"
        }
      },
      "format": "memadvise-baseline",
      "schema_version": 1
    }

There is one entry per device (``device_key``: ``"cpu"``, ``"cuda:NVIDIA H100 80GB HBM3"``),
so one file serves CPU and GPU runners. Writes are atomic; reads refuse another format
or schema version with one sentence.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from memadvise._errors import InputFileError
from memadvise.schema.io import atomic_write_text, check_header, read_json
from memadvise.schema.profile import Profile

FORMAT = "memadvise-baseline"
SCHEMA_VERSION = 1
DEFAULT_PATH = Path("memadvise-baseline.json")
UPDATE_HINT = "create it with `memadvise check SCRIPT --update-baseline`"


class _CorruptBaseline(InputFileError):
    """A baseline file that exists but cannot be used; ``--update-baseline`` may replace it."""


@dataclass(frozen=True)
class BaselineEntry:
    """The reference figures of one device.

    peak_bytes (int): peak memory of a training step, in bytes.
    activation_bytes (int): bytes held by autograd for backward at the end of forward.
    by_category_at_peak (dict[str, int]): bytes per category (parameter, gradient, ...)
        at the moment of the peak.
    step_time_s (float | None): median step time in seconds; reported, never gated.
    environment (dict[str, str | None]): ``torch``, ``python``, ``device_type``,
        ``device_name`` and the model's ``dtype`` when the figures were taken.
    script (dict): ``path`` (relative to the baseline file's folder, with ``/``) and ``args``.
    updated_at (str): when the entry was written, ISO 8601 in UTC.
    """

    peak_bytes: int
    activation_bytes: int
    by_category_at_peak: dict[str, int] = field(default_factory=dict)
    step_time_s: float | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    script: dict[str, Any] = field(default_factory=dict)
    updated_at: str = ""

    @property
    def device_key(self) -> str:
        return device_key(self.environment.get("device_type"), self.environment.get("device_name"))

    @classmethod
    def from_profile(cls, profile: Profile, *, relative_to: str | os.PathLike) -> "BaselineEntry":
        """The entry for ``profile``; the script path is made relative to ``relative_to``."""
        summary, env, script = profile.records.summary, profile.records.environment, profile.records.script
        return cls(
            peak_bytes=summary.peak_bytes,
            activation_bytes=summary.activation_bytes,
            by_category_at_peak=dict(summary.by_category_at_peak),
            # microsecond resolution is plenty for a figure that is only reported
            step_time_s=round(summary.step_time_s, 6),
            environment={
                "torch": env.torch,
                "python": env.python,
                "device_type": env.device.type,
                "device_name": env.device.name,
                "dtype": (profile.doc.get("model") or {}).get("dtype"),
            },
            script={
                "path": _relative_script_path(script.path, relative_to),
                "args": list(script.args),
            },
            updated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )

    def to_doc(self) -> dict:
        return {
            "peak_bytes": self.peak_bytes,
            "activation_bytes": self.activation_bytes,
            "by_category_at_peak": dict(self.by_category_at_peak),
            "step_time_s": self.step_time_s,
            "environment": dict(self.environment),
            "script": {"path": self.script.get("path"), "args": list(self.script.get("args") or [])},
            "updated_at": self.updated_at,
        }

    def same_figures(self, other: "BaselineEntry") -> bool:
        """Equal memory figures, environment and script: rewriting would change only times."""
        return (
            self.peak_bytes == other.peak_bytes
            and self.activation_bytes == other.activation_bytes
            and self.by_category_at_peak == other.by_category_at_peak
            and self.environment == other.environment
            and self.script == other.script
        )


@dataclass
class Baseline:
    """A loaded baseline file: one entry per device key."""

    entries: dict[str, BaselineEntry] = field(default_factory=dict)
    path: Path | None = None

    def with_entry(self, key: str, entry: BaselineEntry) -> "Baseline":
        return replace(self, entries={**self.entries, key: entry})

    def to_doc(self) -> dict:
        return {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "entries": {key: entry.to_doc() for key, entry in self.entries.items()},
        }


def device_key(device_type: str | None, device_name: str | None) -> str:
    """``"cpu"`` for every CPU (our CPU figures count storage bytes, whatever the processor);
    ``"cuda:<GPU name>"`` on GPUs, whose allocators and kernels differ between models."""
    device_type = device_type or "cpu"
    if device_type == "cpu" or not device_name:
        return device_type
    return f"{device_type}:{device_name}"


def read_baseline(path: str | os.PathLike = DEFAULT_PATH) -> Baseline:
    """Read and validate a baseline file; every problem is one sentence (InputFileError)."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"baseline {str(path)!r} does not exist; {UPDATE_HINT}")
    try:
        doc = read_json(path, what="baseline")
    except InputFileError as exc:
        message = str(exc)
        if "corrupt" in message or "not UTF-8" in message:
            raise _CorruptBaseline(f"{message.removesuffix('; re-create it')}; re-{UPDATE_HINT}") from None
        raise
    check_header(
        doc, path=path, fmt=FORMAT, version=SCHEMA_VERSION, what="baseline", hint=f"re-{UPDATE_HINT}",
    )
    entries = doc.get("entries")
    if not isinstance(entries, dict):
        raise _CorruptBaseline(f"baseline {str(path)!r} is corrupt (no entries); re-{UPDATE_HINT}")
    return Baseline(entries={str(k): _entry_from_doc(v, str(k), path) for k, v in entries.items()}, path=path)


def read_baseline_for_update(path: str | os.PathLike = DEFAULT_PATH) -> tuple[Baseline, str | None]:
    """The baseline to update and a warning: a missing file gives an empty baseline, and so
    does a corrupt one (with a warning, as it is about to be replaced). A file of another
    format or a newer schema is refused: rewriting it would lose what it holds."""
    path = Path(path)
    if not path.exists():
        return Baseline(path=path), None
    try:
        return read_baseline(path), None
    except _CorruptBaseline as exc:
        return Baseline(path=path), f"replacing an unreadable baseline: {exc}"


def write_baseline(baseline: Baseline, path: str | os.PathLike = DEFAULT_PATH) -> Path:
    """Write atomically, keys sorted and indented, so a committed baseline diffs line by line."""
    text = json.dumps(baseline.to_doc(), indent=2, sort_keys=True)
    return atomic_write_text(path, text + "\n")


def _entry_from_doc(doc: Any, key: str, path: Path) -> BaselineEntry:
    def corrupt(why: str) -> _CorruptBaseline:
        return _CorruptBaseline(f"baseline {str(path)!r} is corrupt (entry {key!r} {why}); re-{UPDATE_HINT}")

    if not isinstance(doc, dict):
        raise corrupt("is not an object")
    for name in ("peak_bytes", "activation_bytes"):
        value = doc.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise corrupt(f"has no valid {name}")
    by_category = doc.get("by_category_at_peak", {})
    if not isinstance(by_category, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in by_category.values()
    ):
        raise corrupt("has no valid by_category_at_peak")
    step_time = doc.get("step_time_s")
    if step_time is not None and (not isinstance(step_time, (int, float)) or isinstance(step_time, bool)):
        raise corrupt("has no valid step_time_s")
    environment = doc.get("environment", {})
    script = doc.get("script", {})
    if not isinstance(environment, dict) or not isinstance(script, dict):
        raise corrupt("has no valid environment or script")
    args = script.get("args") or []
    if not isinstance(args, list):
        raise corrupt("has no valid script arguments")
    return BaselineEntry(
        peak_bytes=doc["peak_bytes"],
        activation_bytes=doc["activation_bytes"],
        by_category_at_peak={str(k): v for k, v in by_category.items()},
        step_time_s=float(step_time) if step_time is not None else None,
        environment=dict(environment),
        script={"path": script.get("path"), "args": [str(a) for a in args]},
        updated_at=str(doc.get("updated_at", "")),
    )


def _relative_script_path(script: str, relative_to: str | os.PathLike) -> str:
    """The script's path from the baseline's folder, with ``/``: the same on every runner
    that checks out the repository, wherever the checkout lives."""
    if not script:
        return ""
    base = Path(relative_to).resolve()
    try:
        rel = os.path.relpath(Path(script).resolve(), base)
    except ValueError:  # another drive on Windows
        return Path(script).as_posix()
    return Path(rel).as_posix()
