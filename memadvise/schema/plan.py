"""The plan file: ranked recompute plans with their predictions (``memadvise suggest``).

Plan files get shared and committed, so they are untrusted input: plain JSON, validated
on read (unit names are module paths, actions and presets come from closed sets, op
selectors are op names and call indices).

Schema version 2 added op selectors: a selective action keeps either a preset
(``"policy": "save-linear"``, ``"keep": null``) or listed ops (``"policy": null``,
``"keep": [["addmm", 0], ["mm", null]]``). Version 1 files (selective actions name a
preset, no ``keep``) are still read: they mean the same in version 2.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

from memadvise._errors import InputFileError, UsageError
from memadvise.schema.actions import Action
from memadvise.schema.io import atomic_write_json, check_header, read_json
from memadvise.schema.profile import ModelInfo, OptimizerInfo, Settings

FORMAT = "memadvise-plan"
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: selective actions name a preset only
DEFAULT_PATH = Path(".memadvise") / "plan.json"


@dataclass(frozen=True)
class Prediction:
    """A plan's predicted step, or the plan file's measured baseline.

    peak_bytes / activation_bytes: bytes; step_time_s: seconds; overhead: the step time's
    change against the baseline (0.25 = 25% slower; None for the baseline itself);
    by_category_at_peak: bytes live at the peak by memory category; peak_phase: where the
    peak falls (``forward``, ``backward``, ``optimizer``).
    """

    peak_bytes: int
    activation_bytes: int
    step_time_s: float
    overhead: float | None = None
    by_category_at_peak: Mapping[str, int] = field(default_factory=dict)
    peak_phase: str | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Prediction":
        overhead = d.get("overhead")
        return cls(peak_bytes=int(d["peak_bytes"]), activation_bytes=int(d["activation_bytes"]),
                   step_time_s=float(d["step_time_s"]), overhead=None if overhead is None else float(overhead),
                   by_category_at_peak={k: int(v) for k, v in (d.get("by_category_at_peak") or {}).items()},
                   peak_phase=d.get("peak_phase"))

    def to_json(self) -> dict:
        """The plan file's form (fields absent from older files stay absent)."""
        out: dict[str, Any] = {"peak_bytes": self.peak_bytes, "activation_bytes": self.activation_bytes,
                               "step_time_s": self.step_time_s}
        if self.overhead is not None:
            out["overhead"] = self.overhead
        if self.by_category_at_peak:
            out["by_category_at_peak"] = dict(self.by_category_at_peak)
        if self.peak_phase is not None:
            out["peak_phase"] = self.peak_phase
        return out


@dataclass(frozen=True)
class RecomputedOp:
    """An op kind a plan recomputes in backward: its ``calls`` per step, their predicted
    time ``us`` (microseconds) and the saved bytes the recompute frees (``freed_bytes``)."""

    op: str
    calls: int
    us: float
    freed_bytes: int

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "RecomputedOp":
        return cls(op=str(d["op"]), calls=int(d["calls"]), us=float(d["us"]), freed_bytes=int(d["freed_bytes"]))


@dataclass(frozen=True)
class CompileChoice:
    """What a ``compile-budget-B`` plan compiles: torch.compile's activation memory
    ``budget`` B, the values its partition saves for backward (``saved_bytes``, bytes;
    ``saved_count``), the ops it recomputes there (``recomputed_count``; their matmul
    ``recomputed_flops``), whether a larger budget was predicted to peak lower
    (``non_monotonic``), the modules left eager by graph breaks (``eager_modules``) and
    what the step-time estimate leaves out (``time_notes``)."""

    budget: float
    saved_bytes: int
    saved_count: int = 0
    recomputed_count: int = 0
    recomputed_flops: int = 0
    non_monotonic: bool = False
    eager_modules: tuple[str, ...] = ()
    time_notes: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "CompileChoice":
        return cls(budget=float(d["budget"]), saved_bytes=int(d["saved_bytes"]),
                   saved_count=int(d.get("saved_count", 0)), recomputed_count=int(d.get("recomputed_count", 0)),
                   recomputed_flops=int(d.get("recomputed_flops", 0)), non_monotonic=bool(d.get("non_monotonic")),
                   eager_modules=tuple(str(m) for m in d.get("eager_modules") or ()),
                   time_notes=tuple(str(n) for n in d.get("time_notes") or ()))

    def to_json(self) -> dict:
        return {"budget": self.budget, "saved_bytes": self.saved_bytes, "saved_count": self.saved_count,
                "recomputed_count": self.recomputed_count, "recomputed_flops": self.recomputed_flops,
                "non_monotonic": self.non_monotonic, "eager_modules": list(self.eager_modules),
                "time_notes": list(self.time_notes)}


