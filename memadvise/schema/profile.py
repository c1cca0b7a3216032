"""The profile file: what ``memadvise profile`` recorded about a script's training steps.

A JSON document with a header (``format``, ``schema_version``), the environment it was
taken on, per-step figures, per-unit figures and the columnar trace of the
representative step (see ``memadvise.collect.build``). Writes are atomic; reads refuse
another format or version with one sentence.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass
class Profile:
    """A loaded, validated profile document."""

    doc: dict
    path: Path | None = None

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
        return self.environment["device"]["type"]

    def unit_index(self) -> dict[str, int]:
        return {u["name"]: i for i, u in enumerate(self.units)}


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
    return Profile(doc=doc, path=Path(path))


def write_profile(doc: dict, path: str | os.PathLike = DEFAULT_PATH) -> Path:
    return atomic_write_json(path, doc)
