"""The HTML report of a 50,000-op step: file size, time to write it, and time to open it in
headless Chromium. Targets: under 10 MB, opens in under 3 s.

The profile is the synthetic chain of memadvise/testing/synthetic.py (12,500 blocks of 4
ops); the plans are those `memadvise suggest` makes for it, so the report draws every
section (timeline with the recommended plan overlaid, 12,500-box module treemap, Pareto
chart). "Opens" is the page's own clock: ``performance.now()`` when its script has drawn
every chart (``data-render-ms`` on <body>), read from the DOM that Chromium dumps; the
wall time of the whole Chromium process (start-up included) is reported beside it.

    python benchmarks/report_scale.py [--blocks 12500] [--out benchmarks/results/report_scale.json]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from memadvise.schema.profile import write_profile
from memadvise.testing.synthetic import chain_profile

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def memadvise(*args: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "memadvise", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"memadvise {args[0]} failed: {proc.stderr.strip()[-2000:]}")
    return time.perf_counter() - t0


def open_in_chromium(chromium: str, page: Path, tmp: Path) -> tuple[float, float]:
    """(the page's render time in ms by its own clock, the Chromium process's wall time in s)."""
    t0 = time.perf_counter()
    proc = subprocess.run([chromium, *FLAGS, f"--user-data-dir={tmp / 'chromium'}", "--virtual-time-budget=30000",
                           "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t0
    body = re.search(r"<body[^>]*>", proc.stdout)
    ready = body and 'data-ready="1"' in body.group(0)
    ms = body and re.search(r'data-render-ms="(\d+)"', body.group(0))
    if proc.returncode != 0 or not ready or not ms:
        raise SystemExit(f"the report did not finish drawing in Chromium: {proc.stderr.strip()[-1000:]}")
    return float(ms.group(1)), wall


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--blocks", type=int, default=12_500, help="chain blocks (4 ops each)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "report_scale.json"))
    args = p.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    n = args.blocks
    doc = chain_profile(n, [65536 + 64 * (i % 7) for i in range(n)], 16384, device_type="cuda",
                        fwd_us=[50.0 + 10 * (i % 9) for i in range(n)])
    n_ops = len(doc["trace"]["ops"]["name"])
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        profile, plan, report = tmp / "profile.json", tmp / "plan.json", tmp / "report.html"
        write_profile(doc, profile)
        suggest_s = memadvise("suggest", "--profile", str(profile), "--out", str(plan), "--budget", "60%", "--json")
        report_s = memadvise("report", "--profile", str(profile), "--plan", str(plan), "--out", str(report), "--json")
        size = report.stat().st_size
        render_ms = wall_s = None
        if chromium:
            runs = [open_in_chromium(chromium, report, tmp) for _ in range(3)]
            render_ms, wall_s = sorted(runs)[1]  # the median run by render time
    results = {"ops": n_ops, "units": n + 1, "report_bytes": size, "suggest_s": round(suggest_s, 2),
               "report_s": round(report_s, 2), "render_ms": render_ms,
               "chromium_wall_s": None if wall_s is None else round(wall_s, 2),
               "chromium": chromium}
    print(f"{n_ops} ops, {n + 1} units: report {size / 1e6:.2f} MB written in {report_s:.2f} s "
          f"(suggest {suggest_s:.2f} s); " + (f"Chromium drew it in {render_ms:.0f} ms (page clock), "
                                              f"{wall_s:.2f} s for the whole headless Chromium run"
                                              if chromium else "no chromium on PATH: load time not measured"))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
