"""Turn a plan into a reviewable change of the user's script: a unified diff or a rewrite.

The inserted block goes right after the statement that last assigns the root model's
variable before the training loop (found at profile time). It defines
``memadvise_apply`` (the source of ``memadvise.apply.runtime``, verbatim) and calls it
with the plan's actions, so the patched script needs only PyTorch.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import inspect
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

import memadvise
from memadvise._errors import InputFileError, PlanRefused
from memadvise.schema.actions import CHECKPOINT, OFFLOAD, POLICIES, SELECTIVE, Action, display_unit, valid_unit_name
from memadvise.apply import runtime
from memadvise.sizes import format_bytes, format_percent

BEGIN_MARK = "# --- memadvise plan: begin"
END_MARK = "# --- memadvise plan: end ---"

_EXPR_PART = r"[A-Za-z_][A-Za-z0-9_]*"


@dataclass
class PatchResult:
    diff: str  # unified diff, `git apply` / `patch -p1` ready
    new_source: str
    insert_line: int  # 1-based line after which the block goes
    block: str


def read_script(path: Path) -> str:
    if not path.exists():
        raise InputFileError(f"script {str(path)!r} does not exist")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"cannot read script {str(path)!r}: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputFileError(f"script {str(path)!r} is not UTF-8 text; memadvise only patches UTF-8 scripts") from None


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _runtime_source() -> str:
    return inspect.getsource(runtime.memadvise_apply)


def _targets(node: ast.stmt) -> list[ast.expr]:
    if isinstance(node, ast.Assign):
        out: list[ast.expr] = []
        for t in node.targets:
            out.extend(t.elts if isinstance(t, (ast.Tuple, ast.List)) else [t])
        return out
    if isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.target is not None:
        return [node.target]
    if isinstance(node, (ast.With, ast.AsyncWith)):
        return [i.optional_vars for i in node.items if i.optional_vars is not None]
    return []


def _walk_scope(body: list[ast.stmt]):
    """Statements of one scope, nested blocks included, functions and classes excluded."""
    for node in body:
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for field in ("body", "orelse", "finalbody", "handlers"):
            child = getattr(node, field, None)
            if isinstance(child, list):
                yield from _walk_scope([c for c in child if isinstance(c, ast.stmt)] + [
                    s for h in child if isinstance(h, ast.ExceptHandler) for s in h.body
                ])


def find_insertion(source: str, expression: str, function: str | None, before_line: int | None) -> tuple[int, int]:
    """(line after which to insert, indentation) for the last assignment of ``expression``
    in ``function``'s scope before ``before_line``."""
    import re

    if not re.fullmatch(rf"{_EXPR_PART}(\.{_EXPR_PART})*", expression or ""):
        raise PlanRefused(f"cannot place the plan: the model expression {expression!r} is not a plain name")
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise InputFileError(f"the script no longer parses (line {exc.lineno}: {exc.msg})") from None
    scopes: list[list[ast.stmt]] = []
    if function in (None, "<module>"):
        scopes.append(tree.body)
    else:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function:
                scopes.append(node.body)
    best: ast.stmt | None = None
    for body in scopes:
        for node in _walk_scope(body):
            if before_line is not None and node.lineno >= before_line:
                continue
            for target in _targets(node):
                try:
                    text = ast.unparse(target)
                except Exception:
                    continue
                if text == expression and (best is None or node.lineno > best.lineno):
                    best = node
    if best is None:
        raise PlanRefused(
            f"cannot find where `{expression}` is assigned in {function or 'the script'}; "
            f"add the plan by hand: call memadvise.apply_plan({expression}, PLAN) after the model is built"
        )
    end = best.end_lineno or best.lineno
    if isinstance(best, (ast.With, ast.AsyncWith)):
        end = best.lineno  # `with ... as model:` — insert as the first statement of the block
        indent = best.body[0].col_offset
        return end, indent
    return end, best.col_offset


