"""``memadvise.apply_plan``: the library form of ``memadvise apply``."""

from __future__ import annotations

import os
from typing import Any, Sequence

from memadvise._errors import InputFileError, UsageError
from memadvise.schema.actions import SELECTIVE, Action, Selector
from memadvise.apply.runtime import memadvise_apply


def runtime_keep(keep: tuple[Selector, ...]) -> list:
    """Selectors as ``memadvise_apply`` takes them: an op name for every call of the op,
    an ``(op, k)`` pair for its k-th call."""
    return [op if k is None else (op, k) for op, k in keep]


def plan_name(action: Action) -> str | None:
    """The preset ``_memadvise_plan`` names after "selective:" (or "custom")."""
    label = action.label()
    return label.split(":", 1)[1] if ":" in label else None


def runtime_actions(actions: Sequence[Action], restore: dict[str, bool] | None = None) -> list[tuple]:
    """Plan actions as the tuples ``memadvise_apply`` takes (names already validated)."""
    out = []
    for a in actions:
        keep = runtime_keep(a.kept()) if a.action == SELECTIVE else None
        item = (a.unit, a.action, keep, bool((restore or {}).get(a.unit, False)))
        name = plan_name(a)
        out.append(item + ((name,) if name else ()))
    return out


def _updates_buffers(module: Any) -> bool:
    """BatchNorm-like modules update running statistics in every training forward."""
    import torch

    norms = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.modules.instancenorm._InstanceNorm)
    return any(isinstance(m, norms) and m.track_running_stats and m.training for m in module.modules())


def apply_plan(model: Any, plan: Any, *, rank: int | None = None, strategy: str | None = None) -> Any:
    """Apply a plan to ``model`` in place, as the patch would, and return ``model``.

    ``plan``: a plan file path, a plan document (``suggest --json``), one entry of its
    ``plans`` list, or a list of ``Action``. For a document, ``rank`` (default 1) or
    ``strategy`` picks the plan.

    Example::

        model = build_model()
        memadvise.apply_plan(model, ".memadvise/plan.json", rank=1)
    """
    from memadvise.schema.plan import PlanEntry, PlanFile, read_plan, select_entry

    if isinstance(plan, (str, os.PathLike)):
        plan = read_plan(plan)
    if isinstance(plan, dict) and "plans" in plan:
        plan = PlanFile.from_doc(plan, path="<document>")
    if isinstance(plan, PlanFile):
        plan = select_entry(plan, rank=rank, strategy=strategy)
    if isinstance(plan, PlanEntry):
        actions, restore = list(plan.actions), {u: True for u in plan.restore_buffers}
    elif isinstance(plan, dict):
        actions = [Action.from_json(a) for a in plan.get("actions", [])]
        restore = {a["unit"]: bool(a.get("restore_buffers", False)) for a in plan.get("actions", []) if isinstance(a, dict)}
    elif isinstance(plan, (list, tuple)) and all(isinstance(a, Action) for a in plan):
        actions, restore = list(plan), {}
    else:
        raise UsageError("apply_plan takes a plan file, a plan document, one plan, or a list of Action")
    for a in actions:
        try:
            module = model.get_submodule(a.unit)
        except AttributeError:
            raise InputFileError(f"the model has no submodule {a.unit!r}; was the plan made for another model?") from None
        if getattr(module, "_memadvise_plan", None) is not None:
            raise UsageError(f"{a.unit or 'the model'} already has a plan applied")
        restore[a.unit] = restore.get(a.unit, False) or _updates_buffers(module)
    return memadvise_apply(model, runtime_actions(actions, restore))
