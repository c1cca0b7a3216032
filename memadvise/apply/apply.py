"""The library side of ``memadvise apply``: check the plan against the script, build the
patch, write it (or the patched script, with a backup)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from memadvise._errors import InputFileError, PlanRefused, UsageError
from memadvise.apply.patch import (
    BEGIN_MARK,
    RUNTIME_MODES,
    PatchResult,
    definitions_block,
    definitions_line,
    display_path,
    find_insertion,
    make_patch_multi,
    plan_block,
    tune_block,
    read_script,
    sha256_text,
)
from memadvise.apply.source_edits import FLAGS, PRIMARY, Span, apply_spans, constructor_spans, zero_grad_spans
from memadvise.schema.actions import SELECTIVE, display_unit
from memadvise.schema.io import atomic_write_text
from memadvise.schema.plan import AppliedPlan, PlanEntry, PlanFile, Prediction, TrafficEntry
from memadvise.schema.profile import OptimizerInfo
from memadvise.source import find_model_site


@dataclass
class PreparedPatch:
    script: Path
    source: str
    patch: PatchResult
    plan: AppliedPlan  # what was applied: the plan, the traffic changes, their combined prediction
    where: str = ""  # where the plan goes in the script, and why there


MODEL_CHANGES = ("autocast", "channels_last", "compile", "free_grads")
OPTIMIZER_CHANGES = ("optimizer", "set_to_none")


def _kind(t: TrafficEntry) -> str:
    return next(iter(t.change))


def select_traffic(plan_file: PlanFile, names: list[str]) -> list[TrafficEntry]:
    entries = {t.strategy: t for t in plan_file.traffic_entries}
    out = []
    for name in names:
        if name not in entries:
            known = ", ".join(sorted(entries)) or "none"
            raise UsageError(f"no traffic strategy {name!r} in {plan_file.path} (traffic strategies: {known})")
        out.append(entries[name])
    kinds = [_kind(t) for t in out]
    if len(set(kinds)) != len(kinds):
        raise UsageError("two traffic strategies of the same kind (e.g. two optimizer implementations)")
    return out


def combined_prediction(plan_file: PlanFile, plan: PlanEntry | None,
                        traffic: list[TrafficEntry]) -> tuple[Prediction, bool | None]:
    """Predicted figures of a recompute plan with traffic changes on top, and whether they
    are exact: replayed on the plan's predicted timeline when the profile is at hand
    (True), else the plan's figures plus each change's predicted difference from the
    baseline (False). Without traffic changes: the plan's own prediction (None)."""
    base = plan_file.baseline_figures
    pred = plan.predicted if plan else Prediction(base.peak_bytes, base.activation_bytes, base.step_time_s, 0.0)
    if pred.overhead is None:
        pred = replace(pred, overhead=0.0)
    if not traffic:
        return pred, None
    profile_path = plan_file.profile_path
    try:
        if plan is not None and plan.compile is not None:
            raise ValueError("a compile plan is replayed by analysis.compile_plans, not by its actions")
        from memadvise.analysis.simulator import Simulator
        from memadvise.analysis.traffic import predict_traffic
        from memadvise.schema.profile import read_profile

        profile = read_profile(profile_path)
        sim = Simulator(profile)
        result = sim.simulate(list(plan.actions) if plan else [], timeline=True)
        peak, act, step = result.peak_bytes, result.activation_bytes, result.step_time_s
        timeline = result.timeline
        for t in traffic:
            p = predict_traffic(profile, dict(t.change), timeline=timeline, activation_bytes=act, trace=sim.trace)
            step += p.delta_s
            peak = max(p.peak_bytes, 0) if _kind(t) != "optimizer" else p.peak_bytes
            act = p.activation_bytes
        return Prediction(peak_bytes=peak, activation_bytes=act, step_time_s=step,
                          overhead=step / sim.base_step_s - 1.0), True
    # no profile at hand (or a compile plan): add up the differences
    except (InputFileError, TypeError, ValueError):
        peak, act, step = pred.peak_bytes, pred.activation_bytes, pred.step_time_s
        for t in traffic:
            tp = t.predicted
            peak += tp.peak_bytes - base.peak_bytes
            act += tp.activation_bytes - base.activation_bytes
            step += tp.step_time_s - base.step_time_s
        return Prediction(peak_bytes=peak, activation_bytes=act, step_time_s=step,
                          overhead=step / base.step_time_s - 1.0), False


