"""Profiles and plan files as pandas tables, for notebooks (and ``show --csv``).

Example::

    import memadvise
    p = memadvise.load_profile(".memadvise/profile.json")
    p.ops.groupby("module")["time_us"].sum().nlargest(5)    # the modules that take longest
    p.categories_at_peak()                                  # bytes by category at the peak
    plans = memadvise.load_plan(".memadvise/plan.json")
    plans.plans[["strategy", "peak_bytes", "overhead"]]

Units are in the column names: ``_bytes`` bytes, ``_us`` microseconds, ``_ms``
milliseconds; ``overhead`` and ``peak_change`` are fractions (0.05 is +5%). The columns
are listed in ``OP_COLUMNS``, ``UNIT_COLUMNS``, ``CATEGORY_COLUMNS``, ``PLAN_COLUMNS``,
``ACTION_COLUMNS`` and ``TRAFFIC_COLUMNS`` (and in the README).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from memadvise.report.chart_data import op_modules
from memadvise.schema.actions import display_unit
from memadvise.schema.categories import CATEGORY_NAMES, Phase
from memadvise.schema.io import atomic_write_text
from memadvise.schema.plan import PlanFile, read_plan
from memadvise.schema.profile import Profile, read_profile
from memadvise.schema.trace import Trace

# name -> what it holds, with its unit
OP_COLUMNS = {
    "name": "aten op (overload packet: addmm, native_layer_norm, ...)",
    "phase": "forward, backward or optimizer",
    "module": "module path that ran the op (backward: the module whose forward made its autograd node); "
              "'(root)' for the model itself, '' outside every module",
    "shape": "dtype and shape of its first output (float32[8, 64])",
    "dur_us": "duration measured while recording, µs (instrumented)",
    "time_us": "dur_us scaled to the uninstrumented step, µs (what suggest and the reports use)",
    "flops": "floating-point operations (PyTorch's flop formulas; 0 where it has none)",
    "in_bytes": "bytes of its tensor inputs, read",
    "out_bytes": "bytes of its tensor outputs, written",
    "scratch_bytes": "scratch buffers the op allocates outside tensors (measured by the scratch probe)",
    "live_bytes": "bytes live on the training device while the op runs (the categories table's total)",
}
UNIT_COLUMNS = {
    "unit": "module path ('(root)' for the model)",
    "type": "module class",
    "parent": "path of the parent module ('(root)' for the model's children; '' for the model)",
    "depth": "depth in the module tree (the model is 0)",
    "calls": "calls per step",
    "in_root": "inside the profiled model (False: another module the script called)",
    "activation_bytes": "bytes its forward leaves held for backward when backward starts",
    "param_bytes": "bytes of its parameters",
    "input_bytes": "bytes of its inputs, per step",
    "output_bytes": "bytes of its outputs, per step",
    "fwd_time_ms": "forward time, ms per step (scaled to the uninstrumented step)",
    "bwd_time_ms": "backward time, ms per step (likewise)",
    "uses_rng": "draws random numbers (dropout): its RNG state is preserved under recompute",
}
CATEGORY_COLUMNS = {
    **{name: f"{name.replace('_', ' ')} bytes live while the op runs" for name in CATEGORY_NAMES},
    "total": "sum of the categories, bytes",
    "phase": "forward, backward or optimizer",
    "peak": "True at the op where the step's peak is (the first, on ties)",
}
PLAN_COLUMNS = {
    "strategy": "strategy name (full, every-2, selective, optimal-60%, ...)",
    "actions": "number of actions",
    "peak_bytes": "predicted peak, bytes",
    "activation_bytes": "predicted activation memory, bytes",
    "step_time_ms": "predicted step time, ms",
    "overhead": "predicted step-time change against the profiled step, fraction",
    "peak_change": "predicted peak change against the profiled peak, fraction",
    "pareto": "on the Pareto front of (peak, step time)",
    "recommended": "the plan suggest recommends",
}
ACTION_COLUMNS = {
    "rank": "rank of the plan",
    "strategy": "its strategy",
    "unit": "module path the action applies to ('(root)' for the model)",
    "action": "checkpoint, selective or offload",
    "policy": "selective recompute's preset (save-matmul, save-linear, ...); empty otherwise",
    "keep": "selective recompute's kept ops when no preset: 'op' (every call) or 'op:k' (its k-th call), space-separated",
    "restore_buffers": "buffers (BatchNorm statistics) restored around the recompute",
}
TRAFFIC_COLUMNS = {
    "strategy": "traffic strategy (optimizer-fused, compile, ...)",
    "peak_bytes": "predicted peak, bytes",
    "step_time_ms": "predicted step time, ms",
    "overhead": "predicted step-time change, fraction",
    "changes_numerics": "changes the numbers computed (mixed precision)",
}


def _phase_labels(codes: np.ndarray) -> list[str]:
    labels = {int(p): p.label for p in Phase}
    return [labels.get(int(c), "") for c in codes]


@dataclass
class ProfileTables:
    """A profile as tables: ``ops``, ``units``, ``categories`` (DataFrames, built on first
    use) and ``categories_at_peak()``; ``profile`` is the loaded document."""

    profile: Profile

    @cached_property
    def _trace(self) -> Trace:
        return Trace(self.profile)

    @cached_property
    def _timeline(self):
        return self._trace.baseline_timeline()

    @cached_property
    def ops(self) -> pd.DataFrame:
        """One row per op of the recorded step, in order (index ``op``: its position)."""
        t = self._trace
        ops = self.profile.trace["ops"]
        strings = t.strings
        n = len(t.op_name)
        shapes = ops.get("shape") or [None] * n
        scale = float(self.profile.trace.get("time_scale", 1.0))
        frame = pd.DataFrame({
            "name": [strings[int(i)] for i in t.op_name],
            "phase": _phase_labels(t.op_phase),
            "module": op_modules(t, self.profile.records.units),
            "shape": [strings[int(s)] if s is not None and 0 <= int(s) < len(strings) else "" for s in shapes],
            "dur_us": t.op_dur_us,
            "time_us": t.op_dur_us * scale,
            "flops": t.op_flops,
            "in_bytes": t.op_in_bytes,
            "out_bytes": t.op_out_bytes,
            "scratch_bytes": t.op_scratch,
            "live_bytes": self._timeline.total,
        }, columns=list(OP_COLUMNS))
        frame.index.name = "op"
        return frame

    @cached_property
    def units(self) -> pd.DataFrame:
        """One row per unit (module instance) the profile recorded, in the profile's order
        (index ``unit``)."""
        rows = []
        for r in self.profile.records.units:
            row = {c: getattr(r, c, None) for c in UNIT_COLUMNS}
            row["unit"] = display_unit(r.name)
            row["parent"] = display_unit(r.parent) if r.parent is not None else ""
            rows.append(row)
        return pd.DataFrame(rows, columns=list(UNIT_COLUMNS)).set_index("unit")

    @cached_property
    def categories(self) -> pd.DataFrame:
        """Live bytes on the training device by category while each op runs (index ``op``),
        with their ``total``, the op's ``phase`` and a ``peak`` marker."""
        tl = self._timeline
        frame = pd.DataFrame(tl.by_category, columns=CATEGORY_NAMES)
        frame["total"] = tl.total
        frame["phase"] = _phase_labels(tl.phase)
        peak = np.zeros(len(frame), dtype=bool)
        if len(frame):
            peak[tl.peak_index] = True
        frame["peak"] = peak
        frame.index.name = "op"
        return frame

    def categories_at_peak(self) -> pd.Series:
        """Bytes by category at the step's peak; they sum to ``records.summary.peak_bytes``."""
        rows = self.categories[self.categories["peak"]]
        if rows.empty:
            return pd.Series(0, index=CATEGORY_NAMES, name="bytes", dtype="int64")
        return rows.iloc[0][CATEGORY_NAMES].astype("int64").rename("bytes")

    @property
    def summary(self) -> dict:
        return self.profile.summary

    def to_csv(self, folder: str | os.PathLike) -> list[Path]:
        """Write ``ops.csv``, ``units.csv`` and ``categories.csv`` into ``folder`` (atomically)."""
        return _write_csv(folder, {"ops": self.ops, "units": self.units, "categories": self.categories})