@dataclass(frozen=True)
class PlanEntry:
    """One ranked plan of a plan file.

    rank: 1 is the recommended plan. strategy: its name (``optimal-98%``, ``selective-linear``,
    ``compile-budget-0.5``, ...). description: one sentence. actions: what it does to which
    unit; restore_buffers: the units whose buffers are restored after recompute.
    predicted: the simulator's prediction. change: relative change of ``peak`` and
    ``activation`` against the baseline. pareto: on the peak/time Pareto front.
    meets_budget: None without a budget. warnings: what the plan's user should know.
    bytes_saved_per_ms: peak bytes saved per millisecond of added step time.
    recompute: the op kinds it recomputes, most bytes freed first (None where not predicted).
    compile: for a ``compile-budget-B`` plan, what it compiles (its partition is in the
    profile's ``compile_plans``); None otherwise. ``compile_budget`` and
    ``compile_eager_modules`` read it.
    """

    rank: int
    strategy: str
    actions: tuple[Action, ...]
    predicted: Prediction
    description: str = ""
    restore_buffers: frozenset[str] = frozenset()
    change: Mapping[str, float] = field(default_factory=dict)
    pareto: bool = False
    meets_budget: bool | None = None
    warnings: tuple[str, ...] = ()
    bytes_saved_per_ms: float | None = None
    recompute: tuple[RecomputedOp, ...] | None = None
    compile: CompileChoice | None = None

    @property
    def compile_budget(self) -> float | None:
        return self.compile.budget if self.compile is not None else None

    @property
    def compile_eager_modules(self) -> tuple[str, ...]:
        return self.compile.eager_modules if self.compile is not None else ()

    def action_json(self, action: Action) -> dict:
        """``action`` as the plan file writes it: with its ``restore_buffers`` flag."""
        return {**action.to_json(), "restore_buffers": action.unit in self.restore_buffers}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "PlanEntry":
        compiled, recompute, per_ms = d.get("compile"), d.get("recompute"), d.get("bytes_saved_per_ms")
        return cls(
            rank=int(d["rank"]), strategy=str(d["strategy"]),
            actions=tuple(Action.from_json(a) for a in d["actions"]),
            predicted=Prediction.from_json(d["predicted"]),
            description=str(d.get("description") or ""),
            restore_buffers=frozenset(a["unit"] for a in d["actions"] if a.get("restore_buffers")),
            change=dict(d.get("change") or {}), pareto=bool(d.get("pareto", False)),
            meets_budget=d.get("meets_budget"), warnings=tuple(d.get("warnings") or ()),
            bytes_saved_per_ms=None if per_ms is None else float(per_ms),
            recompute=None if recompute is None else tuple(RecomputedOp.from_json(r) for r in recompute),
            compile=CompileChoice.from_json(compiled) if compiled else None,
        )

    @property
    def label(self) -> str:
        """``#2 selective-linear``: how outputs name the plan."""
        return f"#{self.rank} {self.strategy}"


@dataclass(frozen=True)
class TrafficEntry:
    """A traffic plan: one change to how the step moves bytes (``change``, one key of
    ``TRAFFIC_CHANGES``: ``{"optimizer": "fused"}``), its ``predicted`` step, what the
    user should know (``notes``; ``caveat`` and its ``short`` form; ``changes_numerics``:
    autocast), and ``with_plan``: the change on top of the recommended recompute plan
    (named ``with_plan_name``), None without one."""

    strategy: str
    change: Mapping[str, Any]
    predicted: Prediction
    notes: tuple[str, ...] = ()
    caveat: str = ""
    short: str = ""
    changes_numerics: bool = False
    with_plan: Prediction | None = None
    with_plan_name: str | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "TrafficEntry":
        combo = d.get("with_plan")
        return cls(strategy=str(d["strategy"]), change=dict(d["change"]), predicted=Prediction.from_json(d["predicted"]),
                   notes=tuple(d.get("notes") or ()), caveat=str(d.get("caveat") or ""), short=str(d.get("short") or ""),
                   changes_numerics=bool(d.get("changes_numerics")),
                   with_plan=Prediction.from_json(combo) if combo else None,
                   with_plan_name=combo.get("plan") if combo else None)


