"""Actions a plan may take on a unit, and the closed set of selective-recompute policies.

Unit names come from plan files, which are untrusted input: a name must be a module
path (identifiers and indices joined by dots) and a policy must come from ``POLICIES``,
so no text of a plan reaches generated code except through these checks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from memadvise._errors import InputFileError
from memadvise.schema.ops import SAVE_MATMUL_OPS

CHECKPOINT = "checkpoint"
SELECTIVE = "selective"
OFFLOAD = "offload"
ACTIONS = (CHECKPOINT, SELECTIVE, OFFLOAD)

# Outputs of the policy's ops are kept (CheckpointPolicy.MUST_SAVE); everything else in
# the unit is recomputed.
POLICIES: dict[str, frozenset[str]] = {
    "save-matmul": SAVE_MATMUL_OPS,
}
DEFAULT_POLICY = "save-matmul"

_UNIT_RE = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+)(?:\.(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+))*$")


def valid_unit_name(name: str) -> bool:
    """``""`` (the root model) or dotted identifiers/indices: ``blocks.3.attn``."""
    return isinstance(name, str) and (name == "" or (len(name) <= 500 and bool(_UNIT_RE.match(name))))


@dataclass(frozen=True, order=True)
class Action:
    unit: str
    action: str
    policy: str | None = None

    def __post_init__(self) -> None:
        validate_action(self.unit, self.action, self.policy)

    def to_json(self) -> dict:
        return {"unit": self.unit, "action": self.action, "policy": self.policy}

    @classmethod
    def from_json(cls, obj: object) -> "Action":
        if not isinstance(obj, dict):
            raise InputFileError("a plan action is not an object")
        return cls(unit=obj.get("unit"), action=obj.get("action"), policy=obj.get("policy"))  # type: ignore[arg-type]


def validate_action(unit: object, action: object, policy: object) -> None:
    if not isinstance(unit, str) or not valid_unit_name(unit):
        raise InputFileError(f"plan names unit {str(unit)[:80]!r}, which is not a module path")
    if action not in ACTIONS:
        raise InputFileError(f"plan action {str(action)[:40]!r} is not one of {', '.join(ACTIONS)}")
    if action == SELECTIVE:
        if policy not in POLICIES:
            raise InputFileError(f"selective policy {str(policy)[:40]!r} is not one of {', '.join(POLICIES)}")
    elif policy is not None:
        raise InputFileError(f"action {action!r} takes no policy (got {str(policy)[:40]!r})")


def display_unit(name: str) -> str:
    return name if name else "(root)"
