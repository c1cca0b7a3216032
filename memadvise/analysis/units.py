"""The unit tree of a profile: nesting, repeated blocks, and which units a plan may act on."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from memadvise.schema.trace import Trace
from memadvise.schema.actions import POLICIES
from memadvise.schema.categories import Category, Phase
from memadvise.schema.profile import Profile

CONTAINER_TYPES = frozenset({"Sequential", "ModuleList", "ModuleDict"})


@dataclass
class Unit:
    index: int
    name: str
    type: str
    depth: int
    parent: int | None  # nearest called ancestor unit
    children: list[int] = field(default_factory=list)
    record: dict = field(default_factory=dict)


class UnitTree:
    """Units of the root model that were called in the representative step."""

    def __init__(self, profile: Profile, trace: Trace | None = None) -> None:
        self.profile = profile
        self.trace = trace or Trace(profile)
        records = profile.units
        by_name = {u["name"]: i for i, u in enumerate(records) if u.get("in_root")}
        self.units: list[Unit] = []
        for i, u in enumerate(records):
            parent = None
            if u.get("in_root") and u["name"] != "":
                p = u["name"]
                while True:
                    p = p.rsplit(".", 1)[0] if "." in p else ""
                    if p in by_name:
                        parent = by_name[p]
                        break
                    if p == "":
                        break
            self.units.append(Unit(i, u["name"], u["type"], u.get("depth", -1), parent, record=u))
        for unit in self.units:
            if unit.parent is not None:
                self.units[unit.parent].children.append(unit.index)
        self.by_name = by_name
        self._ancestors: dict[int, list[int]] = {}

    # ------------------------------------------------------------------ structure
    def ancestors(self, u: int) -> list[int]:
        out = self._ancestors.get(u)
        if out is None:
            out = []
            p = self.units[u].parent
            while p is not None:
                out.append(p)
                p = self.units[p].parent
            self._ancestors[u] = out
        return out

    def nested(self, a: int, b: int) -> bool:
        return a == b or a in self.ancestors(b) or b in self.ancestors(a)

    @cached_property
    def groups(self) -> list[list[int]]:
        """Repeated blocks: siblings with numeric names (children of a ModuleList or
        Sequential) of the same type, in index order, two or more of them."""
        buckets: dict[tuple[str, str], list[int]] = {}
        for unit in self.units:
            if not unit.record.get("in_root") or unit.name == "":
                continue
            parent_name, _, last = unit.name.rpartition(".")
            if not last.isdigit():
                continue
            buckets.setdefault((parent_name, unit.type), []).append(unit.index)
        groups = [sorted(v, key=lambda i: int(self.units[i].name.rpartition(".")[2])) for v in buckets.values() if len(v) >= 2]
        return sorted(groups, key=lambda g: self.units[g[0]].name)

    @cached_property
    def blocks(self) -> list[int]:
        """The repeated blocks a user means by "each block": members of repeated groups of
        a non-container type, outermost first (a group nested in a block is not listed)."""
        cands = [g for g in self.groups if self.units[g[0]].type not in CONTAINER_TYPES]
        if not cands:
            cands = [g for g in self.groups if self.units[g[0]].children]
        members = [u for g in cands for u in g]
        member_set = set(members)
        out = [u for u in members if not any(a in member_set for a in self.ancestors(u))]
        return sorted(out, key=self._first_call)

    def _first_call(self, u: int) -> int:
        calls = self.trace.calls_of_unit.get(u, [])
        return calls[0] if calls else 1 << 30

    def level(self, depth: int) -> list[int]:
        return [u.index for u in self.units if u.record.get("in_root") and u.depth == depth]

    @cached_property
    def max_depth(self) -> int:
        return max((u.depth for u in self.units if u.record.get("in_root")), default=0)

    # ------------------------------------------------------------------ eligibility
    @cached_property
    def _unsafe_inplace(self) -> set[int]:
        """Units whose forward writes in place into a tensor made before the unit's call
        (not a buffer): a recompute would read the overwritten value."""
        t = self.trace
        bad: set[int] = set()
        written = np.nonzero(t.op_mutates >= 0)[0]
        if not len(written):
            return bad
        owner = t.op_call[written]
        target = t.op_mutates[written]
        fixed = {int(Category.PARAMETER), int(Category.GRADIENT), int(Category.OPTIMIZER_STATE)}
        for op, call, sid in zip(written, owner, target):
            if call < 0 or t.op_phase[op] != Phase.FORWARD or int(t.st_category[sid]) in fixed:
                continue
            alloc = t.st_alloc[sid]
            c = int(call)
            while c >= 0:  # every enclosing call that started after the tensor was made
                if alloc < t.call_start[c]:
                    bad.add(int(t.call_unit[c]))
                c = int(t.call_parent[c])
        return bad

    def checkpoint_problem(self, u: int) -> str | None:
        """Why unit ``u`` cannot be checkpointed, or None."""
        unit = self.units[u]
        rec = unit.record
        if not rec.get("in_root"):
            return "outside the root model"
        if not self.trace.calls_of_unit.get(u):
            return "not called in forward"
        if u in self._unsafe_inplace:
            return "writes in place into a tensor made outside it (recompute would read the new value)"
        return None

    def selective_problem(self, u: int, policy: str) -> str | None:
        problem = self.checkpoint_problem(u)
        if problem:
            return problem
        t = self.trace
        keep = POLICIES[policy]
        for c in t.calls_of_unit.get(u, []):
            lo, hi = int(t.call_start_op[c]), int(t.call_end_op[c])
            kept_sids = set()
            any_kept = False
            for i in range(lo, hi):
                if t.op_name_str(i) in keep:
                    any_kept = True
                    kept_sids.update(np.nonzero(t.st_op == i)[0].tolist())
            if not any_kept:
                return "no matmul/conv/attention op to keep (same as checkpoint)"
            for i in range(lo, hi):
                if int(t.op_mutates[i]) in kept_sids:
                    return "a kept matmul/conv output is modified in place (selective checkpoint refuses that)"
        return None

    def summary(self, u: int) -> dict:
        return self.units[u].record

