"""The verify result (``memadvise apply --verify``): what the patched script measured
against the unpatched one, and what the plan predicted. Read back by ``memadvise report``
(``--verify FILE``), which refuses anything else with one sentence.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

from memadvise._errors import InputFileError
from memadvise.schema.io import read_json


@dataclass(frozen=True)
class BytesCheck:
    """A byte figure predicted against measured (bytes): ``baseline_measured`` without the
    plan, ``predicted`` and ``measured`` with it; ``error`` = |predicted - measured| /
    measured (None where nothing was measured). For the peak, ``instrument`` names what
    measured it, ``memadvise`` / ``memadvise_baseline`` are memadvise's own readings of
    the patched and original runs, and ``independent_error`` says why the independent
    measurement failed (memadvise's reading then stands in). ``unmeasured``: why
    ``measured`` is not the plan's figure (then ``error`` is None), e.g. activations inside
    a compiled graph, which memadvise's recorder cannot see."""

    predicted: int
    measured: int
    baseline_measured: int
    error: float | None = None
    instrument: str | None = None
    memadvise: int | None = None
    memadvise_baseline: int | None = None
    independent_error: str | None = None
    unmeasured: str | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "BytesCheck":
        def opt_int(key: str) -> int | None:
            return None if d.get(key) is None else int(d[key])

        return cls(predicted=int(d["predicted"]), measured=int(d["measured"]),
                   baseline_measured=int(d["baseline_measured"]),
                   error=None if d.get("error") is None else float(d["error"]), instrument=d.get("instrument"),
                   memadvise=opt_int("memadvise"), memadvise_baseline=opt_int("memadvise_baseline"),
                   independent_error=d.get("independent_error"), unmeasured=d.get("unmeasured"))


@dataclass(frozen=True)
class OverheadCheck:
    """The step time's change (0.25 = 25% slower) predicted against measured; ``error`` in
    points. ``measured_pairs``: each original/patched pair's change (``measured`` is their
    median); ``pairs_range``: their lowest and highest; ``resolved``: True where every pair
    moved the same way, False where they took both signs, None with too few pairs.
    ``noise``: half the pairs' range; ``verdict``: whether the change is resolved, in words."""

    predicted: float
    measured: float
    error: float | None = None
    measured_pairs: tuple[float, ...] = ()
    pairs_range: tuple[float, float] | None = None
    resolved: bool | None = None
    noise: float | None = None
    verdict: str | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "OverheadCheck":
        span = d.get("pairs_range")
        return cls(predicted=float(d["predicted"]), measured=float(d["measured"]),
                   error=None if d.get("error") is None else float(d["error"]),
                   measured_pairs=tuple(float(r) for r in d.get("measured_pairs") or ()),
                   pairs_range=(float(span[0]), float(span[1])) if span else None, resolved=d.get("resolved"),
                   noise=None if d.get("noise") is None else float(d["noise"]), verdict=d.get("verdict"))


@dataclass(frozen=True)
class AppliedUnits:
    """Which of the plan's units the patched run wrapped: ``expected`` units, ``wrapped``
    of them, the ``missing`` ones; ``took_effect``: none is missing; ``said``: in words."""

    expected: int
    wrapped: int
    missing: tuple[str, ...] = ()
    took_effect: bool = True
    said: str = ""

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "AppliedUnits":
        return cls(expected=int(d["expected"]), wrapped=int(d["wrapped"]),
                   missing=tuple(str(u) for u in d.get("missing") or ()),
                   took_effect=bool(d.get("took_effect", True)), said=str(d.get("said", "")))


@dataclass(frozen=True)
class VerifyResult:
    """What ``memadvise apply --verify`` measured for plan ``#plan_rank plan_strategy``:
    the peak and the activations (bytes) and the step time's change, each predicted
    against measured; the step times without and with the plan (seconds); ``passed``:
    the peak's error is within ``tolerance`` (0.05 = 5%) and the plan took effect;
    ``applied``: which units the patched run wrapped (None for traffic-only plans)."""

    plan_rank: int
    plan_strategy: str
    peak: BytesCheck
    activation: BytesCheck
    overhead: OverheadCheck
    baseline_step_time_s: float
    patched_step_time_s: float
    tolerance: float = 0.0
    passed: bool = False
    applied: AppliedUnits | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "VerifyResult":
        rows = d["rows"]
        return cls(plan_rank=int(d["plan"]["rank"]), plan_strategy=str(d["plan"]["strategy"]),
                   peak=BytesCheck.from_json(rows["peak_bytes"]), activation=BytesCheck.from_json(rows["activation_bytes"]),
                   overhead=OverheadCheck.from_json(rows["overhead"]),
                   baseline_step_time_s=float(d["baseline_step_time_s"]),
                   patched_step_time_s=float(d["patched_step_time_s"]),
                   tolerance=float(d.get("tolerance", 0.0)), passed=bool(d.get("passed")),
                   applied=AppliedUnits.from_json(d["applied"]) if d.get("applied") else None)


def read_verify(path: str | os.PathLike) -> VerifyResult:
    """The verify result in ``path``, validated."""
    doc = validate_verify(read_json(path, what="verify result"), str(path))
    try:
        return VerifyResult.from_json(doc)
    except (KeyError, TypeError, ValueError):
        raise InputFileError(f"{str(path)!r} holds a malformed verify result; write it again with "
                             "`memadvise apply --verify --json > FILE`") from None


def validate_verify(doc: object, path: str) -> dict:
    """The verify result of ``memadvise apply --verify --json`` (its ``verify`` key), or
    the result itself; refuses anything else with one sentence."""
    result = doc.get("verify") if isinstance(doc, dict) and "verify" in doc else doc
    try:
        rows = result["rows"]
        for key in ("peak_bytes", "activation_bytes"):
            float(rows[key]["predicted"]), float(rows[key]["measured"]), float(rows[key]["baseline_measured"])
        float(rows["overhead"]["predicted"]), float(rows["overhead"]["measured"])
        float(result["baseline_step_time_s"]), float(result["patched_step_time_s"])
        int(result["plan"]["rank"]), str(result["plan"]["strategy"])
    except (KeyError, TypeError, ValueError):
        raise InputFileError(
            f"{path!r} holds no verify result; write one with `memadvise apply --verify --json > FILE`"
        ) from None
    return result