def check_selectors(plan_file: PlanFile, plan: PlanEntry, *, force: bool = False) -> None:
    """Refuse per-op keep lists that name an op a unit never calls, or a call index beyond
    the calls the profile saw: the patched run would keep something else, or nothing."""
    from memadvise.analysis.units import UnitTree
    from memadvise.schema.profile import read_profile

    custom = [a for a in plan.actions if a.action == SELECTIVE and a.keep]
    if not custom:
        return
    profile_path = plan_file.profile_path
    try:
        profile = read_profile(profile_path)
    except (InputFileError, TypeError):
        if force:
            return
        raise PlanRefused(f"plan #{plan.rank} keeps ops by call index, and its profile {profile_path!r} is needed "
                          "to check them; profile again, or pass --force to apply unchecked") from None
    tree = UnitTree(profile)
    for a in custom:
        u = tree.by_name.get(a.unit)
        if u is None:
            raise InputFileError(f"plan #{plan.rank} keeps ops of unit {display_unit(a.unit)}, which is not in its profile")
        problem = tree.keep_problem(u, a.keep)
        if problem:
            raise InputFileError(f"plan #{plan.rank}: {problem}")


def script_of(plan_file: PlanFile, named: str | os.PathLike | None = None, *,
              project: str | os.PathLike | None = None) -> Path:
    """The script a plan patches: ``named`` when given; else the plan's path, which is
    relative to the working directory it was profiled in (so a copy of the project
    patches its own copy). With ``project`` (the command's working directory), a path
    outside it is refused when the plan was made in another directory: ``apply`` never
    patches another checkout unasked."""
    if named is not None:
        return Path(named).resolve()
    recorded = Path(plan_file.script["path"])
    script = recorded.resolve()
    here = Path(project).resolve() if project is not None else None
    profiled_in = plan_file.script.get("cwd")
    same_place = profiled_in is not None and Path(profiled_in).resolve() == here
    if here is not None and here not in script.parents and not same_place:
        raise PlanRefused(f"the plan's script {str(script)!r} is outside this project ({here}); "
                          "name it to patch it anyway: --script PATH")
    return script


