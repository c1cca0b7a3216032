"""The verify result (``memadvise apply --verify``): what the patched script measured
against the unpatched one, and what the plan predicted. Read back by ``memadvise report``
(``--verify FILE``), which refuses anything else with one sentence.
"""

from __future__ import annotations

import os

from memadvise._errors import InputFileError
from memadvise.schema.io import read_json


def read_verify(path: str | os.PathLike) -> dict:
    """The verify result in ``path``, validated."""
    return validate_verify(read_json(path, what="verify result"), str(path))


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
