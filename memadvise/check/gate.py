"""The verdict of ``memadvise check``: this run's figures against a baseline entry and limits.

Pure comparison: no files, no torch, no rich. Memory is gated (peak and activation
bytes, against the baseline within a tolerance, and peak against an absolute limit);
memory by category and the step time are reported but never gated — step time is too
noisy on shared CI runners to fail a build on.

Example::

    limits = Limits.parse(tolerance="5%", max_peak="300MB", metric="all")
    result = compare(current_entry, baseline_entry, limits)
    print(result.verdict)   # peak 312.4 MiB exceeds baseline 296.0 MiB by 5.5% (tolerance 5%)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from memadvise._errors import UsageError
from memadvise.schema.baseline import BaselineEntry
from memadvise.sizes import format_bytes, format_percent, parse_percent, parse_size

METRICS = ("peak", "activation")  # the gated metrics, in table order
METRIC_CHOICES = ("peak", "activation", "all")
_FIELD = {"peak": "peak_bytes", "activation": "activation_bytes"}

PASS, FAIL, INFO = "pass", "fail", "info"


@dataclass(frozen=True)
class Limits:
    """What a check enforces.

    tolerance (float): allowed growth over the baseline, as a fraction (0.05 for 5%).
    tolerance_text (str): the tolerance as the user wrote it, for messages.
    metrics (tuple[str, ...]): metrics gated against the baseline (``peak``, ``activation``).
    max_peak_bytes (int | None): absolute peak limit in bytes; needs no baseline.
    max_peak_text (str | None): that limit as the user wrote it.
    """

    tolerance: float = 0.05
    tolerance_text: str = "5%"
    metrics: tuple[str, ...] = METRICS
    max_peak_bytes: int | None = None
    max_peak_text: str | None = None

    @classmethod
    def parse(cls, *, tolerance: str = "5%", max_peak: str | None = None, metric: str = "all") -> "Limits":
        """Validate the command-line spelling; a malformed value raises UsageError (one line)."""
        fraction = parse_percent(tolerance, what="--tolerance", allow_zero=True)
        text = str(tolerance).strip()
        if not text.endswith("%"):
            text += "%"
        if metric not in METRIC_CHOICES:
            raise UsageError(f"--metric {metric!r} is not one of {', '.join(METRIC_CHOICES)}")
        metrics = METRICS if metric == "all" else (metric,)
        max_bytes = parse_size(max_peak, what="--max-peak") if max_peak is not None else None
        return cls(
            tolerance=fraction, tolerance_text=text, metrics=metrics,
            max_peak_bytes=max_bytes, max_peak_text=str(max_peak).strip() if max_peak is not None else None,
        )


@dataclass(frozen=True)
class CheckRow:
    """One line of the check table.

    metric (str): ``peak``, ``activation``, a category (``parameter``, ``gradient``, ...)
        or ``step_time``.
    check (str): ``baseline`` (gated: at most baseline × (1 + tolerance)), ``max_peak``
        (gated: at most an absolute limit), ``info`` (reported only) or ``category``
        (reported only: the bytes of one category at the moment of the peak).
    unit (str): ``bytes`` or ``s`` (seconds), the unit of baseline, current and limit.
    baseline (float | None): the baseline entry's value; None without an entry.
    current (float): this run's value.
    change (float | None): (current − baseline) / baseline; None without a baseline or
        when the baseline is 0.
    limit (int | None): the largest passing value, in bytes; None for ``info`` rows.
    limit_text (str | None): how the limit was given (``+5%``, ``300MB``).
    status (str): ``pass``, ``fail`` or ``info``.
    message (str): a one-line sentence about this row (the reason when it fails).
    """

    metric: str
    check: str
    unit: str
    baseline: float | None
    current: float
    change: float | None
    limit: int | None
    limit_text: str | None
    status: str
    message: str = ""

    @property
    def gated(self) -> bool:
        return self.status != INFO

    @property
    def test_name(self) -> str:
        """A stable name for JUnit and summaries: ``peak``, ``activation``, ``max_peak``."""
        return "max_peak" if self.check == "max_peak" else self.metric


@dataclass
class CheckResult:
    """The outcome of one check.

    verdict (str): one line, the failures first (all of them, ``; ``-separated).
    passed (bool): no gated row failed.
    rows (list[CheckRow]): gated rows first, then the reported-only ones.
    warnings (list[str]): environment mismatches and the like; never fail the check.
    notes (list[str]): hints (e.g. memory dropped: update the baseline to lock it in).
    device_key (str): the baseline entry compared with (``cpu``, ``cuda:<GPU name>``).
    """

    verdict: str
    passed: bool
    rows: list[CheckRow]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    device_key: str = ""

    @property
    def gated_rows(self) -> list[CheckRow]:
        return [r for r in self.rows if r.gated]

    @property
    def failures(self) -> list[CheckRow]:
        return [r for r in self.rows if r.status == FAIL]

    def to_json(self) -> dict:
        return {
            "verdict": self.verdict,
            "passed": self.passed,
            "device": self.device_key,
            "rows": [asdict(r) for r in self.rows],
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }


def compare(
    current: BaselineEntry,
    baseline: BaselineEntry | None,
    limits: Limits,
    *,
    gate_baseline: bool = True,
) -> CheckResult:
    """Compare ``current`` with ``baseline`` (None: only ``limits.max_peak_bytes`` applies).

    ``gate_baseline=False`` reports the change against the baseline without gating it
    (``--update-baseline``: the figures are about to become the baseline).
    """
    rows: list[CheckRow] = []
    for metric in METRICS:
        value = getattr(current, _FIELD[metric])
        if baseline is not None and gate_baseline and metric in limits.metrics:
            rows.append(_tolerance_row(metric, getattr(baseline, _FIELD[metric]), value, limits))
        if metric == "peak" and limits.max_peak_bytes is not None:
            rows.append(_max_peak_row(value, limits))
    for metric in METRICS:
        # reported when not gated against the baseline, unless a --max-peak row shows it already
        shown = [r for r in rows if r.metric == metric]
        if not any(r.check == "baseline" for r in shown) and (baseline is not None or not shown):
            ref = getattr(baseline, _FIELD[metric]) if baseline is not None else None
            rows.append(_info_row(metric, "bytes", ref, getattr(current, _FIELD[metric])))
    names = list(current.by_category_at_peak)
    if baseline is not None:
        names += [n for n in baseline.by_category_at_peak if n not in current.by_category_at_peak]
    for name in names:
        ref = baseline.by_category_at_peak.get(name) if baseline is not None else None
        rows.append(_info_row(name, "bytes", ref, current.by_category_at_peak.get(name, 0), check="category"))
    if current.step_time_s is not None:
        ref_time = baseline.step_time_s if baseline is not None else None
        rows.append(_info_row("step_time", "s", ref_time, current.step_time_s))
    rows.sort(key=lambda r: 0 if r.gated else 1)  # stable: gated rows first, in metric order

    failures = [r for r in rows if r.status == FAIL]
    result = CheckResult(
        verdict="; ".join(r.message for r in failures) if failures else _pass_verdict(rows, limits),
        passed=not failures,
        rows=rows,
        device_key=current.device_key,
    )
    if baseline is not None:
        result.warnings.extend(environment_warnings(current, baseline))
        if gate_baseline:
            for row in rows:
                if row.check == "baseline" and row.change is not None and row.change < -limits.tolerance:
                    result.notes.append(
                        f"{row.metric} dropped {format_percent(-row.change, signed=False)} below the baseline; "
                        "run with --update-baseline to lock in the improvement"
                    )
    return result


def environment_warnings(current: BaselineEntry, baseline: BaselineEntry) -> list[str]:
    """Differences that make the comparison less meaningful: device, torch, dtype, script."""
    warnings = []
    cur, ref = current.environment, baseline.environment
    if (cur.get("device_type"), cur.get("device_name")) != (ref.get("device_type"), ref.get("device_name")):
        warnings.append(f"baseline was taken on {_device(ref)}, this run is on {_device(cur)}")
    if cur.get("torch") != ref.get("torch"):
        warnings.append(
            f"baseline was taken with torch {ref.get('torch')}, this run uses torch {cur.get('torch')}; "
            "allocations may differ between versions"
        )
    if cur.get("dtype") != ref.get("dtype"):
        warnings.append(f"model dtype changed from {ref.get('dtype')} to {cur.get('dtype')}")
    if _command(current.script) != _command(baseline.script):
        warnings.append(
            f"baseline was taken on `{_command(baseline.script)}`, this run is `{_command(current.script)}`"
        )
    return warnings


def baseline_changes(old: BaselineEntry | None, new: BaselineEntry) -> list[str]:
    """What ``--update-baseline`` changes in an entry, one short phrase per figure."""
    if old is None:
        return [
            f"new entry: peak {format_bytes(new.peak_bytes)}, activation {format_bytes(new.activation_bytes)}"
        ]
    changes = []
    for metric in METRICS:
        a, b = getattr(old, _FIELD[metric]), getattr(new, _FIELD[metric])
        if a != b:
            changes.append(f"{metric} {format_bytes(a)} → {format_bytes(b)} ({format_percent(_change(a, b))})")
    for name in sorted(set(old.by_category_at_peak) | set(new.by_category_at_peak)):
        a, b = old.by_category_at_peak.get(name, 0), new.by_category_at_peak.get(name, 0)
        if a != b:
            changes.append(f"{name} at peak {format_bytes(a)} → {format_bytes(b)}")
    for key in sorted(set(old.environment) | set(new.environment)):
        if old.environment.get(key) != new.environment.get(key):
            changes.append(f"{key} {old.environment.get(key)} → {new.environment.get(key)}")
    if old.script != new.script:
        changes.append(f"script `{_command(old.script)}` → `{_command(new.script)}`")
    return changes


def limit_failure(metric: str, current_bytes: int, limit_name: str, limit_bytes: int, limit_text: str) -> str | None:
    """``peak 312.4 MiB exceeds max_peak 300.0 MiB``, or None within the limit.

    The limit is shown as the user wrote it too when that reads differently (``300MB``).
    """
    if current_bytes <= limit_bytes:
        return None
    shown = format_bytes(limit_bytes)
    if _squash(limit_text) != _squash(shown):
        shown += f" ({limit_text})"
    return f"{metric} {format_bytes(current_bytes)} exceeds {limit_name} {shown}"


def _tolerance_row(metric: str, ref: int, value: int, limits: Limits) -> CheckRow:
    # The largest passing value, in whole bytes: exactly at the tolerance passes.
    limit = int(ref * (1 + limits.tolerance))
    change = _change(ref, value)
    status = FAIL if value > limit else PASS
    if status == FAIL:
        by = f" by {format_percent(change, signed=False)}" if change is not None else ""
        message = (
            f"{metric} {format_bytes(value)} exceeds baseline {format_bytes(ref)}{by} "
            f"(tolerance {limits.tolerance_text})"
        )
    else:
        message = f"{metric} {format_bytes(value)} ({format_percent(change)}) within {limits.tolerance_text} of baseline"
    return CheckRow(
        metric=metric, check="baseline", unit="bytes", baseline=ref, current=value, change=change,
        limit=limit, limit_text=f"+{limits.tolerance_text}", status=status, message=message,
    )


def _max_peak_row(value: int, limits: Limits) -> CheckRow:
    assert limits.max_peak_bytes is not None and limits.max_peak_text is not None
    failure = limit_failure("peak", value, "--max-peak", limits.max_peak_bytes, limits.max_peak_text)
    return CheckRow(
        metric="peak", check="max_peak", unit="bytes", baseline=None, current=value, change=None,
        limit=limits.max_peak_bytes, limit_text=limits.max_peak_text, status=FAIL if failure else PASS,
        message=failure or f"peak {format_bytes(value)} within --max-peak {limits.max_peak_text}",
    )


def _info_row(metric: str, unit: str, ref: float | None, value: float, *, check: str = "info") -> CheckRow:
    return CheckRow(
        metric=metric, check=check, unit=unit, baseline=ref, current=value,
        change=_change(ref, value) if ref is not None else None, limit=None, limit_text=None, status=INFO,
    )


def _pass_verdict(rows: list[CheckRow], limits: Limits) -> str:
    gated = [r for r in rows if r.gated]
    if not gated:
        return "nothing gated: no baseline entry and no --max-peak"
    parts = []
    baseline_rows = [r for r in gated if r.check == "baseline"]
    if baseline_rows:
        figures = ", ".join(
            f"{r.metric} {format_bytes(r.current)} ({format_percent(r.change)})" for r in baseline_rows
        )
        parts.append(f"{figures} within {limits.tolerance_text} of baseline")
    for r in gated:
        if r.check == "max_peak":
            parts.append(r.message)
    return "; ".join(parts)


def _change(ref: float | None, value: float) -> float | None:
    if ref is None or ref == 0:
        return None
    return (value - ref) / ref


def _device(env: dict) -> str:
    name = env.get("device_name")
    return f"{env.get('device_type')} ({name})" if name else str(env.get("device_type"))


def _command(script: dict) -> str:
    return " ".join([str(script.get("path") or "?"), *[str(a) for a in script.get("args") or []]])


def _squash(text: str) -> str:
    return text.replace(" ", "").replace(".0", "").lower()
