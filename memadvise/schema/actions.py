"""Actions a plan may take on a unit, op selectors, and the closed set of presets.

Unit names and op selectors come from plan files, which are untrusted input: a name must
be a module path (identifiers and indices joined by dots), an op name an identifier, a
call index a non-negative integer, and a policy must come from ``PRESETS``, so no text
of a plan reaches generated code except through these checks.

An **op selector** addresses an op inside a unit as ``(aten op, k)``: the ``k``-th call
(0-based) of that op in one forward call of the unit, counting every op the selective
checkpoint policy sees (``schema.ops.SAC_IGNORED_OPS`` are skipped); ``k = None`` means
every call. A selective action keeps (``CheckpointPolicy.MUST_SAVE``) the outputs of its
selected ops and recomputes the rest of the unit (``PREFER_RECOMPUTE``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache, total_ordering
from typing import Iterable, Optional

from memadvise._errors import InputFileError
from memadvise.schema.ops import LINEAR_OPS, SAVE_MATMUL_OPS, TORCHTITAN_SAVE_OPS

CHECKPOINT = "checkpoint"
SELECTIVE = "selective"
OFFLOAD = "offload"
ACTIONS = (CHECKPOINT, SELECTIVE, OFFLOAD)

Selector = tuple[str, Optional[int]]  # (aten op overload packet name, k-th call or None: every call)

# Presets: named sets of ops whose outputs are kept, every call of each (k = None).
PRESETS: dict[str, frozenset[str]] = {
    # every matrix product, convolution and fused attention kernel (memadvise 0.1's policy)
    "save-matmul": SAVE_MATMUL_OPS,
    # linear layers only: attention scores and everything pointwise are recomputed, as in
    # Megatron-LM's selective recompute
    "save-linear": LINEAR_OPS,
    # torchtitan's op-level SAC save list (see schema/ops.TORCHTITAN_SAVE_OPS)
    "save-torchtitan": TORCHTITAN_SAVE_OPS,
    # keep nothing: recompute the whole unit, under the selective machinery
    "checkpoint": frozenset(),
}
POLICIES = PRESETS  # the plan file's name for a preset is "policy"
DEFAULT_POLICY = "save-matmul"

_UNIT_RE = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+)(?:\.(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+))*$")
_OP_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
MAX_SELECTORS = 10_000  # per action: far more than any unit's ops in one forward
MAX_CALL_INDEX = 1 << 31


def valid_unit_name(name: str) -> bool:
    """``""`` (the root model) or dotted identifiers/indices: ``blocks.3.attn``."""
    return isinstance(name, str) and (name == "" or (len(name) <= 500 and bool(_UNIT_RE.match(name))))


@lru_cache(maxsize=None)
def preset_keep(name: str) -> tuple[Selector, ...]:
    """The selectors of preset ``name``: every call of each of its ops, sorted."""
    return tuple((op, None) for op in sorted(PRESETS[name]))


def _selector_key(s: Selector) -> tuple[str, int]:
    return (s[0], -1 if s[1] is None else s[1])


def canonical_keep(keep: Iterable) -> tuple[Selector, ...]:
    """Validated, deduplicated, sorted selectors from JSON-like input: ``[["addmm", 0],
    ["mm", null], "bmm"]`` (a bare op name means every call). A selector of every call of
    an op absorbs that op's single-call selectors."""
    if isinstance(keep, tuple):
        try:
            return _canonical_tuple(keep)
        except TypeError:  # unhashable items: validated below, which says what is wrong
            pass
    return _canonical(keep)


@lru_cache(maxsize=1 << 16)
def _canonical_tuple(keep: tuple) -> tuple[Selector, ...]:
    return _canonical(keep)


def _canonical(keep: Iterable) -> tuple[Selector, ...]:
    if isinstance(keep, (str, bytes)) or not isinstance(keep, (list, tuple, set, frozenset)):
        raise InputFileError("a plan action's keep is not a list of [op, k] selectors")
    if len(keep) > MAX_SELECTORS:
        raise InputFileError(f"a plan action keeps more than {MAX_SELECTORS} op selectors")
    out: set[Selector] = set()
    for item in keep:
        if isinstance(item, str):
            op, k = item, None
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            op, k = item
        else:
            raise InputFileError(f"op selector {str(item)[:60]!r} is not [op, k]")
        if not isinstance(op, str) or not _OP_RE.match(op):
            raise InputFileError(f"op selector names {str(op)[:60]!r}, which is not an aten op name")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < MAX_CALL_INDEX):
            raise InputFileError(f"op selector [{op!r}, {str(k)[:20]}]: k is not a call index (0, 1, ... or null)")
        out.add((op, k))
    every = {op for op, k in out if k is None}
    return tuple(sorted((s for s in out if s[1] is None or s[0] not in every), key=_selector_key))


