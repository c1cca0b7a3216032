"""The one size parser and formatter of the tool: ``"6GiB"``, ``"6000MB"``, ``"60%"``.

Decimal units (kB, MB, GB, TB) are powers of 1000 and binary units (KiB, MiB, GiB,
TiB) powers of 1024, as in IEC 80000-13; a bare number is bytes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from memadvise._errors import UsageError

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    "k": 1024,  # the shorthand of `ulimit`, `docker --memory` and friends
    "m": 1024**2,
    "g": 1024**3,
    "t": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")
_PCT_RE = re.compile(r"^\s*([+-]?[0-9]*\.?[0-9]+)\s*%\s*$")


def parse_size(text: str, *, what: str = "size") -> int:
    """Parse a memory size into bytes: ``parse_size("6GiB") == 6 * 2**30``.

    Raises UsageError with a one-line message for anything that is not a positive size.
    """
    match = _SIZE_RE.match(str(text))
    if not match:
        raise UsageError(f"{what} {text!r} is not a size; use e.g. 6GiB, 6000MB or 512MiB")
    number, unit = float(match.group(1)), match.group(2).lower()
    if unit not in _UNITS:
        raise UsageError(
            f"{what} {text!r} has an unknown unit {match.group(2)!r}; "
            "use B, kB, MB, GB, KiB, MiB or GiB"
        )
    value = number * _UNITS[unit]
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"{what} {text!r} must be larger than zero")
    return int(round(value))


def parse_percent(text: str, *, what: str = "percentage", allow_zero: bool = False) -> float:
    """Parse ``"5%"`` or ``"5"`` into the fraction 0.05."""
    text = str(text)
    match = _PCT_RE.match(text) or re.match(r"^\s*([+-]?[0-9]*\.?[0-9]+)\s*$", text)
    if not match:
        raise UsageError(f"{what} {text!r} is not a percentage; use e.g. 5% or 2.5")
    value = float(match.group(1))
    if value < 0 or (value == 0 and not allow_zero) or not math.isfinite(value):
        raise UsageError(f"{what} {text!r} must be a positive percentage")
    return value / 100.0


@dataclass(frozen=True)
class Budget:
    """A memory budget: absolute bytes, or a fraction of a reference (the baseline peak)."""

    bytes: int | None = None
    fraction: float | None = None
    text: str = ""

    def resolve(self, reference_bytes: int) -> int:
        if self.bytes is not None:
            return self.bytes
        assert self.fraction is not None
        return int(reference_bytes * self.fraction)


def parse_budget(text: str) -> Budget:
    """``"6GiB"`` → 6 GiB; ``"60%"`` → 60 % of the baseline peak. A bare number is refused
    (``60`` would be 60 bytes, ``0.6`` one byte): the message asks which was meant."""
    bare = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*", str(text))
    if bare:
        value = float(bare.group(1))
        if not math.isfinite(value) or value <= 0:
            raise UsageError(f"budget {text!r} must be larger than zero")
        percent = value * 100 if value <= 1 else value
        raise UsageError(f"budget {str(text).strip()!r} has no unit: {percent:g}% of the baseline peak, or "
                         f"{value:g}MiB? (write {value:g}B for bytes)")
    if "%" in str(text):
        fraction = parse_percent(text, what="budget")
        if fraction > 10:
            raise UsageError(f"budget {text!r} is more than 1000% of the baseline peak")
        return Budget(fraction=fraction, text=str(text).strip())
    return Budget(bytes=parse_size(text, what="budget"), text=str(text).strip())


_BINARY_UNITS = ((1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB"))


def byte_unit(n: float) -> tuple[int, str]:
    """The binary unit ``n`` bytes read best in: ``byte_unit(3 * 2**20) == (2**20, "MiB")``;
    bytes below 1 KiB. What ``format_bytes`` and the charts' axes both use."""
    n = abs(float(n))
    for scale, unit in _BINARY_UNITS:
        if n >= scale:
            return scale, unit
    return 1, "B"


def format_bytes(n: float | int | None, *, signed: bool = False) -> str:
    """Format bytes with binary units: ``format_bytes(327680000) == "312.5 MiB"``."""
    if n is None:
        return "-"
    sign = ""
    if signed:
        sign = "+" if n > 0 else ("-" if n < 0 else "±")
    elif n < 0:
        sign = "-"
    n = abs(float(n))
    scale, unit = byte_unit(n)
    return f"{sign}{int(n)} B" if scale == 1 else f"{sign}{n / scale:.1f} {unit}"


def format_percent(fraction: float | None, *, signed: bool = True) -> str:
    if fraction is None or not math.isfinite(fraction):
        return "-"
    return f"{fraction * 100:+.1f}%" if signed else f"{fraction * 100:.1f}%"