@dataclass
class PlanTables:
    """A plan file as tables: ``plans``, ``actions``, ``traffic`` (DataFrames)."""

    plan_file: PlanFile

    @cached_property
    def plans(self) -> pd.DataFrame:
        """One row per ranked plan (index ``rank``)."""
        base_peak = float(self.plan_file.baseline_figures.peak_bytes)
        rec = (self.plan_file.doc.get("recommendation") or {}).get("rank")
        rows = []
        for p in self.plan_file.entries:
            pred = p.predicted
            rows.append({
                "rank": p.rank,
                "strategy": p.strategy,
                "actions": len(p.actions),
                "peak_bytes": pred.peak_bytes,
                "activation_bytes": pred.activation_bytes,
                "step_time_ms": pred.step_time_s * 1000,
                "overhead": float(pred.overhead or 0.0),
                "peak_change": float(pred.peak_bytes) / base_peak - 1 if base_peak else 0.0,
                "pareto": p.pareto,
                "recommended": p.rank == rec,
            })
        return pd.DataFrame(rows, columns=["rank", *PLAN_COLUMNS]).set_index("rank")

    @cached_property
    def actions(self) -> pd.DataFrame:
        """One row per action of every plan."""
        rows = [{"rank": p.rank, "strategy": p.strategy, "unit": display_unit(a.unit),
                 "action": a.action, "policy": a.policy or "",
                 "keep": " ".join(op if k is None else f"{op}:{k}" for op, k in a.keep or ()),
                 "restore_buffers": a.unit in p.restore_buffers}
                for p in self.plan_file.entries for a in p.actions]
        return pd.DataFrame(rows, columns=list(ACTION_COLUMNS))

    @cached_property
    def traffic(self) -> pd.DataFrame:
        """One row per traffic plan (empty when the plan file has none)."""
        rows = [{"strategy": e.strategy, "peak_bytes": e.predicted.peak_bytes,
                 "step_time_ms": e.predicted.step_time_s * 1000,
                 "overhead": float(e.predicted.overhead or 0.0), "changes_numerics": e.changes_numerics}
                for e in self.plan_file.traffic_entries]
        return pd.DataFrame(rows, columns=list(TRAFFIC_COLUMNS))

    def to_csv(self, folder: str | os.PathLike) -> list[Path]:
        """Write ``plans.csv``, ``actions.csv`` and ``traffic.csv`` into ``folder`` (atomically)."""
        return _write_csv(folder, {"plans": self.plans, "actions": self.actions, "traffic": self.traffic})


def _write_csv(folder: str | os.PathLike, frames: dict[str, pd.DataFrame]) -> list[Path]:
    folder = Path(folder)
    return [atomic_write_text(folder / f"{name}.csv",
                              frame.to_csv(index=frame.index.name is not None, lineterminator="\n"))
            for name, frame in frames.items()]


def load_profile(path: str | os.PathLike) -> ProfileTables:
    """Read and validate a profile file; its tables are built on first use."""
    return ProfileTables(read_profile(path))


def load_plan(path: str | os.PathLike) -> PlanTables:
    """Read and validate a plan file (from ``memadvise suggest``)."""
    return PlanTables(read_plan(path))
