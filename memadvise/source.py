"""Where a variable is assigned in a script: the site the patch of ``apply`` goes to, and
the construction site ``profile`` records. Pure ``ast``: no torch, no I/O."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from memadvise._errors import InputFileError, PlanRefused

_EXPR_PART = r"[A-Za-z_][A-Za-z0-9_]*"


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
                except Exception:  # a target ast cannot print back names nothing we look for
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


# Wrappers that change the unit paths: the callable's last name → the attribute through
# which the wrapper holds the model (the prefix of every unit path under it).
PATH_WRAPPERS = {
    "DistributedDataParallel": "module",
    "DDP": "module",
    "DataParallel": "module",
    "FullyShardedDataParallel": "_fsdp_wrapped_module",
    "FSDP": "_fsdp_wrapped_module",
    "compile": "_orig_mod",  # torch.compile(model) → OptimizedModule
}
# In-place transformations after which a plan should not be applied: model.compile()
# (the module's call goes through dynamo), fully_shard(model) (FSDP2: parameters become
# DTensors; torchtitan applies activation checkpointing before it).
IN_PLACE_WRAPPER_METHODS = {"compile"}
IN_PLACE_WRAPPER_CALLS = {"fully_shard"}


@dataclass
class ModelSite:
    """Where ``apply`` puts the plan: after ``line`` (1-based), at ``indent``, naming the
    model ``expression``; ``strip_prefix`` is the wrapper path ("module", "_orig_mod",
    "module._orig_mod") the profile's unit paths carry but the model at this point does
    not have yet; ``where`` says, in words, why here."""

    line: int
    indent: int
    expression: str
    strip_prefix: str
    where: str


@dataclass
class _Touch:
    node: ast.stmt
    kind: str  # "build" (assigned), "move" (a method call: .to(), .cuda(), load_state_dict), "wrap"
    prefix: str | None  # for "wrap": the attribute the wrapper holds the model in ("" in place)
    ancestors: list[ast.stmt]  # compound statements from the scope down to the node


def _call_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _unparse(node: ast.AST) -> str | None:
    try:
        return ast.unparse(node)
    except Exception:  # a node ast cannot print back names nothing we look for
        return None


def _classify(node: ast.stmt, expression: str) -> tuple[str, str | None] | None:
    if any(_unparse(t) == expression for t in _targets(node)):
        value = getattr(node, "value", None)
        if isinstance(value, ast.Call) and _call_name(value.func) in PATH_WRAPPERS:
            return "wrap", PATH_WRAPPERS[_call_name(value.func)]
        return "build", None
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        func = node.value.func
        if isinstance(func, ast.Attribute) and _unparse(func.value) == expression:
            return ("wrap", "") if func.attr in IN_PLACE_WRAPPER_METHODS else ("move", None)
        if _call_name(func) in IN_PLACE_WRAPPER_CALLS and any(_unparse(a) == expression for a in node.value.args):
            return "wrap", ""
    return None


def _touches(body: list[ast.stmt], expression: str, ancestors: list[ast.stmt] | None = None) -> list[_Touch]:
    """Statements of one scope (nested blocks included, functions and classes excluded)
    that build, move or wrap ``expression``, in source order."""
    ancestors = ancestors or []
    out: list[_Touch] = []
    for node in body:
        kind = _classify(node, expression)
        if kind is not None:
            out.append(_Touch(node, kind[0], kind[1], list(ancestors)))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for field_name in ("body", "orelse", "finalbody"):
            child = getattr(node, field_name, None)
            if isinstance(child, list) and child and isinstance(child[0], ast.stmt):
                out.extend(_touches(child, expression, ancestors + [node]))
        for handler in getattr(node, "handlers", []) or []:
            out.extend(_touches(handler.body, expression, ancestors + [node]))
    out.sort(key=lambda t: t.node.lineno)
    return out


def _scope_body(tree: ast.Module, function: str | None, first_line: int | None) -> tuple[list[ast.stmt], list[str]] | None:
    """The body of the scope ``function`` (its code's first line to tell namesakes apart),
    and the names of its parameters."""
    if function in (None, "<module>"):
        return tree.body, []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function:
            lines = {node.lineno} | {d.lineno for d in node.decorator_list}
            if first_line is None or first_line in lines:
                a = node.args
                params = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
                params += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
                found.append((node.body, params))
    return found[0] if len(found) == 1 else None


def _ran(node: ast.stmt, executed: set[int] | None) -> bool:
    if executed is None:
        return True
    last = node.lineno if isinstance(node, (ast.If, ast.For, ast.While, ast.With, ast.Try)) else (node.end_lineno or node.lineno)
    return any(line in executed for line in range(node.lineno, last + 1))


def _describe(node: ast.stmt, source_lines: list[str]) -> str:
    text = (_unparse(node) or "").split("\n")[0].strip()
    if len(text) > 60:
        text = text[:57] + "..."
    return f"`{text}` (line {node.lineno})"


def _site_in_scope(body: list[ast.stmt], expression: str, executed: set[int] | None, before_line: int | None,
                   units: list[str], source_lines: list[str]) -> ModelSite | str:
    """The site in one scope, or the reason there is none."""
    touches = [t for t in _touches(body, expression)
               if (before_line is None or t.node.lineno < before_line) and _ran(t.node, executed)
               # a method call inside a loop (model.train() in the training loop) is no site:
               # the plan would be applied again at every iteration
               and not (t.kind == "move" and any(isinstance(a, (ast.For, ast.While, ast.AsyncFor)) for a in t.ancestors))]
    if not touches:
        return "no statement that builds or moves it ran" if executed is not None else "it is never assigned"
    first_wrap = next((i for i, t in enumerate(touches) if t.kind == "wrap"), None)
    before_wrap = touches[:first_wrap] if first_wrap is not None else touches
    before_wrap = [t for t in before_wrap if t.kind != "wrap"]
    if before_wrap:
        anchor = before_wrap[-1]
        wraps = [t for t in touches if t.kind == "wrap" and t.node.lineno > anchor.node.lineno]
    else:  # built and wrapped in one statement: after it, through the wrapper (the units' paths have its prefix)
        anchor = touches[-1]
        wraps = []
    node = anchor.node
    # out of `if` branches that ran, so the plan applies whichever branch builds the model;
    # never past a wrapper, never past the line the training runs at
    all_wraps = [t.node for t in _touches(body, expression) if t.kind == "wrap"]
    limit = min([w.lineno for w in all_wraps if w.lineno > anchor.node.lineno] + ([before_line] if before_line else []),
                default=None)
    for outer in reversed(anchor.ancestors):
        if not isinstance(outer, ast.If):
            break
        if any(outer.lineno <= w.lineno <= (outer.end_lineno or outer.lineno) for w in all_wraps):
            break
        if limit is not None and (outer.end_lineno or outer.lineno) >= limit:
            break
        node = outer
    prefix = ".".join(w.prefix for w in reversed(wraps) if w.prefix)
    strip = ""
    if prefix and units and all(u == prefix or u.startswith(prefix + ".") for u in units if u):
        strip = prefix
    where = f"after {_describe(anchor.node, source_lines)}"
    if node is not anchor.node:
        where += f", after the `if` that holds it (line {node.lineno})"
    if wraps:
        where += f", before {_describe(wraps[0].node, source_lines)}, which changes the unit paths"
    elif anchor.kind == "wrap":
        where += ", through the wrapper (the unit paths include it)"
    skipped = [w for w in all_wraps if w.lineno > anchor.node.lineno and not _ran(w, executed)]
    if skipped:
        where += f"; {_describe(skipped[0], source_lines)} did not run when profiled"
    if isinstance(node, (ast.With, ast.AsyncWith)) and node is anchor.node:
        return ModelSite(node.lineno, node.body[0].col_offset, expression, strip, where)
    return ModelSite(node.end_lineno or node.lineno, node.col_offset, expression, strip, where)


def _site_in_methods(tree: ast.Module, function: str | None, first_line: int | None, expression: str,
                     units: list[str], source_lines: list[str]) -> ModelSite | None:
    """``self.model`` trained in one method and built in another (``__init__`` first): the
    site in the method that builds it, read from the script alone."""
    for cls in ast.walk(tree):
        if not isinstance(cls, ast.ClassDef):
            continue
        methods = [n for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        if not any(m.name == function and (first_line is None or first_line in
                                          {m.lineno} | {d.lineno for d in m.decorator_list}) for m in methods):
            continue
        for method in sorted(methods, key=lambda m: m.name != "__init__"):
            site = _site_in_scope(method.body, expression, None, None, units, source_lines)
            if isinstance(site, ModelSite):
                site.where += f" in {cls.name}.{method.name}()"
                return site
    return None


def find_model_site(source: str, frames: list[dict], units: list[str] = ()) -> ModelSite:
    """Where to apply a plan to the model that ran, from the frames that named it at the
    first step (``ModelInfo.site_frames``: function, line, expression, ...).

    Follows the model object, not its name: in the frame that held the model at the first
    step (and, when it is a function's parameter, in the callers that passed it), the
    last statement that built or moved it, on the path that ran (``executed_lines``),
    before any wrapper that changes the unit paths (DDP, FSDP, DataParallel,
    torch.compile). Raises PlanRefused, with the line to add by hand, when there is none.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise InputFileError(f"the script no longer parses (line {exc.lineno}: {exc.msg})") from None
    frames = [f for f in frames if f.get("expression")]
    source_lines = source.splitlines()
    reasons = []
    for frame in frames:
        expression = frame["expression"]
        if not re.fullmatch(rf"{_EXPR_PART}(\.{_EXPR_PART})*", expression or ""):
            reasons.append(f"the model expression {expression!r} is not a plain name")
            continue
        function = frame.get("function")
        scope = _scope_body(tree, function, frame.get("first_line"))
        label = "the script's top level" if function in (None, "<module>") else f"{function}()"
        if scope is None:
            reasons.append(f"{label} is not in the script as profiled")
            continue
        body, params = scope
        if expression.split(".")[0] in params and not expression.startswith("self."):
            reasons.append(f"`{expression}` is a parameter of {label}")
            continue  # applied at every call of the function: go to the caller that built it
        executed = frame.get("executed_lines")
        wrapped_in = frame.get("wrapped_in") or ""
        if wrapped_in:  # the frame names the model inside the wrapper the root is
            units = [u[len(wrapped_in) + 1:] if u.startswith(wrapped_in + ".") else "" if u == wrapped_in else u
                     for u in units]
        site = _site_in_scope(body, expression, set(executed) if executed is not None else None,
                              frame.get("line"), list(units), source_lines)
        if not isinstance(site, ModelSite) and expression.startswith("self."):
            site = _site_in_methods(tree, function, frame.get("first_line"), expression, list(units), source_lines) or site
        if isinstance(site, ModelSite) and wrapped_in:
            site.strip_prefix = ".".join(p for p in (wrapped_in, site.strip_prefix) if p)
            site.where += f" (the model inside the {wrapped_in!r} wrapper the training ran through)"
        if isinstance(site, ModelSite):
            if frame is not frames[0]:
                passed = any("is a parameter of" in r for r in reasons)
                site.where += f" in {label}" + (", which passes it on" if passed else "")
            return site
        reasons.append(f"`{expression}` in {label}: {site}")
    name = frames[0]["expression"] if frames else "model"
    why = "; ".join(reasons) if reasons else "the profile found no variable holding the model in the script"
    raise PlanRefused(f"cannot place the plan ({why}); add this line where the model is built: "
                      f"memadvise.apply_plan({name}, PLAN_FILE)")
