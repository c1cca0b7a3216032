"""One error hierarchy; the CLI turns these into one stderr line and an exit code."""

EXIT_OK = 0
EXIT_FAILED = 1  # a check failed: regression, limit exceeded, budget not met
EXIT_USAGE = 2  # bad usage or unreadable input


class MemadviseError(Exception):
    """Base class: a user-facing problem with a one-sentence message."""

    exit_code = EXIT_USAGE


class UsageError(MemadviseError):
    """Malformed arguments (sizes, budgets, option combinations)."""


class InputFileError(MemadviseError):
    """A profile, plan, baseline or script that is missing, corrupt or of another version."""


class ScriptError(MemadviseError):
    """The profiled script failed, stopped early, never stepped, or timed out."""


class PlanRefused(MemadviseError):
    """A plan that cannot be applied safely (changed script, unsafe names, existing backup)."""
