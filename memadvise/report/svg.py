"""Drawing primitives of the HTML report: colours, escaping, coordinates, axes and ticks,
step-shaped areas and lines, as SVG text. Charts are drawn in Python into inline SVG
(``report/html.py``); nothing here knows what a profile is.
"""

from __future__ import annotations

import html
import json
import math

from memadvise.schema.categories import Phase
from memadvise.sizes import byte_unit, format_bytes

CATEGORY_LABELS = {
    "parameter": "parameters",
    "gradient": "gradients",
    "optimizer_state": "optimizer state",
    "activation": "activations",
    "temporary": "temporaries",
    "input": "input",
    "untracked": "untracked (no tensor)",
}
# Tableau 10: distinct in colour-blind simulations, printable
CATEGORY_COLORS = {
    "parameter": "#4e79a7",
    "gradient": "#f28e2b",
    "optimizer_state": "#59a14f",
    "activation": "#e15759",
    "temporary": "#edc948",
    "input": "#b07aa1",
    "untracked": "#9c755f",
}
PHASE_FILL = {int(Phase.FORWARD): "#eaf1fb", int(Phase.BACKWARD): "#fbecef", int(Phase.OPTIMIZER): "#fbf5e1"}
# recompute cost per byte, cheap → expensive (viridis, reversed)
COST_RAMP = ("#fde725", "#90d743", "#35b779", "#21918c", "#31688e", "#443983", "#440154")

WIDTH = 960  # SVG user units; the page scales them to its width


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def exact_bytes(n: int | float) -> str:
    """``6291456`` → ``6,291,456 B (6.0 MiB)``: exact, and readable."""
    n = int(n)
    return f"{n:,} B" + (f" ({format_bytes(n)})" if abs(n) >= 1024 else "")


def coord(v: float) -> str:
    """SVG coordinate with one decimal, no trailing ``.0``."""
    s = f"{v:.1f}"
    return s[:-2] if s.endswith(".0") else s


def json_script(element_id: str, obj: object) -> str:
    # "<" escaped so that no text in the data can close the script element
    text = json.dumps(obj, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def nice_step(span: float, target: int = 5) -> float:
    if span <= 0:
        return 1.0
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


def byte_ticks(top: float) -> list[tuple[float, str]]:
    unit, name = byte_unit(top)
    step = nice_step(top / unit) * unit
    ticks = []
    v = 0.0
    while v <= top * 1.0001:
        ticks.append((v, f"{v / unit:g} {name}"))
        v += step
    return ticks


def linear_ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    step = nice_step(hi - lo, target)
    start = math.ceil(lo / step) * step
    out = []
    v = start
    while v <= hi + step * 1e-9:
        out.append(round(v, 10))
        v += step
    return out


def cost_color(t: float) -> str:
    t = min(1.0, max(0.0, t))
    x = t * (len(COST_RAMP) - 1)
    i = min(int(x), len(COST_RAMP) - 2)
    f = x - i
    a, b = COST_RAMP[i], COST_RAMP[i + 1]
    rgb = [round(int(a[j:j + 2], 16) * (1 - f) + int(b[j:j + 2], 16) * f) for j in (1, 3, 5)]
    return "#" + "".join(f"{c:02x}" for c in rgb)


class Axes:
    """A plot area inside an SVG: data → user units."""

    def __init__(self, left, top, width, height, x0, x1, y0, y1):
        self.left, self.top, self.width, self.height = left, top, width, height
        self.x0, self.x1, self.y0, self.y1 = x0, x1, y0, y1

    def sx(self, v):
        return self.left + (v - self.x0) / ((self.x1 - self.x0) or 1) * self.width

    def sy(self, v):
        return self.top + self.height - (v - self.y0) / ((self.y1 - self.y0) or 1) * self.height

    @property
    def bottom(self):
        return self.top + self.height

    @property
    def right(self):
        return self.left + self.width


def svg_open(height: float, chart: str, expected: int, label: str) -> str:
    return (f'<svg class="chart" data-chart="{chart}" data-expected="{expected}" viewBox="0 0 {WIDTH} {coord(height)}" '
            f'role="img" aria-label="{esc(label)}">')


def y_axis(ax: Axes, ticks: list[tuple[float, str]]) -> str:
    parts = []
    for v, label in ticks:
        y = coord(ax.sy(v))
        parts.append(f'<line class="grid" x1="{coord(ax.left)}" x2="{coord(ax.right)}" y1="{y}" y2="{y}"/>'
                     f'<text class="tick" x="{coord(ax.left - 6)}" y="{y}" text-anchor="end" dy="0.32em">{esc(label)}</text>')
    return "".join(parts)


def x_axis(ax: Axes, ticks: list[tuple[float, str]], title: str) -> str:
    parts = [f'<line class="axis" x1="{coord(ax.left)}" x2="{coord(ax.right)}" y1="{coord(ax.bottom)}" y2="{coord(ax.bottom)}"/>']
    for v, label in ticks:
        x = coord(ax.sx(v))
        parts.append(f'<line class="axis" x1="{x}" x2="{x}" y1="{coord(ax.bottom)}" y2="{coord(ax.bottom + 4)}"/>'
                     f'<text class="tick" x="{x}" y="{coord(ax.bottom + 16)}" text-anchor="middle">{esc(label)}</text>')
    parts.append(f'<text class="axis-title" x="{coord(ax.left + ax.width / 2)}" y="{coord(ax.bottom + 34)}" '
                 f'text-anchor="middle">{esc(title)}</text>')
    return "".join(parts)


def step_area(xs: list[str], top: list[str], bottom: list[str]) -> str:
    """A stacked step area: the upper edge left to right, the lower edge back."""
    n = len(top)
    out = [f"M{xs[0]},{bottom[0]}V{top[0]}H{xs[1]}"]
    for i in range(1, n):
        if top[i] != top[i - 1]:
            out.append(f"V{top[i]}")
        out.append(f"H{xs[i + 1]}")
    out.append(f"V{bottom[n - 1]}")
    for i in range(n - 1, -1, -1):
        out.append(f"H{xs[i]}")
        if i > 0 and bottom[i - 1] != bottom[i]:
            out.append(f"V{bottom[i - 1]}")
    out.append("Z")
    return "".join(out)


def step_line(xs: list[str], ys: list[str]) -> str:
    out = [f"M{xs[0]},{ys[0]}H{xs[1]}"]
    for i in range(1, len(ys)):
        if ys[i] != ys[i - 1]:
            out.append(f"V{ys[i]}")
        out.append(f"H{xs[i + 1]}")
    return "".join(out)
