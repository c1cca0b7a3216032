"""The library side of ``memadvise apply``: check the plan against the script, build the
patch, write it (or the patched script, with a backup)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from memadvise._errors import InputFileError, PlanRefused
from memadvise.apply.patch import (
    PatchResult,
    display_path,
    find_insertion,
    make_patch,
    plan_block,
    read_script,
    sha256_text,
)
from memadvise.schema.io import atomic_write_text
from memadvise.schema.plan import PlanFile


@dataclass
class PreparedPatch:
    script: Path
    source: str
    patch: PatchResult
    plan: dict


def prepare(plan_file: PlanFile, plan: dict, *, force: bool = False) -> PreparedPatch:
    """Validate the plan against the current script and build the patch (nothing written)."""
    script = Path(plan_file.script["path"])
    source = read_script(script)
    if sha256_text(source) != plan_file.script["sha256"] and not force:
        raise PlanRefused(
            f"{script.name} changed since it was profiled (its hash differs from the plan's); "
            "profile it again, or pass --force to apply anyway"
        )
    model = plan_file.doc.get("model") or {}
    expression = model.get("expression")
    if not expression:
        raise PlanRefused(
            "the profile found no variable holding the model in the script, so there is nowhere to put the patch; "
            "call memadvise.apply_plan(model, PLAN_FILE) where your code builds the model"
        )
    if not plan["actions"]:
        raise PlanRefused(f"plan #{plan['rank']} ({plan['strategy']}) has no actions; nothing to apply")
    restore = {a["unit"]: bool(a.get("restore_buffers", False)) for a in plan["actions"]}
    line, indent = find_insertion(source, expression, model.get("function"), model.get("frame_line"))
    block = plan_block(plan, expression=expression, baseline=plan_file.baseline, plan_path=plan_file.path, restore=restore)
    patch = make_patch(script, source, block, line, indent, display_path(script))
    return PreparedPatch(script=script, source=source, patch=patch, plan=plan)


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