@dataclass(frozen=True)
class AppliedPlan:
    """What ``memadvise apply`` applies: a recompute plan (``rank``; None for traffic
    changes alone), the traffic changes on top (``traffic``, their strategy names), and
    their combined ``predicted`` step (``exact``: replayed on the profile; False: the
    changes' differences added up, without the profile at hand).

    ``actions`` are the plan's, with ``units`` as the patched script names them (a
    wrapper's prefix such as DDP's ``module.`` stripped); ``restore_buffers`` the units
    whose buffers are restored after recompute; ``compile`` for a compile-budget plan.
    """

    rank: int | None
    strategy: str
    actions: tuple[Action, ...]
    predicted: Prediction
    traffic: tuple[str, ...] = ()
    restore_buffers: frozenset[str] = frozenset()
    units: tuple[str, ...] = ()
    compile: CompileChoice | None = None
    exact: bool | None = None

    def to_json(self) -> dict:
        """The ``plan`` section of ``apply --json`` and ``--verify-out``."""
        predicted = self.predicted.to_json()
        if self.exact is not None:
            predicted["exact"] = self.exact
        return {"rank": self.rank, "strategy": self.strategy,
                "actions": [{**a.to_json(), "restore_buffers": a.unit in self.restore_buffers} for a in self.actions],
                "predicted": predicted}


def traffic_entries(doc: Mapping[str, Any]) -> tuple[TrafficEntry, ...]:
    """The traffic plans of a plan document (none in files without a traffic section)."""
    return tuple(TrafficEntry.from_json(e) for e in (doc.get("traffic") or {}).get("plans", []))


@dataclass
class PlanFile:
    """A loaded, validated plan file.

    ``entries`` are its ranked plans as typed records, ``traffic_entries`` its traffic
    plans and ``baseline_figures`` the measured baseline, built once from the document on first use; ``doc`` is the
    document itself, and the dict properties (``plans``, ``baseline``, ``script``) its
    sections as read, kept for older callers.
    """

    doc: dict
    path: str

    @classmethod
    def from_doc(cls, doc: Any, path: str | os.PathLike) -> "PlanFile":
        validate_plan(doc, path)
        return cls(doc=doc, path=str(path))

    @cached_property
    def entries(self) -> tuple[PlanEntry, ...]:
        return tuple(PlanEntry.from_json(p) for p in self.doc["plans"])

    @cached_property
    def traffic_entries(self) -> tuple[TrafficEntry, ...]:
        return traffic_entries(self.doc)

    @cached_property
    def baseline_figures(self) -> Prediction:
        return Prediction.from_json(self.doc["baseline"])

    @property
    def plans(self) -> list[dict]:
        return self.doc["plans"]

    @property
    def baseline(self) -> dict:
        return self.doc["baseline"]

    @property
    def script(self) -> dict:
        return self.doc["script"]

    @cached_property
    def model(self) -> ModelInfo:
        """The model the profile found (its ``model`` section)."""
        return _section(self, "model", ModelInfo.from_json)

    @cached_property
    def optimizer(self) -> OptimizerInfo | None:
        """The script's optimizer; None where the profile found none."""
        doc = self.doc.get("optimizer")
        return _section(self, "optimizer", OptimizerInfo.from_json) if doc else None

    @cached_property
    def settings(self) -> Settings:
        """How the script was profiled (``verify`` profiles it the same way)."""
        return _section(self, "settings", Settings.from_json)

    @property
    def device_type(self) -> str:
        return (self.doc.get("environment") or {}).get("device", {}).get("type", "cpu")

    @property
    def world_size(self) -> int:
        """Processes the profiled run had (1 without torchrun)."""
        return _section(self, "distributed", lambda d: int((d or {}).get("world_size") or 1))

    @property
    def profile_path(self) -> str | None:
        """The profile the plan was suggested from. A relative path was relative to the
        directory ``suggest`` ran in (the script's recorded ``cwd``): it is looked up here
        first, then there, so a plan copied elsewhere still finds its profile."""
        path = (self.doc.get("profile") or {}).get("path")
        if not isinstance(path, str) or os.path.isabs(path) or os.path.exists(path):
            return path
        made_in = self.script.get("cwd")
        there = os.path.join(made_in, path) if isinstance(made_in, str) else None
        return there if there is not None and os.path.exists(there) else path


def _section(plan_file: PlanFile, key: str, read: Any) -> Any:
    """A section of the plan document as its record; a malformed one is one line."""
    try:
        return read(plan_file.doc.get(key))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise InputFileError(f"plan {plan_file.path!r} has a malformed {key!r} section; "
                             "re-create it with `memadvise suggest`") from None


