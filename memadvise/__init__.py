"""memadvise: a memory profiler and activation-recompute advisor for PyTorch training.

Library API (the CLI is a thin layer over it)::

    import memadvise
    memadvise.step()                      # mark a step in scripts without torch.optim
    memadvise.apply_plan(model, plan)     # apply a plan to a model built in code
"""

from memadvise._version import __version__

__all__ = ["__version__", "step", "apply_plan"]


def step() -> None:
    """Mark the end of a training step (for scripts without a ``torch.optim`` optimizer)."""
    from memadvise.collect.session import step as _step

    _step()


def apply_plan(model, plan, **kwargs):
    """Apply a plan (a plan file path, document, or one plan of it) to a live model."""
    from memadvise.apply.runtime_apply import apply_plan as _apply_plan

    return _apply_plan(model, plan, **kwargs)