def keep_matches(keep: Iterable[Selector], op: str, k: int) -> bool:
    """Whether the ``k``-th call of ``op`` is kept by selectors ``keep``."""
    keep = keep if isinstance(keep, (set, frozenset)) else set(keep)
    return (op, None) in keep or (op, k) in keep


def preset_of(keep: tuple[Selector, ...]) -> str | None:
    """The preset whose selectors are exactly ``keep`` (canonical), or None."""
    if keep and any(k is not None for _op, k in keep):
        return None
    for name in PRESETS:
        if preset_keep(name) == keep:
            return name
    return None


@total_ordering
@dataclass(frozen=True)
class Action:
    """One action on one unit.

    unit: the module's qualified name (``blocks.3.attn``; ``""`` is the root model).
    action: ``checkpoint``, ``selective`` or ``offload``.
    policy: for ``selective``, the preset whose selectors the action keeps, or None when
        ``keep`` lists them.
    keep: for ``selective`` without a preset, the kept op selectors (canonical: sorted,
        deduplicated). An action whose ``keep`` equals a preset is normalised to the
        preset's name (``keep`` None), so equal choices compare equal.
    """

    unit: str
    action: str
    policy: str | None = None
    keep: tuple[Selector, ...] | None = None

    def __post_init__(self) -> None:
        validate_action(self.unit, self.action, self.policy, self.keep)
        if self.keep is not None:
            keep = canonical_keep(self.keep)
            preset = preset_of(keep)
            if self.policy is not None and preset != self.policy:
                raise InputFileError(f"selective action on {display_unit(self.unit)} names preset {self.policy!r} "
                                     "but keeps other ops")
            object.__setattr__(self, "policy", preset)
            object.__setattr__(self, "keep", None if preset is not None else keep)
        object.__setattr__(self, "_sort_key", (self.unit, self.action, self.policy or "",
                                               tuple(_selector_key(s) for s in self.keep or ())))

    def kept(self) -> tuple[Selector, ...]:
        """The selectors this action keeps (empty for checkpoint and offload)."""
        if self.action != SELECTIVE:
            return ()
        return preset_keep(self.policy) if self.policy is not None else (self.keep or ())

    def label(self) -> str:
        """``checkpoint``, ``selective:save-linear``, ``selective:custom``."""
        if self.action != SELECTIVE:
            return self.action
        return f"{SELECTIVE}:{self.policy or 'custom'}"

    def __lt__(self, other: "Action") -> bool:
        if not isinstance(other, Action):
            return NotImplemented
        return self._sort_key < other._sort_key  # type: ignore[attr-defined]

    def to_json(self) -> dict:
        keep = None if self.keep is None else [[op, k] for op, k in self.keep]
        return {"unit": self.unit, "action": self.action, "policy": self.policy, "keep": keep}

    @classmethod
    def from_json(cls, obj: object) -> "Action":
        """Read a plan action: v2 (``keep`` selectors or a preset ``policy``) or v1
        (selective with a ``policy`` and no ``keep``: the preset's selectors)."""
        if not isinstance(obj, dict):
            raise InputFileError("a plan action is not an object")
        keep = obj.get("keep")
        if keep is not None:
            keep = canonical_keep(keep)
        return cls(unit=obj.get("unit"), action=obj.get("action"), policy=obj.get("policy"), keep=keep)  # type: ignore[arg-type]


def validate_action(unit: object, action: object, policy: object, keep: object = None) -> None:
    if not isinstance(unit, str) or not valid_unit_name(unit):
        raise InputFileError(f"plan names unit {str(unit)[:80]!r}, which is not a module path")
    if action not in ACTIONS:
        raise InputFileError(f"plan action {str(action)[:40]!r} is not one of {', '.join(ACTIONS)}")
    if action == SELECTIVE:
        if policy is None and keep is None:
            raise InputFileError(f"selective action on {display_unit(unit)} names neither a preset (policy) nor ops to keep")
        if policy is not None and policy not in PRESETS:
            raise InputFileError(f"selective policy {str(policy)[:40]!r} is not one of {', '.join(PRESETS)}")
    else:
        if policy is not None:
            raise InputFileError(f"action {action!r} takes no policy (got {str(policy)[:40]!r})")
        if keep is not None:
            raise InputFileError(f"action {action!r} keeps no ops (only selective does)")


def display_unit(name: str) -> str:
    return name if name else "(root)"