def prepare(plan_file: PlanFile, plan: PlanEntry | dict | None, *, force: bool = False, traffic: list[str] = (),
            runtime: str = "inline", script: str | os.PathLike | None = None) -> PreparedPatch:
    """Validate the plan against the current script and build the patch (nothing written).

    plan: one of the plan file's entries (a dict is read as one), or None for traffic
    changes alone. runtime: "inline" (the runtime's source goes into the script, which then needs only
    PyTorch) or "import" (the script imports ``memadvise.apply.runtime``). script: the
    script to patch (default: the plan's)."""
    if runtime not in RUNTIME_MODES:
        raise UsageError(f"--runtime must be one of {', '.join(RUNTIME_MODES)} (got {runtime!r})")
    if isinstance(plan, dict):
        plan = PlanEntry.from_json(plan)
    script = script_of(plan_file, script)
    source = read_script(script)
    if sha256_text(source) != plan_file.script["sha256"] and not force:
        raise PlanRefused(
            f"{script.name} changed since it was profiled (its hash differs from the plan's); "
            "profile it again, or pass --force to apply anyway"
        )
    if BEGIN_MARK in source:  # before any line lookup: the plan's lines moved
        raise PlanRefused(f"{script} already contains a memadvise plan; revert it first "
                          "(git apply -R, or the .orig backup)")
    model = plan_file.model
    frames = model.site_frames()
    expression = frames[0]["expression"] if frames else None
    if not expression:
        raise PlanRefused(
            "the profile found no variable holding the model in the script, so there is nowhere to put the patch; "
            "call memadvise.apply_plan(model, PLAN_FILE) where your code builds the model"
        )
    if plan is not None and not plan.actions and plan.compile is None:
        raise PlanRefused(f"plan #{plan.rank} ({plan.strategy}) has no actions; nothing to apply")
    if plan is not None:
        check_selectors(plan_file, plan, force=force)
    entries = select_traffic(plan_file, list(traffic))
    if plan is None and not entries:
        raise UsageError("nothing to apply: give --rank, --strategy or --traffic")
    device_type = plan_file.device_type
    predicted, exact = combined_prediction(plan_file, plan, entries)
    try:
        site = find_model_site(source, frames, [a.unit for a in plan.actions] if plan else [])
    except PlanRefused as exc:
        which = f"rank={plan.rank}" if plan else "rank=1"
        raise PlanRefused(str(exc).replace("PLAN_FILE", f'"{plan_file.path}", {which}')) from None
    line, indent, expression = site.line, site.indent, site.expression
    actions = tuple(replace(a, unit=_strip(a.unit, site.strip_prefix)) for a in (plan.actions if plan else ()))
    applied = AppliedPlan(
        rank=plan.rank if plan else None,
        strategy="+".join(([plan.strategy] if plan else []) + [t.strategy for t in entries]),
        actions=plan.actions if plan else (), predicted=predicted, traffic=tuple(t.strategy for t in entries),
        restore_buffers=plan.restore_buffers if plan else frozenset(), units=tuple(a.unit for a in actions),
        compile=plan.compile if plan else None, exact=exact)
    blocks: dict[tuple[int, int], str] = {}
    needs: list[str] = []  # what the patch uses of memadvise.apply.runtime
    if applied.compile is not None:
        if any(_kind(t) == "compile" for t in entries):
            raise UsageError("a compile-budget plan compiles the model already: drop --traffic compile")
        from memadvise.apply.compile_patch import compile_block

        blocks[(line, indent)] = compile_block(applied, expression=expression, baseline=plan_file.baseline_figures,
                                               plan_path=plan_file.path)
    elif plan is not None:
        restore = {_strip(u, site.strip_prefix): True for u in plan.restore_buffers}
        blocks[(line, indent)] = plan_block(
            replace(applied, actions=actions), expression=expression, baseline=plan_file.baseline_figures,
            plan_path=plan_file.path, restore=restore, runtime_mode=runtime, indent=indent,
            hugging_face=(model.module or "").startswith("transformers"))
        needs += ["MemadviseForward", "memadvise_apply"]
    spans: list[Span] = []
    model_changes = [t for t in entries if _kind(t) in MODEL_CHANGES]
    if model_changes:
        block, names = model_tune_block(model_changes, expression, device_type, runtime, indent)
        blocks[(line, indent)] = blocks.get((line, indent), "") + block
        needs += names
    opt_changes = [t for t in entries if _kind(t) in OPTIMIZER_CHANGES]
    if opt_changes:
        opt = plan_file.optimizer
        if opt is None or not opt.expression:
            raise PlanRefused("the profile found no variable holding the optimizer; apply optimizer changes by hand")
        oline, oindent = find_insertion(source, opt.expression, opt.function, opt.frame_line)
        block, names, opt_spans = optimizer_tune_block(source, opt_changes, opt, oline, runtime, oindent)
        blocks[(oline, oindent)] = blocks.get((oline, oindent), "") + block
        needs += names
        spans += opt_spans
    inserts = [(k[0], k[1], b) for k, b in blocks.items()]
    if runtime == "inline" and needs:
        # module level, after the imports: pickle finds the runtime's classes by name
        inserts.append((definitions_line(source), 0, definitions_block(needs)))
    patch = make_patch_multi(script, source, inserts, display_path(script), replacements=apply_spans(source, spans))
    patch.insert_line = min(k[0] for k in blocks)  # the plan's site, not the runtime's
    return PreparedPatch(script=script, source=source, patch=patch, plan=applied, where=site.where)


def _strip(unit: str, prefix: str) -> str:
    """A unit's path from the model before the wrapper (``module.blocks.0`` → ``blocks.0``)."""
    if not prefix:
        return unit
    return "" if unit == prefix else unit[len(prefix) + 1:]


