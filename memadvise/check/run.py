"""One ``memadvise check``: read the baseline, get this run's figures, compare, and update
the baseline when asked. The command (``cli/check.py``) parses options, supplies the
profile (read from a file or recorded) and renders the result; everything between is here.

Example::

    request = CheckRequest.parse(baseline=None, tolerance="5%", max_peak=None, metric="all",
                                 update_baseline=False)
    result, context = run_check(request, lambda: read_profile("profile.json"))
    print(result.verdict)
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from memadvise._errors import InputFileError, UsageError
from memadvise.check.gate import CheckResult, Limits, baseline_changes, compare
from memadvise.check.junit import junit_xml
from memadvise.schema.baseline import (
    DEFAULT_PATH, Baseline, BaselineEntry, read_baseline, read_baseline_for_update, write_baseline,
)
from memadvise.schema.io import append_text, atomic_write_text
from memadvise.schema.profile import Profile


@dataclass
class CheckContext:
    """Where the figures came from and what ``--update-baseline`` did.

    baseline_path (str): the baseline file.
    profile_path (str | None): the profile the figures were read from.
    updated (bool | None): None without ``--update-baseline``; else whether the file changed.
    changes (list[str]): what the update changed, one phrase per figure.
    update_command (str | None): the command that records this run as the new baseline.
    """

    baseline_path: str
    profile_path: str | None = None
    updated: bool | None = None
    changes: list[str] = field(default_factory=list)
    update_command: str | None = None


@dataclass(frozen=True)
class CheckRequest:
    """What to check, as validated from the command line.

    limits (Limits): tolerance, gated metrics and ``--max-peak``.
    baseline_path (Path): the baseline file (``memadvise-baseline.json`` unless given).
    baseline_given (bool): ``--baseline`` was given (then the file must exist).
    update_baseline (bool): write this run's figures into the baseline.
    command (tuple[str, ...]): how the figures are obtained, as the user would type it
        (``["train.py"]`` or ``["--profile", "p.json"]``), for the update hint.
    script_args (tuple[str, ...]): the script's arguments, for the update hint.
    """

    limits: Limits
    baseline_path: Path = DEFAULT_PATH
    baseline_given: bool = False
    update_baseline: bool = False
    command: tuple[str, ...] = ()
    script_args: tuple[str, ...] = ()

    @classmethod
    def parse(cls, *, script: Path | None = None, script_args: list[str] | None = None,
              profile_path: Path | None = None, baseline: Path | None = None, tolerance: str = "5%",
              max_peak: str | None = None, metric: str = "all", update_baseline: bool = False,
              junit: Path | None = None) -> "CheckRequest":
        """Validate the options; a mistake raises UsageError (one line)."""
        limits = Limits.parse(tolerance=tolerance, max_peak=max_peak, metric=metric)
        if profile_path is not None and (script is not None or script_args):
            raise UsageError("give SCRIPT to profile or --profile to read, not both")
        if profile_path is None and script is None:
            raise UsageError("give the SCRIPT to profile, or --profile PATH to read an existing profile")
        path = baseline if baseline is not None else DEFAULT_PATH
        if junit is not None and junit.resolve() == path.resolve():
            raise UsageError("--junit would overwrite the baseline file")
        command = ("--profile", str(profile_path)) if profile_path is not None else (str(script),)
        return cls(limits=limits, baseline_path=path, baseline_given=baseline is not None,
                   update_baseline=update_baseline, command=command, script_args=tuple(script_args or ()))


def read_request_baseline(request: CheckRequest) -> tuple[Baseline | None, list[str]]:
    """The baseline to compare with (None: only ``--max-peak`` applies) and warnings.
    Read before anything runs: a missing or corrupt baseline fails in a second."""
    path = request.baseline_path
    if request.update_baseline:
        baseline, warning = read_baseline_for_update(path)
        return baseline, [warning] if warning else []
    if not request.baseline_given and request.limits.max_peak_bytes is not None and not path.exists():
        return None, []  # an absolute limit needs no baseline
    return read_baseline(path), []


def run_check(request: CheckRequest, get_profile: Callable[[], Profile]) -> tuple[CheckResult, CheckContext]:
    """Read the baseline, then the figures of ``get_profile()``, and compare them; with
    ``--update-baseline``, write the new figures (only when they changed)."""
    baseline, warnings = read_request_baseline(request)
    profile = get_profile()
    path = request.baseline_path
    limits = request.limits

    current = BaselineEntry.from_profile(profile, relative_to=path.parent)
    key = current.device_key
    entry = baseline.entries.get(key) if baseline is not None else None
    if baseline is not None and entry is None and not request.update_baseline:
        others = ", ".join(sorted(baseline.entries)) or "none"
        if limits.max_peak_bytes is None:
            raise InputFileError(
                f"baseline {str(path)!r} has no entry for device {key!r} (it has: {others}); "
                "add one with `memadvise check SCRIPT --update-baseline` on this device"
            )
        warnings.append(f"baseline {str(path)!r} has no entry for device {key!r}; only --max-peak is checked")

    result = compare(current, entry, limits, gate_baseline=not request.update_baseline)
    result.warnings[:0] = warnings
    context = CheckContext(baseline_path=str(path), profile_path=str(profile.path) if profile.path else None)
    if request.update_baseline:
        assert baseline is not None
        context.updated = entry is None or not entry.same_figures(current)
        if context.updated:
            context.changes = baseline_changes(entry, current)
            write_baseline(baseline.with_entry(key, current), path)
        if not result.gated_rows:  # nothing was checked: the verdict is what the update did
            result.verdict = update_line(result, context)
    else:
        command = ["memadvise", "check", *request.command, "--baseline", str(path), "--update-baseline"]
        command += ["--", *request.script_args] if request.script_args else []
        context.update_command = shlex.join(command)
    return result, context


def update_line(result: CheckResult, context: CheckContext) -> str:
    """What ``--update-baseline`` did, in one line."""
    where = f"baseline {context.baseline_path} ({result.device_key})"
    if context.updated:
        return f"{where} updated" + (":" if context.changes else "")
    return f"{where} is up to date (no memory change)"


def write_junit(path: Path, result: CheckResult, *, time_s: float) -> None:
    """``--junit PATH``: the result as JUnit XML, written atomically."""
    atomic_write_text(path, junit_xml(result, time_s=time_s))


def append_step_summary(path: str, markdown: str) -> str | None:
    """Append the Markdown summary to ``$GITHUB_STEP_SUMMARY``; a warning when it cannot
    be written (the check's verdict does not depend on it)."""
    try:
        append_text(path, markdown)
    except InputFileError as exc:
        return f"$GITHUB_STEP_SUMMARY: {exc}"
    return None
