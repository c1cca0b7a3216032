"""Turn a plan into a reviewable change of the user's script: a unified diff or a rewrite.

The plan's block goes right after the statement that last assigns the root model's
variable before the training loop (found at profile time): a header saying what each unit
gets, every side effect and the prediction, the op sets a selective plan keeps (named
once), and one ``memadvise_apply`` call. The runtime it calls (``memadvise.apply.runtime``,
verbatim) goes once at module level after the script's imports, so the patched script
needs only PyTorch and pickle finds its classes by name; ``--runtime import`` imports it
instead. Every generated line fits ``WIDTH`` columns.
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

from memadvise._version import __version__
from memadvise._errors import InputFileError, PlanRefused
from memadvise.schema.actions import CHECKPOINT, OFFLOAD, POLICIES, SELECTIVE, Action, display_unit, valid_unit_name
from memadvise.source import find_insertion  # noqa: F401  (re-exported)
from memadvise.apply import runtime
from memadvise.sizes import format_bytes, format_percent

BEGIN_MARK = "# --- memadvise plan: begin"
END_MARK = "# --- memadvise plan: end ---"

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


RUNTIME_MODES = ("inline", "import")
RUNTIME_IMPORT = "from memadvise.apply.runtime import memadvise_apply"
WIDTH = 100  # columns of every generated line (a test checks)
_LABELS = {
    CHECKPOINT: "checkpoint (recompute the whole unit in backward)",
    SELECTIVE: "selective {name} (keep these ops' outputs, recompute the rest)",
    OFFLOAD: "offload saved tensors to host memory (save_on_cpu)",
}


def runtime_source(names: list[str]) -> str:
    """What ``--runtime inline`` inserts: the runtime's classes and functions, verbatim."""
    parts = [inspect.getsource(getattr(runtime, n)).rstrip() for n in dict.fromkeys(names)]
    return "\n\n\n".join(parts) + "\n"


def definitions_line(source: str) -> int:
    """The line after which module-level definitions go: after the docstring and the
    imports that open the script (0: at the top)."""
    tree = ast.parse(source)
    line = 0
    for i, node in enumerate(tree.body):
        docstring = i == 0 and isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant)
        if not (docstring or isinstance(node, (ast.Import, ast.ImportFrom))):
            break
        line = node.end_lineno or node.lineno
    return line


def definitions_block(names: list[str]) -> str:
    """The runtime at module level (``torch.save(model)`` pickles its classes by name)."""
    return "\n".join([
        "",
        f"{BEGIN_MARK} (runtime) ---",
        "# memadvise's runtime (memadvise/apply/runtime.py), inlined so that this script needs",
        "# only PyTorch; the plan below calls it.",
        "",
        "",
        runtime_source(names).rstrip(),
        END_MARK,
    ]) + "\n"


def constant_name(policy: str | None, index: int) -> str:
    """``save-matmul`` -> ``SAVE_MATMUL``; a keep list of no preset -> ``KEEP_1``."""
    return policy.upper().replace("-", "_") if policy else f"KEEP_{index}"


def _constant(name: str, items: list, width: int) -> list[str]:
    """``NAME = {...}`` in lines of at most ``width`` columns."""
    one = f"{name} = {{{', '.join(map(repr, items))}}}"
    if len(one) <= width:
        return [one]
    body = textwrap.wrap(", ".join(map(repr, items)) + ",", width=width, initial_indent="    ",
                         subsequent_indent="    ", break_long_words=False, break_on_hyphens=False)
    return [f"{name} = {{", *body, "}"]


def _comment_list(label: str, names: list[str], width: int) -> list[str]:
    """``# label:`` then the names, wrapped between names, never inside one."""
    return [f"# {label}:"] + textwrap.wrap(", ".join(names), width=width, initial_indent="#     ",
                                           subsequent_indent="#     ", break_long_words=False,
                                           break_on_hyphens=False)


