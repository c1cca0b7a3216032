"""The representative step of a profile as numpy arrays, with the derived indexes the
simulator needs (call subtrees, saves per storage, backward segments)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from memadvise.schema.timeline import FOREVER, live_by_category
from memadvise.schema.categories import N_CATEGORIES, Category, Phase
from memadvise.schema.profile import Profile


def _arr(values, dtype=np.int64) -> np.ndarray:
    return np.asarray(values, dtype=dtype)


@dataclass
class Timeline:
    """Live bytes on the training device at each op of a step, by category."""

    clock: np.ndarray  # op clocks (float: recompute ops sit between recorded clocks)
    phase: np.ndarray  # Phase of each op
    by_category: np.ndarray  # [n_ops, N_CATEGORIES] bytes
    recompute: np.ndarray  # bool: op is a recomputation inserted by a plan

    @property
    def total(self) -> np.ndarray:
        return self.by_category.sum(axis=1)

    @property
    def peak_index(self) -> int:
        return int(np.argmax(self.total)) if len(self.total) else 0

    @property
    def peak_bytes(self) -> int:
        return int(self.total.max()) if len(self.total) else 0


class Trace:
    """Numpy view of ``profile.trace`` (clocks relative to the step start)."""

    def __init__(self, profile: Profile) -> None:
        t = profile.trace
        self.profile = profile
        self.strings: list[str] = t["strings"]
        self.end_clock = int(t["end_clock"])
        self.train_device = int(t["train_device"])
        ops = t["ops"]
        self.op_name = _arr(ops["name"])
        self.op_clock = _arr(ops["clock"])
        self.op_phase = _arr(ops["phase"], np.int8)
        self.op_call = _arr(ops["call"])
        self.op_owner = _arr(ops["owner"])
        self.op_dur_us = _arr(ops["dur_us"], np.float64)
        self.op_flops = _arr(ops["flops"])
        self.op_in_bytes = _arr(ops["in_bytes"])
        self.op_out_bytes = _arr(ops["out_bytes"])
        self.op_mutates = _arr(ops.get("mutates", [-1] * len(ops["name"])))
        self.op_scratch = _arr(ops.get("scratch", [0] * len(ops["name"])))
        # allocator bytes no tensor explains, after each op (CUDA profiles; 0 elsewhere)
        self.op_untracked = _arr(ops.get("untracked") or [0] * len(ops["name"]))
        replay = ops.get("replay_us") or [None] * len(ops["name"])  # NaN: not replayed
        self.op_replay_us = np.asarray([np.nan if v is None else v for v in replay], dtype=np.float64)
        self.backward_nodes: int | None = t.get("backward_nodes")
        st = t["storages"]
        self.st_bytes = _arr(st["bytes"])
        self.st_device = _arr(st["device"])
        self.st_category = _arr(st["category"], np.int8)
        self.st_alloc = _arr(st["alloc"])
        free = _arr(st["free"])
        self.st_free = np.where(free < 0, FOREVER, free)
        nat = _arr(st["natural_free"])
        self.st_nat = np.where(nat < 0, FOREVER, nat)
        self.st_op = _arr(st["op"])
        self.st_call = _arr(st["call"])
        sv = t["saves"]
        self.sv_storage = _arr(sv["storage"])
        self.sv_pack = _arr(sv["pack"])
        self.sv_call = _arr(sv["call"])
        self.sv_phase = _arr(sv["phase"], np.int8)
        self.sv_unpack = _arr(sv["unpack"])
        rel = _arr(sv["release"])
        self.sv_release = np.where(rel < 0, FOREVER, rel)
        calls = t["calls"]
        self.call_unit = _arr(calls["unit"])
        self.call_parent = _arr(calls["parent"])
        self.call_phase = _arr(calls["phase"], np.int8)
        self.call_start = _arr(calls["start"])
        end = _arr(calls["end"])
        self.call_end = np.where(end < 0, self.end_clock, end)
        self.call_start_op = _arr(calls["start_op"])
        end_op = _arr(calls["end_op"])
        self.call_end_op = np.where(end_op < 0, len(self.op_clock), end_op)
        self.call_wall_us = _arr(calls["wall_us"], np.float64)
        self.call_inputs: list[list[int]] = calls["inputs"]
        self.call_outputs: list[list[int]] = calls["outputs"]
        self.on_device = self.st_device == self.train_device
        self.device_type = profile.device_type

    # ------------------------------------------------------------------ derived
    @cached_property
    def call_subtree_end(self) -> np.ndarray:
        """Calls are stored in pre-order: the subtree of call c is ``[c, end[c])``."""
        n = len(self.call_unit)
        end = np.arange(1, n + 1, dtype=np.int64)
        for c in range(n - 1, -1, -1):
            p = self.call_parent[c]
            if p >= 0:
                end[p] = max(end[p], end[c])
        return end

    @cached_property
    def calls_of_unit(self) -> dict[int, list[int]]:
        """Forward calls of each unit (recompute calls inside backward excluded)."""
        out: dict[int, list[int]] = {}
        for c, u in enumerate(self.call_unit):
            if self.call_phase[c] == Phase.FORWARD:
                out.setdefault(int(u), []).append(c)
        return out

    @cached_property
    def forward_saves(self) -> np.ndarray:
        return (self.sv_phase == Phase.FORWARD) & (self.sv_storage >= 0)

    @cached_property
    def backward_segments(self) -> list[tuple[int, int]]:
        """(boundary clock, end clock) of each forward→backward transition."""
        is_b = self.op_phase == Phase.BACKWARD
        n = len(is_b)
        if not n:
            return []
        first = np.nonzero(is_b & ~np.concatenate(([False], is_b[:-1])))[0]
        after = np.nonzero(is_b & ~np.concatenate((is_b[1:], [False])))[0] + 1  # first op past each run
        clocks = self.op_clock
        out = [(int(clocks[i]), int(clocks[j]) if j < n else self.end_clock) for i, j in zip(first, after)]
        return out

    @cached_property
    def st_alloc_phase(self) -> np.ndarray:
        ph = np.full(len(self.st_bytes), -1, dtype=np.int8)
        has = self.st_op >= 0
        ph[has] = self.op_phase[self.st_op[has]]
        return ph

    @cached_property
    def optimizer_window(self) -> tuple[int, int] | None:
        opt = self.profile.trace.get("optimizer") or {}
        start, end = opt.get("start", -1), opt.get("end", -1)
        if start is None or start < 0:
            return None
        return int(start), int(end if end is not None and end >= 0 else self.end_clock)

    def op_name_str(self, i: int) -> str:
        return self.strings[int(self.op_name[i])]

    def baseline_timeline(self) -> Timeline:
        m = self.on_device
        by = live_by_category(
            self.op_clock, self.st_alloc[m], self.st_free[m], self.st_bytes[m], self.st_category[m], N_CATEGORIES
        )
        by[:, int(Category.TEMPORARY)] += self.op_scratch  # scratch buffers inside ops
        by[:, int(Category.UNTRACKED)] += self.op_untracked
        return Timeline(
            clock=self.op_clock.astype(np.float64),
            phase=self.op_phase.copy(),
            by_category=by,
            recompute=np.zeros(len(self.op_clock), dtype=bool),
        )


def category_dict(row: np.ndarray) -> dict[str, int]:
    return {Category(i).label: int(row[i]) for i in range(N_CATEGORIES)}
