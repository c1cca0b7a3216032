"""Write BENCHMARKS.md from benchmarks/results/*.json (see compare.py)."""

from __future__ import annotations

import json
from pathlib import Path


def _mib(b) -> str:
    return "-" if b is None else f"{b / 2**20:.1f}"


def _pct(x) -> str:
    return "-" if x is None else f"{x * 100:+.1f}%"


def headline(rows: list[dict], max_overhead: float = 0.10) -> dict:
    """Largest measured activation reduction by memadvise at ≤ max_overhead measured step
    time, and the best alternative at equal or lower measured peak."""
    ok = [r for r in rows if r.get("kind", "").startswith("memadvise") and r.get("time_ratio") is not None
          and r["time_ratio"] - 1 <= max_overhead and r.get("activation_ratio") is not None]
    best = min(ok, key=lambda r: r["activation_ratio"], default=None)
    out = {"memadvise": best}
    if best is not None:
        alts = [r for r in rows if r.get("kind") == "alternative" and r.get("peak_bytes") is not None
                and r["peak_bytes"] <= best["peak_bytes"]]
        out["alternative"] = min(alts, key=lambda r: r["time_ratio"], default=None)
    return out


def write_markdown(results: Path, out: Path) -> None:
    lines = [
        "# Benchmarks: memadvise against the alternatives",
        "",
        "Produced by `python benchmarks/compare.py` (one process per model and size, 2-core CPU,",
        "no GPU). Peak and activation memory are measured independently of memadvise, by",
        "PyTorch's profiler memory timeline of one steady-state step (`tests/oracle.py`);",
        "step time is the median of the timed steps; every ratio is against the unmodified",
        "script measured in the same process (first and last run, averaged). Prediction",
        "error is |predicted − measured| / measured. Raw numbers: `benchmarks/results/*.csv`.",
        "",
    ]
    for path in sorted(results.glob("*.json")):
        if path.stem.endswith("-smoke") or path.stem in ("overhead", "scale"):
            continue
        rows = json.loads(path.read_text())
        model, size = path.stem.rsplit("-", 1)
        meta = next((r for r in rows if r.get("kind") == "meta"), {})
        base = next((r for r in rows if r.get("kind") == "baseline"), {})
        lines += [f"## {model} ({size})", "",
                  f"Baseline: peak {_mib(base.get('peak_bytes'))} MiB, activations "
                  f"{_mib(base.get('activation_bytes'))} MiB, step {1000 * (base.get('step_time_s') or 0):.1f} ms "
                  f"(baseline drift between first and last run: {_pct(base.get('baseline_drift'))}). "
                  f"Profiling: {meta.get('profile_s', 0):.1f} s, one instrumented step = "
                  f"{meta.get('instrumented_step_ratio', 0):.1f}x a plain step; suggest {meta.get('suggest_s', 0):.2f} s.",
                  "",
                  f"![{model} {size}](benchmarks/results/{path.stem}.png)", "",
                  "| variant | peak MiB | peak | activations | step time | predicted peak / overhead | error peak / overhead |",
                  "|---|---|---|---|---|---|---|"]
        for r in rows:
            if r.get("kind") in ("meta",):
                continue
            if "error" in r:
                lines.append(f"| {r['variant']} | could not run: {r['error']} | | | | | |")
                continue
            pred = ""
            err = ""
            if "predicted_peak_bytes" in r:
                pred = f"{_mib(r['predicted_peak_bytes'])} MiB / {_pct(r['predicted_overhead'])}"
                err = f"{r['peak_error'] * 100:.2f}% / {r['overhead_error_pts']:+.1f} pts"
            lines.append(f"| {r['variant']} | {_mib(r['peak_bytes'])} | {_pct(r['peak_ratio'] - 1)} | "
                         f"{_pct((r['activation_ratio'] or 1) - 1)} | {_pct(r['time_ratio'] - 1)} | {pred} | {err} |")
        h = headline(rows)
        if h["memadvise"]:
            m = h["memadvise"]
            text = (f"Headline: memadvise's best plan at ≤ 10% measured overhead ({m['variant']}) cuts activation "
                    f"memory by {(1 - m['activation_ratio']) * 100:.0f}% (peak {_pct(m['peak_ratio'] - 1)}, step time "
                    f"{_pct(m['time_ratio'] - 1)}).")
            a = h.get("alternative")
            text += (f" The fastest alternative at the same or lower peak: {a['variant']}, step time "
                     f"{_pct(a['time_ratio'] - 1)}." if a else " No alternative reaches that peak.")
            lines += ["", text]
        lines.append("")
    out.write_text("\n".join(lines) + "\n")
