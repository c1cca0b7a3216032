"""Terminal view of ``memadvise fit``."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from memadvise.schema.actions import display_unit
from memadvise.sizes import format_bytes, format_percent


def render_fit(console: Console, doc: dict) -> None:
    dim = doc["dimension"]
    dev = doc["device"]
    console.print(f"device: {dev['description']} → usable {format_bytes(dev['usable_bytes'])}")
    growth = ", ".join(f"{n} {k}" for k, n in doc["growth"].items())
    console.print(f"profiled {dim} = {', '.join(map(str, doc['profiled']))}; storages that grow: {growth}")
    table = Table(show_edge=False, box=None, header_style="bold")
    for col, justify in (("strategy", "left"), (f"largest {dim}", "right"), ("peak", "right"),
                         ("step time", "right"), ("overhead", "right"), (f"{dim}/s", "right")):
        table.add_column(col, justify=justify, no_wrap=True)
    for r in doc["strategies"]:
        table.add_row(r["strategy"], str(r["largest"]) if r["largest"] else "does not fit",
                      format_bytes(r["peak_bytes"]), f"{r['step_time_s'] * 1000:.1f} ms" if r["step_time_s"] else "-",
                      format_percent(r["overhead"]) if r["overhead"] is not None else "-",
                      f"{r['throughput_per_s']:.1f}" if r["throughput_per_s"] else "-")
    console.print(table)
    t = doc.get("target")
    if t:
        if t["fits_without_plan"]:
            console.print(f"{dim}={t['value']} fits without a plan: peak {format_bytes(t['peak_bytes_without_plan'])}")
        elif t["plan"]:
            p = t["plan"]
            units = ", ".join(f"{a['action']} {display_unit(a['unit'])}" for a in p["actions"][:8])
            more = f" (+{len(p['actions']) - 8} more)" if len(p["actions"]) > 8 else ""
            console.print(f"{dim}={t['value']}: needs {format_bytes(t['peak_bytes_without_plan'])} without a plan; "
                          f"with [bold]{units}{more}[/bold]: peak {format_bytes(p['peak_bytes'])}, "
                          f"step time {format_percent(p['overhead'])}")
        else:
            console.print(f"[red]{dim}={t['value']} does not fit[/red]: the lowest predicted peak is "
                          f"{format_bytes(t['lowest_peak_bytes'])}")
