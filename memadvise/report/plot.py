"""``memadvise show --plot``: the step's memory timeline as a static PNG (for issues,
chat and CI artefacts).

matplotlib is optional (the ``bench`` extra); it is imported here only, with the Agg
canvas and no pyplot, so nothing global (backends, figure registry) is touched.
"""

from __future__ import annotations

import io

import numpy as np

from memadvise._errors import UsageError
from memadvise.schema.trace import Trace
from memadvise.report.chart_data import MAX_POINTS, bucket_max, phase_spans
from memadvise.report.svg import CATEGORY_COLORS, CATEGORY_LABELS, PHASE_FILL, nice_step
from memadvise.schema.categories import CATEGORY_NAMES, Phase
from memadvise.schema.profile import Profile
from memadvise.sizes import byte_unit, format_bytes


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter, MultipleLocator
    except ImportError:
        raise UsageError("--plot needs matplotlib, which is not installed: pip install 'memadvise[bench]'") from None
    return Figure, FigureCanvasAgg, FuncFormatter, MultipleLocator


def timeline_png(profile: Profile, *, width_in: float = 10.0, height_in: float = 4.2, dpi: int = 120) -> bytes:
    """The recorded step's live bytes by category over its ops, phases shaded, peak
    marked, as PNG bytes. Long steps are bucketed as in the HTML report (each bucket at
    its largest total, so the peak survives)."""
    Figure, FigureCanvasAgg, FuncFormatter, MultipleLocator = _matplotlib()
    trace = Trace(profile)
    tl = trace.baseline_timeline()
    n = len(tl.clock)
    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    s = profile.records.summary
    ax.set_title(f"{profile.records.script.file_name}: peak {format_bytes(s.peak_bytes)} in {s.peak_phase}, "
                 f"activations {format_bytes(s.activation_bytes)}", fontsize=11, loc="left")
    if n:
        b = bucket_max(np.arange(n, dtype=np.float64), tl.by_category, n, MAX_POINTS)
        edges = b.edges()
        top = float(max(tl.peak_bytes, 1)) * 1.1
        for ph, lo, hi in phase_spans(tl.phase):
            ax.axvspan(lo, hi, color=PHASE_FILL.get(ph, "#f4f4f4"), lw=0, zorder=0)
            if (hi - lo) / n > 0.08:
                ax.text((lo + hi) / 2, top * 0.985, Phase(ph).label, ha="center", va="top", fontsize=9, color="#66707a")
        cum = np.zeros(len(b.rows), dtype=np.float64)
        for c, name in enumerate(CATEGORY_NAMES):
            col = b.rows[:, c].astype(np.float64)
            if not col.any():
                continue
            lower, upper = cum.copy(), cum + col
            ax.fill_between(edges, np.append(lower, lower[-1]), np.append(upper, upper[-1]), step="post",
                            color=CATEGORY_COLORS[name], lw=0, label=CATEGORY_LABELS[name], zorder=2)
            cum = upper
        k = tl.peak_index
        ax.annotate(f"peak {format_bytes(tl.peak_bytes)}", xy=(k + 0.5, tl.peak_bytes), xytext=(0, 12),
                    textcoords="offset points", ha="center", fontsize=9, fontweight="bold",
                    arrowprops={"arrowstyle": "-|>", "color": "#111", "lw": 0.8}, zorder=4)
        ax.set_xlim(0, n)
        ax.set_ylim(0, top)
        unit, uname = byte_unit(top)
        ax.yaxis.set_major_locator(MultipleLocator(nice_step(top / unit) * unit))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v / unit:g} {uname}"))
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=8, frameon=False, ncol=6)
    else:
        ax.text(0.5, 0.5, "the profile recorded no ops", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("ops of the recorded step", fontsize=9)
    ax.set_ylabel("live bytes on the training device", fontsize=9)
    ax.grid(axis="y", alpha=0.25, zorder=1)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