def plan_block(plan: dict, *, expression: str, baseline: dict, plan_path: str, restore: dict[str, bool],
               runtime_mode: str = "inline", hugging_face: bool = False, indent: int = 0) -> str:
    """The code inserted at the model's site (without its ``indent``); the runtime is in
    ``definitions_block`` or imported."""
    from memadvise.apply.runtime_apply import plan_name, runtime_keep

    actions = [Action.from_json(a) for a in plan["actions"]]
    pred = plan["predicted"]
    width = WIDTH - indent
    lines = [
        f"{BEGIN_MARK} (rank {plan.get('rank')}, strategy {plan['strategy']}) ---",
        f"# Generated by memadvise {__version__} from {plan_path}; undo: git apply -R PATCH.",
        "# torch.utils.checkpoint (non-reentrant, preserve_rng_state=True: dropout replays its",
        "# masks), so gradients are unchanged; memory is traded for recompute.",
    ]
    groups: dict[str, list[str]] = {}
    for a in actions:
        label = _LABELS[a.action].format(name=plan_name(a))
        groups.setdefault(label, []).append(display_unit(a.unit))
    for label, names in groups.items():
        lines += _comment_list(label, names, width)
    restored = [display_unit(a.unit) for a in actions if restore.get(a.unit)]
    if restored:
        lines += _comment_list("buffers (BatchNorm running stats) restored after each recompute", restored, width)
    if hugging_face:
        lines.append(f"# Side effect: {expression}.config.use_cache = False (a KV cache would grow twice"
                     " under recompute).")
    else:
        lines.append("# Side effects: none (a Hugging Face model's config.use_cache would be turned off).")
    lines.append("# Each planned module's _memadvise_plan says what it runs; the model deep-copies,")
    lines.append("# pickles (torch.save) and loads its state_dict as before.")
    peak, act = pred["peak_bytes"], pred["activation_bytes"]
    base_peak, base_act = baseline["peak_bytes"], baseline["activation_bytes"]
    lines.append(
        f"# predicted: peak {format_bytes(peak)} ({format_percent(peak / base_peak - 1 if base_peak else 0)} vs "
        f"{format_bytes(base_peak)}), activations {format_bytes(act)} "
        f"({format_percent(act / base_act - 1 if base_act else 0)}),"
    )
    lines.append(f"#     step time {format_percent(pred['overhead'])}")
    if runtime_mode == "import":
        lines.append(RUNTIME_IMPORT)
    constants: dict[tuple, str] = {}
    calls = []
    for a in actions:
        if not valid_unit_name(a.unit):  # Action validated already; belt and braces
            raise PlanRefused(f"unit {a.unit!r} is not a module path")
        keep = runtime_keep(a)
        arg = "None"
        if keep is not None:
            key = tuple(keep)
            if key not in constants:
                preset = a.policy if a.policy and keep == sorted(POLICIES.get(a.policy, ())) else None
                constants[key] = constant_name(preset, len(constants) + 1)
                lines += _constant(constants[key], keep, width)
            arg = constants[key]
        name = plan_name(a)
        rest = f"{a.action!r}, {arg}, {bool(restore.get(a.unit))!r}" + (f", {name!r}" if name else "") + "),"
        one = f"    ({a.unit!r}, {rest}"
        calls += [one] if len(one) <= width else [f"    ({a.unit!r},", f"     {rest}"]
    lines.append(f"memadvise_apply({expression}, [")
    lines += calls
    lines.append("])")
    lines.append(END_MARK)
    return "\n".join(lines) + "\n"


def make_patch(script: Path, source: str, block: str, insert_after: int, indent: int, display_path: str) -> PatchResult:
    return make_patch_multi(script, source, [(insert_after, indent, block)], display_path)


def make_patch_multi(script: Path, source: str, inserts: list[tuple[int, int, str]], display_path: str,
                     replacements: dict[int, str] | None = None) -> PatchResult:
    """Insert each ``(after line, indentation, block)`` and replace the lines of
    ``replacements`` (1-based line -> new text); one diff for all of them."""
    if BEGIN_MARK in source:
        raise PlanRefused(f"{display_path} already contains a memadvise plan; revert it first (git apply -R, or the .orig backup)")
    old_lines = source.splitlines(keepends=True)
    eol = "\r\n" if old_lines and old_lines[0].endswith("\r\n") else "\n"  # keep the file's line endings
    new_lines = list(old_lines)
    for number, text in (replacements or {}).items():
        old = old_lines[number - 1]
        new_lines[number - 1] = text + old[len(old.rstrip("\r\n")):]
    if new_lines and not new_lines[-1].endswith("\n"):
        new_lines[-1] = new_lines[-1] + eol
    for insert_after, indent, block in sorted(inserts, key=lambda x: -x[0]):
        pad = " " * indent
        lines = [(pad + line if line.strip() else "") + eol for line in block.splitlines()]
        new_lines[insert_after:insert_after] = lines
    if old_lines and not old_lines[-1].endswith("\n") and max(i for i, _, _ in inserts) < len(old_lines):
        new_lines[-1] = new_lines[-1].rstrip("\r\n")  # the file still ends without a newline
    new_source = "".join(new_lines)
    diff = unified_diff(source, new_source, display_path)
    return PatchResult(diff=diff, new_source=new_source, insert_line=min(i for i, _, _ in inserts),
                       block="".join(b for _, _, b in inserts))


def tune_block(names: list[str], notes: list[str], statements: list[str], runtime_names: list[str],
               runtime_mode: str, indent: int = 0) -> str:
    """Traffic changes at one site: what each does, then its statements (none where the
    script's own calls were edited)."""
    width = WIDTH - indent
    lines = [f"{BEGIN_MARK} (traffic: {', '.join(names)}) ---"]
    for note in notes:
        lead = note[:len(note) - len(note.lstrip())]
        lines += textwrap.wrap(note.strip(), width=width, initial_indent=f"# {lead}",
                               subsequent_indent=f"# {lead}    ", break_long_words=False, break_on_hyphens=False)
    if runtime_mode == "import" and runtime_names:
        lines.append(f"from memadvise.apply.runtime import {', '.join(dict.fromkeys(runtime_names))}")
    lines += statements
    lines.append(END_MARK)
    return "\n".join(lines) + "\n"


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
