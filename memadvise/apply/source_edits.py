"""Traffic changes written into the script's own calls, as a reviewer would write them: the
optimizer's constructor call takes ``fused=True`` (or ``foreach=``), and its ``zero_grad``
calls take ``set_to_none=True``. Pure ``ast``: no torch, no I/O.

An edit replaces a span of one line (``ast`` offsets are UTF-8 bytes), so the rest of the
user's line, its comments and its formatting stay as they were.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

# Keyword values per optimizer implementation: the chosen one set, a conflicting one
# already in the call neutralised (PyTorch refuses fused=True with foreach=True).
FLAGS = {
    "fused": {"fused": "True", "foreach": "False"},
    "foreach": {"foreach": "True", "fused": "False"},
    "for-loop": {"foreach": "False", "fused": "False"},
}
PRIMARY = {"fused": "fused", "foreach": "foreach", "for-loop": "foreach"}


@dataclass(frozen=True)
class Span:
    line: int  # 1-based
    start: int  # byte offsets in the line, end exclusive
    end: int
    text: str


def apply_spans(source: str, spans: list[Span]) -> dict[int, str]:
    """The edited lines (1-based line -> new text, without its end of line)."""
    lines = source.splitlines()
    out: dict[int, bytes] = {}
    for span in sorted(spans, key=lambda s: (s.line, -s.start)):
        raw = out.get(span.line, lines[span.line - 1].encode("utf-8"))
        out[span.line] = raw[:span.start] + span.text.encode("utf-8") + raw[span.end:]
    return {line: raw.decode("utf-8") for line, raw in out.items()}


def _single_line(node: ast.AST) -> bool:
    return node.lineno == node.end_lineno


def _assigned_call(tree: ast.Module, expression: str, end_line: int) -> ast.Call | None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.end_lineno == end_line:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(ast.unparse(t) == expression for t in targets) and isinstance(node.value, ast.Call):
                return node.value
    return None


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _set_keyword(source_lines: list[str], call: ast.Call, name: str, value: str) -> Span | None:
    """Set ``name=value`` in ``call``: its value replaced, or the keyword appended."""
    for kw in call.keywords:
        if kw.arg == name:
            if not _single_line(kw.value):
                return None
            return Span(kw.value.lineno, kw.value.col_offset, kw.value.end_col_offset, value)
    items = [*call.args, *call.keywords]
    if items:
        last = max(items, key=lambda n: (n.end_lineno, n.end_col_offset))
        return Span(last.end_lineno, last.end_col_offset, last.end_col_offset, f", {name}={value}")
    raw = source_lines[call.func.end_lineno - 1].encode("utf-8")
    paren = raw.find(b"(", call.func.end_col_offset)
    if paren < 0:
        return None
    return Span(call.func.end_lineno, paren + 1, paren + 1, f"{name}={value}")


def constructor_spans(source: str, expression: str, end_line: int, class_name: str,
                      variant: str) -> list[Span] | None:
    """Spans that make the optimizer's constructor call (``expression = Class(...)``,
    ending on ``end_line``) pick ``variant``; ``None`` when there is no such call."""
    tree = ast.parse(source)
    call = _assigned_call(tree, expression, end_line)
    if call is None or _call_name(call) != class_name:
        return None
    lines = source.splitlines()
    present = {kw.arg for kw in call.keywords}
    spans = []
    for name, value in FLAGS[variant].items():
        if name == PRIMARY[variant] or name in present:
            span = _set_keyword(lines, call, name, value)
            if span is None:
                return None
            spans.append(span)
    return spans


def zero_grad_spans(source: str, expression: str, function: str | None) -> tuple[list[Span], int]:
    """Spans making every ``expression.zero_grad(...)`` call in ``function``'s body pass
    ``set_to_none=True``, and how many such calls there are (calls without arguments
    already do: PyTorch's default since 2.0)."""
    tree = ast.parse(source)
    scopes: list[ast.AST] = [tree] if function in (None, "<module>") else [
        n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == function
    ]
    spans, calls = [], 0
    for scope in scopes:
        for node in ast.walk(scope):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "zero_grad" and ast.unparse(node.func.value) == expression):
                continue
            calls += 1
            for kw in node.keywords:
                if kw.arg == "set_to_none" and not (isinstance(kw.value, ast.Constant) and kw.value.value is True):
                    if _single_line(kw.value):
                        spans.append(Span(kw.value.lineno, kw.value.col_offset, kw.value.end_col_offset, "True"))
            if node.args and _single_line(node.args[0]):
                arg = node.args[0]
                spans.append(Span(arg.lineno, arg.col_offset, arg.end_col_offset, "set_to_none=True"))
    return spans, calls
