"""memadvise: a memory profiler and activation-recompute advisor for PyTorch training.

Library API (the CLI is a thin layer over it)::

    import memadvise
    memadvise.step()                      # mark a step in scripts without torch.optim
    memadvise.apply_plan(model, plan)     # apply a plan to a model built in code
    p = memadvise.load_profile(".memadvise/profile.json")   # tables for notebooks:
    p.ops, p.units, p.categories          #   pandas DataFrames (memadvise.report.tables)
    memadvise.load_plan(".memadvise/plan.json").plans
"""

from memadvise._version import __version__

__all__ = ["__version__", "step", "apply_plan", "load_profile", "load_plan"]


def step() -> None:
    """Mark the end of a training step (for scripts without a ``torch.optim`` optimizer)."""
    from memadvise.collect.session import step as _step

    _step()


def apply_plan(model, plan, **kwargs):
    """Apply a plan (a plan file path, document, or one plan of it) to a live model."""
    from memadvise.apply.runtime_apply import apply_plan as _apply_plan

    return _apply_plan(model, plan, **kwargs)


def load_profile(path):
    """A profile file as tables: ``.ops`` (one row per recorded op), ``.units``,
    ``.categories`` (live bytes by category over the step) and ``.categories_at_peak()``.
    See ``memadvise.report.tables`` for the columns and their units."""
    from memadvise.report.tables import load_profile as _load_profile

    return _load_profile(path)


def load_plan(path):
    """A plan file as tables: ``.plans`` (one row per ranked plan), ``.actions``, ``.traffic``."""
    from memadvise.report.tables import load_plan as _load_plan

    return _load_plan(path)
