"""Unit names that fit a terminal column and stay unique.

A unit's qualified name (``model.layers.7.self_attn``) is read from the right: the
innermost modules tell units apart, the common prefix does not. Names longer than the
column are cut on the left (``…layers.7.self_attn``); where two cut names collide, the
start of the name comes back before the ellipsis (``enc…layers.7.self_attn``).
"""

from __future__ import annotations

from typing import Iterable

ELLIPSIS = "…"
MIN_UNIT_WIDTH = 12  # below this a cut name says too little to be worth the column
TABLE_PADDING = 2  # rich pads every cell one column on each side
TABLE_SEPARATOR = 1  # and draws one column between two cells


def _common_suffix(a: str, b: str) -> int:
    n = 0
    while n < len(a) and n < len(b) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def _needed(name: str, others: list[str]) -> dict[int, int] | None:
    """{dotted part index: characters of its end to keep} that tell ``name`` from every
    other name: for each other name, the part holding the rightmost character where the
    two differ (the part after it where that is a dot). Only the last part is ever cut
    (kept from that character on), so an ellipsis before a dot-free text hides whole
    parts: ``…1.…q_proj`` is part ``1``, never ``11``. None where another name ends
    with the whole of this one."""
    parts = name.split(".")
    bounds, pos = [], 0
    for p in parts:
        bounds.append((pos, pos + len(p)))  # [start, end) of each part
        pos += len(p) + 1
    last = len(parts) - 1
    need = {last: 1}
    for m in others:
        at = len(name) - 1 - _common_suffix(name, m)
        if at < 0:
            return None
        i = next(k for k, (a, e) in enumerate(bounds) if at <= e)
        if at == bounds[i][1]:  # the dot after part i: the next part, whole, tells them apart
            i += 1
            at = bounds[i][0]
        keep = bounds[i][1] - at if i == last else len(parts[i])
        need[i] = max(need.get(i, 0), keep)
    return need


def _render(parts: list[str], keep: dict[int, int]) -> str:
    out, last = "", -1
    for i in sorted(keep):
        text = parts[i] if keep[i] >= len(parts[i]) else ELLIPSIS + parts[i][-keep[i]:]
        if i == 0:
            out = text
        elif last == i - 1:
            out += "." + text
        else:
            out += ("." if out else "") + (text if text.startswith(ELLIPSIS) else ELLIPSIS + text)
        last = i
    return out


def _shorten(name: str, others: list[str], width: int) -> str:
    """``name`` in at most ``width`` characters, told apart from ``others``, or whole."""
    if len(name) <= width:
        return name
    keep = _needed(name, others)
    if keep is None:
        return name
    parts = name.split(".")
    if len(_render(parts, keep)) > width:
        return name
    last = len(parts) - 1
    while keep[last] < len(parts[last]) and len(_render(parts, {**keep, last: keep[last] + 1})) <= width:
        keep[last] += 1  # first the end of the last part, as far as it fits
    # then whole parts from the end leftwards (the module path read from its end)
    for i in range(last - 1, -1, -1):
        trial = {**keep, i: len(parts[i])}
        if len(_render(parts, trial)) <= width:
            keep = trial
        elif i not in keep:
            break
    return _render(parts, keep)


def short_names(names: Iterable[str], width: int) -> dict[str, str]:
    """``{name: displayed}`` with every displayed name at most ``width`` characters where
    that keeps it apart from the others (else whole); a cut name shows, for every other
    name, a character where the two differ."""
    names = list(dict.fromkeys(names))
    width = max(width, len(ELLIPSIS) + 1)
    out = {n: _shorten(n, [m for m in names if m != n], width) for n in names}
    counts: dict[str, int] = {}
    for n in names:
        counts[out[n]] = counts.get(out[n], 0) + 1
    for n in names:  # never expected; unique beats short
        if counts[out[n]] > 1:
            out[n] = n
    return out


def fit_width(total: int, others: Iterable[int], n_columns: int) -> int:
    """Room left for one column of a rich table ``total`` columns wide, whose other
    columns need ``others`` characters each."""
    chrome = n_columns * TABLE_PADDING + (n_columns - 1) * TABLE_SEPARATOR
    return total - sum(others) - chrome


def cut_right(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - len(ELLIPSIS))] + ELLIPSIS