def plan_block(plan: dict, *, expression: str, baseline: dict, plan_path: str, restore: dict[str, bool]) -> str:
    """The code inserted into the script (no indentation)."""
    actions = [Action.from_json(a) for a in plan["actions"]]
    pred = plan["predicted"]
    lines = [
        f"{BEGIN_MARK} (rank {plan.get('rank')}, strategy {plan['strategy']}) ---",
        "# Generated by memadvise " + memadvise.__version__ + f" from {plan_path}. Public PyTorch APIs only:",
        "# torch.utils.checkpoint (non-reentrant, preserve_rng_state=True, so dropout",
        "# replays the same masks); gradients are unchanged, memory is traded for recompute.",
    ]
    by_kind: dict[str, list[str]] = {}
    for a in actions:
        by_kind.setdefault(a.action, []).append(display_unit(a.unit))
    labels = {
        CHECKPOINT: "checkpoint (recompute the whole unit in backward)",
        SELECTIVE: "selective (keep matmul/conv/attention outputs, recompute the rest)",
        OFFLOAD: "offload saved tensors to host memory (save_on_cpu)",
    }
    for kind, names in by_kind.items():
        lines.extend(textwrap.wrap(", ".join(names), width=76, initial_indent=f"# {labels[kind]}: ", subsequent_indent="#     "))
    restored = [display_unit(a.unit) for a in actions if restore.get(a.unit)]
    if restored:
        lines.append("# buffers updated in forward (BatchNorm running stats) are restored after recompute: "
                     + ", ".join(restored[:6]) + (" ..." if len(restored) > 6 else ""))
    peak, act = pred["peak_bytes"], pred["activation_bytes"]
    base_peak, base_act = baseline["peak_bytes"], baseline["activation_bytes"]
    lines.append(
        f"# predicted: peak {format_bytes(peak)} ({format_percent(peak / base_peak - 1 if base_peak else 0)} vs "
        f"{format_bytes(base_peak)}), activations {format_bytes(act)} "
        f"({format_percent(act / base_act - 1 if base_act else 0)}), step time {format_percent(pred['overhead'])}"
    )
    lines.append(_runtime_source().rstrip())
    lines.append(f"memadvise_apply({expression}, [")
    for a in actions:
        save_ops = sorted(POLICIES[a.policy]) if a.action == SELECTIVE and a.policy else None
        if not valid_unit_name(a.unit):  # Action validated already; belt and braces
            raise PlanRefused(f"unit {a.unit!r} is not a module path")
        lines.append(f"    ({a.unit!r}, {a.action!r}, {save_ops!r}, {bool(restore.get(a.unit))!r}),")
    lines.append("])")
    lines.append(END_MARK)
    return "\n".join(lines) + "\n"


def make_patch(script: Path, source: str, block: str, insert_after: int, indent: int, display_path: str) -> PatchResult:
    if BEGIN_MARK in source:
        raise PlanRefused(f"{display_path} already contains a memadvise plan; revert it first (git apply -R, or the .orig backup)")
    old_lines = source.splitlines(keepends=True)
    pad = " " * indent
    eol = "\r\n" if old_lines and old_lines[0].endswith("\r\n") else "\n"  # keep the file's line endings
    new_block = [(pad + line if line.strip() else "") + eol for line in block.splitlines()]
    before = old_lines[:insert_after]
    if before and not before[-1].endswith("\n"):
        before[-1] = before[-1] + eol
    new_lines = before + new_block + old_lines[insert_after:]
    new_source = "".join(new_lines)
    diff = unified_diff(source, new_source, display_path)
    return PatchResult(diff=diff, new_source=new_source, insert_line=insert_after, block=block)


def unified_diff(old: str, new: str, path: str) -> str:
    """A unified diff with ``a/``/``b/`` prefixes and correct end-of-file markers."""
    old_lines = old.splitlines(keepends=True)
    new_lines = new.splitlines(keepends=True)
    out = [f"diff --git a/{path} b/{path}\n"]
    for line in difflib.unified_diff(old_lines, new_lines, fromfile=f"a/{path}", tofile=f"b/{path}", n=3):
        if not line.endswith("\n"):
            line += "\n\\ No newline at end of file\n"
        out.append(line)
    return "".join(out)


def display_path(script: Path) -> str:
    """The script's path as `git apply`/`patch -p1` want it: relative to the working directory."""
    try:
        rel = os.path.relpath(script.resolve(), Path.cwd())
    except ValueError:
        rel = str(script)
    if rel.startswith(".."):
        return script.resolve().as_posix().lstrip("/")
    return Path(rel).as_posix()
