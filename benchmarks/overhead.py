"""Profiling overhead: `memadvise profile` against the plain script, same steps, one run.

For each sample model, alternately runs the plain script and the script under
`memadvise profile` (each in a fresh process, `--repeats` times) and reports the median
wall-time ratio of the whole process, and of one instrumented step against one plain
step (from the profile's own timings). Target: at most 2x.

    python benchmarks/overhead.py [--repeats 3] [--out benchmarks/results/overhead.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "mlp": [],
    "gpt": [],
    "resnet": [],
}
WARMUP, TIMING, STEPS = 1, 3, 3


def run(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--models", nargs="*", default=list(MODELS))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "overhead.json"))
    args = p.parse_args()
    n = WARMUP + TIMING + STEPS
    rows = []
    for name in args.models:
        script = str(ROOT / "sample_models" / f"{name}.py")
        plain, profiled, step_ratio = [], [], []
        for _ in range(args.repeats):
            plain.append(run([sys.executable, script, "--steps", str(n), *MODELS[name]]))
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "p.json"
                profiled.append(run([sys.executable, "-m", "memadvise", "profile", script, "--out", str(out),
                                     "--warmup", str(WARMUP), "--timing-steps", str(TIMING), "--steps", str(STEPS),
                                     "--", "--steps", "100", *MODELS[name]]))
                s = json.loads(out.read_text())["summary"]
                step_ratio.append(statistics.median(s["instrumented_step_times_s"]) / s["step_time_s"])
        row = {
            "model": name,
            "steps": n,
            "plain_s": statistics.median(plain),
            "profile_s": statistics.median(profiled),
            "process_ratio": statistics.median(b / a for a, b in zip(plain, profiled)),
            "instrumented_step_ratio": statistics.median(step_ratio),
        }
        rows.append(row)
        print(f"{name:7s} plain {row['plain_s']:.2f} s  profile {row['profile_s']:.2f} s  "
              f"ratio {row['process_ratio']:.2f}x  (instrumented step {row['instrumented_step_ratio']:.1f}x a plain step)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
