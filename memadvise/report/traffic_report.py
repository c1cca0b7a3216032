"""`memadvise show --traffic`: the roofline view of a step."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from memadvise.report.names import MIN_UNIT_WIDTH, fit_width, short_names
from memadvise.sizes import format_bytes

OPS_MIN_WIDTH = 20  # the op-chain column wraps; below this it is a column of fragments


def percent_or_words(value) -> str:
    """``"23%"``, or "not available" for a reading that is missing or not a finite number."""
    if isinstance(value, (int, float)) and value == value and abs(value) != float("inf"):
        return f"{value:.0f}%"
    return "not available"


def nvml_line(nv: dict) -> str:
    """One line of NVML's counters over a window of steps (``analysis.traffic.nvml_window``)."""
    gpm = nv.get("dram_bw_util_pct_mean")
    gpm_text = percent_or_words(gpm)
    if gpm_text != "not available" and nv.get("dram_bw_util_pct_max") is not None:
        gpm_text += f" (max {percent_or_words(nv['dram_bw_util_pct_max'])})"
    return (f"NVML over {nv.get('window', 'the steps')} ({nv.get('n_samples', 0)} samples): memory controller busy "
            f"{percent_or_words(nv.get('mem_util_pct_mean'))} of the time, DRAM bandwidth (GPM) {gpm_text}")


def render_traffic(console: Console, doc: dict) -> None:
    console.print(
        f"device ceilings (measured): {doc['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s, "
        f"{doc['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s fp32 matmul; ridge {doc['ridge_flops_per_byte']:.1f} FLOP/byte"
    )
    console.print(
        f"memory-bound ops: [bold]{doc['memory_bound_share']:.0%}[/bold] of step time "
        f"({doc['memory_bound_time_s'] * 1000:.1f} of {doc['step_time_s'] * 1000:.1f} ms), at "
        f"{doc['achieved_bandwidth_bytes_per_s'] / 1e9:.1f} GB/s achieved; {format_bytes(doc['bytes_moved'])} moved per step"
    )
    model = doc.get("model_step_time_s")
    if model:
        console.print(
            f"traffic model (matmuls replayed alone from memory, other ops at their roofline + dispatch cost, the optimizer "
            f"as measured on copies): {model * 1000:.1f} ms per step against "
            f"{doc['step_time_s'] * 1000:.1f} ms measured ({model / doc['step_time_s'] - 1:+.0%})"
        )
        roof = doc.get("roofline_step_time_s")
        if roof:
            console.print(f"every op at its roofline + dispatch cost: {roof * 1000:.1f} ms "
                          f"({roof / doc['step_time_s'] - 1:+.0%})")
    nv = doc.get("nvml")
    if nv:
        console.print(nvml_line(nv))
    table = Table(title="top memory-bound op chains", title_justify="left", show_edge=False, box=None, header_style="bold")
    for col, justify in (("unit", "left"), ("phase", "left"), ("×", "right"), ("ops", "left"), ("moved", "right"),
                         ("time", "right"), ("at bandwidth", "right")):
        table.add_column(col, justify=justify, no_wrap=col != "ops")
    # unit names cut on the left to leave the op list OPS_MIN_WIDTH columns at least
    units = [c["unit"] or "(outside modules)" for c in doc["chains"]]
    others = [len("backward"), 3, OPS_MIN_WIDTH, len("at bandwidth"), len("at bandwidth"), len("at bandwidth")]
    shown = short_names(units, max(MIN_UNIT_WIDTH, fit_width(console.width, others, 7) + 2))
    for c, unit in zip(doc["chains"], units):
        ops = ", ".join(c["ops"][:4]) + (" …" if len(c["ops"]) > 4 else "")
        table.add_row(shown[unit], c["phase"], str(c["count"]), ops, format_bytes(c["bytes"]),
                      f"{c['time_s'] * 1000:.2f} ms", f"{c['time_at_bandwidth_s'] * 1000:.2f} ms")
    console.print(table)
