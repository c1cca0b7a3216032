"""Where a variable is assigned in a script: the site the patch of ``apply`` goes to, and
the construction site ``profile`` records. Pure ``ast``: no torch, no I/O."""

from __future__ import annotations

import ast
import re

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