def validate_plan(doc: Any, path: str | os.PathLike) -> None:
    version = doc.get("schema_version") if isinstance(doc, dict) else None
    check_header(doc, path=path, fmt=FORMAT, version=version if version in READABLE_VERSIONS else SCHEMA_VERSION,
                 what="plan", hint="re-create it with `memadvise suggest`")
    try:
        baseline = doc["baseline"]
        for key in ("peak_bytes", "activation_bytes", "step_time_s"):
            float(baseline[key])
        script = doc["script"]
        if not isinstance(script.get("path"), str) or not isinstance(script.get("sha256"), str):
            raise KeyError("script")
        plans = doc["plans"]
        if not isinstance(plans, list):
            raise TypeError("plans")
        for plan in plans:
            if not isinstance(plan, dict) or not isinstance(plan.get("strategy"), str):
                raise TypeError("plan")
            int(plan["rank"])
            for a in plan["actions"]:
                if version == 1 and isinstance(a, dict) and a.get("keep") is not None:
                    raise InputFileError("a version-1 plan action lists ops to keep (version 2 does)")
                Action.from_json(a)
                if not isinstance(a.get("restore_buffers", False), bool):
                    raise InputFileError("a plan action's restore_buffers is not true/false")
            pred = plan["predicted"]
            for key in ("peak_bytes", "activation_bytes", "step_time_s", "overhead"):
                float(pred[key])
        for entry in (doc.get("traffic") or {}).get("plans", []):
            validate_traffic_change(entry["change"])
            if not isinstance(entry["strategy"], str):
                raise TypeError("strategy")
            for key in ("peak_bytes", "activation_bytes", "step_time_s", "overhead"):
                float(entry["predicted"][key])
        device = (doc.get("environment") or {}).get("device", {}).get("type", "cpu")
        if device not in ("cpu", "cuda"):
            raise InputFileError(f"device type {str(device)[:20]!r} is not cpu or cuda")
    except InputFileError as exc:
        raise InputFileError(f"plan {str(path)!r} is invalid: {exc}") from None
    except (KeyError, TypeError, ValueError):
        raise InputFileError(f"plan {str(path)!r} is corrupt (malformed fields); re-create it with `memadvise suggest`") from None


TRAFFIC_CHANGES = {
    "optimizer": ("for-loop", "foreach", "fused"),
    "autocast": ("bfloat16", "float16"),
    "compile": (True,),
    "channels_last": (True,),
    "set_to_none": (True,),
    "free_grads": (True,),
}


def validate_traffic_change(change: object) -> None:
    """A traffic change is one of a closed set: its text reaches generated code."""
    if not isinstance(change, dict) or len(change) != 1:
        raise InputFileError("a traffic change is not a one-key object")
    kind, value = next(iter(change.items()))
    if kind not in TRAFFIC_CHANGES or value not in TRAFFIC_CHANGES[kind] or isinstance(value, bool) != (TRAFFIC_CHANGES[kind] == (True,)):
        raise InputFileError(f"traffic change {str(change)[:60]!r} is not one memadvise makes")


def read_plan(path: str | os.PathLike = DEFAULT_PATH) -> PlanFile:
    doc = read_json(path, what="plan")
    return PlanFile.from_doc(doc, path)


def write_plan(doc: dict, path: str | os.PathLike = DEFAULT_PATH) -> Path:
    return atomic_write_json(path, doc, indent=1)


def select_entry(plan_file: PlanFile, *, rank: int | None = None, strategy: str | None = None) -> PlanEntry:
    """The plan ``select_plan`` chooses, as its typed record."""
    chosen = select_plan(plan_file, rank=rank, strategy=strategy)
    return plan_file.entries[next(i for i, p in enumerate(plan_file.plans) if p is chosen)]


def select_plan(plan_file: PlanFile, *, rank: int | None = None, strategy: str | None = None) -> dict:
    plans = plan_file.plans
    if rank is not None and strategy is not None:
        raise UsageError("give --rank or --strategy, not both")
    if strategy is not None:
        for p in plans:
            if p["strategy"] == strategy:
                return p
        names = ", ".join(sorted({p["strategy"] for p in plans})) or "none"
        raise UsageError(f"no plan with strategy {strategy!r} in {plan_file.path} (strategies: {names})")
    rank = 1 if rank is None else rank
    for p in plans:
        if int(p["rank"]) == rank:
            return p
    if not plans:
        raise UsageError(f"{plan_file.path} holds no plans")
    raise UsageError(f"no plan ranked {rank} in {plan_file.path} (ranks 1..{len(plans)})")
