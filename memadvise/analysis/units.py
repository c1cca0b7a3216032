"""The unit tree of a profile: nesting, repeated blocks, and which units a plan may act on."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from memadvise.schema.trace import Trace
from memadvise.schema.actions import PRESETS, Selector, display_unit, preset_keep
from memadvise.schema.ops import SAC_IGNORED_OPS, VIEW_OPS
from memadvise.schema.categories import Category, Phase
from memadvise.schema.profile import Profile, UnitRecord

CONTAINER_TYPES = frozenset({"Sequential", "ModuleList", "ModuleDict"})


@dataclass
class CallOps:
    """The ops of one forward call of a unit, in order, as a selective policy sees them.

    index: the ops' positions in the trace. name: aten op names. k: the op's call count
        within this unit call (0-based; -1 for ops the policy never sees, ``detach``).
    out_bytes: bytes of the new storages each op made on the training device.
    saved: whether autograd saved one of those storages for backward (in the forward).
    dur_us: each op's measured time in microseconds, scaled to an uninstrumented step.
    mutated: whether an op of the call writes one of those storages in place.
    """

    call: int
    index: np.ndarray
    name: list[str]
    k: np.ndarray
    out_bytes: np.ndarray
    saved: np.ndarray
    dur_us: np.ndarray
    mutated: np.ndarray  # bool: an output of the op is modified in place later in the call
    _lookup: dict = field(default_factory=dict, repr=False, compare=False)  # selector_mask's tables

    def selectors(self) -> list[Selector]:
        return [(n, int(k)) for n, k in zip(self.name, self.k) if k >= 0]

    def kept_mask(self, keep) -> np.ndarray:
        """Which ops the selectors ``keep`` keep (ops the policy never sees never are)."""
        return selector_mask(self.name, self.k, keep, self._lookup)

    def counts(self) -> dict[str, int]:
        """Calls of each op in this forward call."""
        out: dict[str, int] = {}
        for n, k in zip(self.name, self.k):
            if k >= 0:
                out[n] = max(out.get(n, 0), int(k) + 1)
        return out


def selector_mask(names: list[str], ks: np.ndarray, keep, cache: dict) -> np.ndarray:
    """Which of the ops (``names``, ``ks``) the selectors ``keep`` keep; ``cache`` holds the
    lookup tables between calls (O(selectors) per call, not O(ops))."""
    table = cache.get("_selector_table")
    if table is None:
        pos: dict[tuple[str, int], int] = {}
        by_name: dict[str, list[int]] = {}
        for i, (n, k) in enumerate(zip(names, ks.tolist())):
            if k >= 0:
                pos[(n, k)] = i
                by_name.setdefault(n, []).append(i)
        table = cache["_selector_table"] = (pos, {n: np.asarray(v, dtype=np.int64) for n, v in by_name.items()})
    pos, by_name = table
    mask = np.zeros(len(names), dtype=bool)
    for op, k in keep:
        if k is None:
            idx = by_name.get(op)
            if idx is not None:
                mask[idx] = True
        else:
            i = pos.get((op, k))
            if i is not None:
                mask[i] = True
    return mask


def call_op_selectors(trace: Trace, call: int) -> tuple[list[str], np.ndarray]:
    """Op names and per-op call counts k of ops [start_op, end_op) of ``call``."""
    lo, hi = int(trace.call_start_op[call]), int(trace.call_end_op[call])
    names = [trace.strings[i] for i in trace.op_name[lo:hi].tolist()]
    ks = np.empty(len(names), dtype=np.int64)
    seen: dict[str, int] = {}
    for j, n in enumerate(names):
        if n in SAC_IGNORED_OPS:
            ks[j] = -1
            continue
        k = seen.get(n, 0)
        ks[j] = k
        seen[n] = k + 1
    return names, ks


class TraceIndex:
    """Storages ordered by the op that made them, forward saves by their call: per-call
    lookups are binary searches, not scans of the whole step."""

    def __init__(self, trace: Trace) -> None:
        self.st_by_op = np.argsort(trace.st_op, kind="stable")
        self.st_op_sorted = trace.st_op[self.st_by_op]
        fwd = np.nonzero(trace.forward_saves)[0]
        self.fwd_by_call = fwd[np.argsort(trace.sv_call[fwd], kind="stable")]
        self.fwd_call_sorted = trace.sv_call[self.fwd_by_call]
        self.trace = trace

    def made_by_ops(self, lo: int, hi: int) -> np.ndarray:
        """Storages made by ops [lo, hi), ascending."""
        a, b = np.searchsorted(self.st_op_sorted, [lo, hi], side="left")
        return np.sort(self.st_by_op[a:b])

    def made_by(self, ops: np.ndarray) -> np.ndarray:
        """Storages made by any of ``ops`` (ascending op indices), ascending."""
        if not len(ops):
            return np.zeros(0, dtype=np.int64)
        lo = np.searchsorted(self.st_op_sorted, ops, side="left")
        hi = np.searchsorted(self.st_op_sorted, ops, side="right")
        return np.sort(np.concatenate([self.st_by_op[a:b] for a, b in zip(lo, hi)]))

    def forward_saves_of(self, call: int) -> np.ndarray:
        """Forward saves packed inside ``call`` or the calls it makes, ascending."""
        a = np.searchsorted(self.fwd_call_sorted, call, side="left")
        b = np.searchsorted(self.fwd_call_sorted, self.trace.call_subtree_end[call], side="left")
        return np.sort(self.fwd_by_call[a:b])


def call_ops(trace: Trace, call: int, *, time_scale: float = 1.0, index: TraceIndex | None = None) -> CallOps:
    index = index or TraceIndex(trace)
    lo, hi = int(trace.call_start_op[call]), int(trace.call_end_op[call])
    names, ks = call_op_selectors(trace, call)
    made = index.made_by_ops(lo, hi)
    made = made[trace.on_device[made]]
    out_bytes = np.zeros(hi - lo, dtype=np.int64)
    np.add.at(out_bytes, trace.st_op[made] - lo, trace.st_bytes[made])
    saved_sids = np.unique(trace.sv_storage[index.forward_saves_of(call)])
    saved = np.zeros(hi - lo, dtype=bool)
    sm = made[np.isin(made, saved_sids)]
    saved[trace.st_op[sm] - lo] = True
    # ops whose output an op of this call writes in place: selective checkpoint refuses
    # to keep those (a cached output must not change)
    mut = trace.op_mutates[lo:hi]
    mut = mut[mut >= 0]
    mutated = np.zeros(hi - lo, dtype=bool)
    by = trace.st_op[mut]
    by = by[(by >= lo) & (by < hi)]
    mutated[by - lo] = True
    return CallOps(call, np.arange(lo, hi), names, ks, out_bytes, saved, trace.op_dur_us[lo:hi] * time_scale, mutated)


@dataclass
class Unit:
    index: int
    name: str
    type: str
    depth: int
    parent: int | None  # nearest called ancestor unit
    record: UnitRecord  # the profile's record of the module
    children: list[int] = field(default_factory=list)


class UnitTree:
    """Units of the root model that were called in the representative step."""

    def __init__(self, profile: Profile, trace: Trace | None = None) -> None:
        self.profile = profile
        self.trace = trace or Trace(profile)
        records = profile.records.units
        by_name = {u.name: i for i, u in enumerate(records) if u.in_root}
        self.units: list[Unit] = []
        for i, u in enumerate(records):
            parent = None
            if u.in_root and u.name != "":
                p = u.name
                while True:
                    p = p.rsplit(".", 1)[0] if "." in p else ""
                    if p in by_name:
                        parent = by_name[p]
                        break
                    if p == "":
                        break
            self.units.append(Unit(i, u.name, u.type, u.depth, parent, record=u))
        for unit in self.units:
            if unit.parent is not None:
                self.units[unit.parent].children.append(unit.index)
        self.by_name = by_name
        self._ancestors: dict[int, list[int]] = {}
        self._call_ops: dict[int, list[CallOps]] = {}
        self._keepable: dict[int, list[Selector]] = {}
        self._index: TraceIndex | None = None

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
            if not unit.record.in_root or unit.name == "":
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
        return [u.index for u in self.units if u.record.in_root and u.depth == depth]

    @cached_property
    def max_depth(self) -> int:
        return max((u.depth for u in self.units if u.record.in_root), default=0)

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
        if not unit.record.in_root:
            return "outside the root model"
        if not self.trace.calls_of_unit.get(u):
            return "not called in forward"
        if u in self._unsafe_inplace:
            return "writes in place into a tensor made outside it (recompute would read the new value)"
        return None

    def call_ops(self, u: int) -> list[CallOps]:
        """The ops of each forward call of unit ``u`` (cached)."""
        out = self._call_ops.get(u)
        if out is None:
            scale = float(self.profile.trace.get("time_scale", 1.0))
            if self._index is None:
                self._index = TraceIndex(self.trace)
            out = self._call_ops[u] = [call_ops(self.trace, c, time_scale=scale, index=self._index)
                                       for c in self.trace.calls_of_unit.get(u, [])]
        return out

    def selective_problem(self, u: int, keep: str | tuple[Selector, ...]) -> str | None:
        """Why unit ``u`` cannot keep ``keep`` (a preset name or selectors), or None."""
        problem = self.checkpoint_problem(u)
        if problem:
            return problem
        if isinstance(keep, str):
            what = "matmul/conv/attention" if keep == "save-matmul" else f"{keep}"
            keep = preset_keep(keep) if keep in PRESETS else ()
        else:
            what = "selected"
        for ops in self.call_ops(u):
            kept = ops.kept_mask(keep)
            if not kept.any():
                return f"no {what} op to keep (same as checkpoint)"
            if (kept & ops.mutated).any():
                return f"a kept {what} op output is modified in place (selective checkpoint refuses that)"
        return None

    def keep_problem(self, u: int, keep: tuple[Selector, ...]) -> str | None:
        """Why selectors ``keep`` do not name ops of unit ``u`` as the profile saw it: an op
        the unit never calls, or a call index beyond its calls per forward. None if fine."""
        counts: dict[str, int] = {}
        for ops in self.call_ops(u):
            for n, c in ops.counts().items():
                counts[n] = max(counts.get(n, 0), c)
        name = display_unit(self.units[u].name)
        for op, k in keep:
            if op not in counts:
                return f"unit {name} never calls op {op!r} in the profile"
            if k is not None and k >= counts[op]:
                return f"unit {name} calls {op!r} {counts[op]} time(s) per forward; the plan keeps call {k} (counting from 0)"
        return None

    def keepable(self, u: int) -> list[Selector]:
        """Selectors worth deciding on in unit ``u``: ops of its first call that make bytes
        on the device and are not views (keeping a view holds nothing, recomputing it
        costs nothing)."""
        if u not in self._keepable:
            calls = self.call_ops(u)
            ops = calls[0] if calls else None
            self._keepable[u] = [] if ops is None else [
                (n, k) for n, k, b in zip(ops.name, ops.k.tolist(), ops.out_bytes.tolist())
                if k >= 0 and b > 0 and n not in VIEW_OPS]
        return self._keepable[u]

    def summary(self, u: int) -> UnitRecord:
        return self.units[u].record