def model_tune_block(changes: list[TrafficEntry], expression: str, device_type: str, runtime: str,
                     indent: int) -> tuple[str, list[str]]:
    """Traffic changes of the model, as the statements a person would write after it is
    built, and the runtime names they use."""
    statements, names = [], []
    for t in changes:
        kind, value = next(iter(t.change.items()))
        if kind == "autocast":
            statements.append(f"{expression}.forward = MemadviseAutocast({expression}, {device_type!r}, {value!r})")
            names.append("MemadviseAutocast")
        elif kind == "channels_last":
            statements += ["import torch", f"{expression}.to(memory_format=torch.channels_last)"]
        elif kind == "compile":
            statements.append(f"{expression}.compile()")
        elif kind == "free_grads":
            statements.append(f"{expression}.register_forward_pre_hook(MemadviseFreeGrads())")
            names.append("MemadviseFreeGrads")
    notes = [f"{t.strategy}: {t.caveat}" for t in changes]
    return tune_block([t.strategy for t in changes], notes, statements, names, runtime, indent), names


def optimizer_tune_block(source: str, changes: list[TrafficEntry], opt: OptimizerInfo, line: int, runtime: str,
                         indent: int) -> tuple[str, list[str], list[Span]]:
    """Traffic changes of the optimizer: edits of its constructor and zero_grad calls where
    the script has them (the block then only says what changed), else statements after it
    is built, said so in the block."""
    target = opt.expression
    statements, names, notes, spans = [], [], [], []
    for t in changes:
        kind, value = next(iter(t.change.items()))
        if kind == "optimizer":
            cls = opt.class_name or "the optimizer"
            found = constructor_spans(source, target, line, cls, value) if opt.class_name else None
            flags = ", ".join(f"{k}={v}" for k, v in FLAGS[value].items() if k == PRIMARY[value])
            if found is not None:
                spans += found
                notes.append(f"{t.strategy}: the {cls}(...) call above now passes {flags}.")
            else:
                notes.append(f"{t.strategy}: {target} is not built by a {cls}(...) call here that can "
                             f"be edited, so it is built again by its constructor with {flags}, "
                             "before its first step.")
                statements.append(f"{target} = memadvise_rebuild_optimizer({target}, {flags})")
                names.append("memadvise_rebuild_optimizer")
        elif kind == "set_to_none":
            found, calls = zero_grad_spans(source, target, opt.function)
            if calls:
                spans += found
                notes.append(f"{t.strategy}: {target}.zero_grad(...) ({calls} call{'s' * (calls > 1)}) "
                             "now passes set_to_none=True (a call without arguments already does).")
            else:
                notes.append(f"{t.strategy}: no {target}.zero_grad(...) call here to edit, so "
                             f"{target}.zero_grad is replaced by one passing set_to_none=True.")
                statements += ["import functools",
                               f"{target}.zero_grad = functools.partial({target}.zero_grad, set_to_none=True)"]
        notes.append(f"    note: {t.caveat}")
    return tune_block([t.strategy for t in changes], notes, statements, names, runtime, indent), names, spans


def write_patch_file(prepared: PreparedPatch, path: str | os.PathLike) -> Path:
    return atomic_write_text(path, prepared.patch.diff)


def backup_path(script: Path) -> Path:
    return script.with_name(script.name + ".orig")


def write_in_place(prepared: PreparedPatch, *, force: bool = False) -> Path:
    """Save ``SCRIPT.orig``, then replace the script atomically. Returns the backup path."""
    script = prepared.script
    backup = backup_path(script)
    if backup.exists() and not force:
        raise PlanRefused(f"backup {backup} already exists; move it away or pass --force to overwrite it")
    mode = script.stat().st_mode & 0o7777
    # no write bit at all is a read-only file even for root, who could write it anyway
    if not (mode & 0o222) or not os.access(script, os.W_OK) or not os.access(script.parent, os.W_OK):
        raise InputFileError(f"script {str(script)!r} is read-only; write the patch instead (--patch)")
    atomic_write_text(backup, prepared.source, mode=mode)
    try:
        atomic_write_text(script, prepared.patch.new_source, mode=mode)
    except BaseException:
        shutil.copymode(backup, script) if script.exists() else None
        raise
    return backup
