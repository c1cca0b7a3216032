"""The GPU check: the sample GPT (12 layers, width 768, seq 1024, batch 8) and a Hugging
Face Llama (8 layers, hidden 1024, seq 1024, batch 8, eager attention) on one CUDA GPU,
memadvise's plans at activation budgets of 70/50/30% beside checkpointing every block,
every 2nd block, SAC save-matmul, SAC save-linear and torch.compile at budgets
0.7/0.5/0.3; step time the median of alternating pairs (one pair for the compile
variants, which compile again in every run). Meant to finish in under 8 minutes on one
H100/H200; never run by the tests.

    python benchmarks/gpu_check.py [--results benchmarks/results/gpu] [--pairs 3]

Prints one markdown table per model (from benchmarks/results/gpu/<model>-gpu.json).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def table(rows: list[dict]) -> str:
    out = ["| variant | peak | activations | step time | predicted peak error |", "|---|---|---|---|---|"]
    for r in rows:
        if r.get("kind") == "meta":
            continue
        if "error" in r:
            out.append(f"| {r['variant']} | error: {r['error'][:60]} | | | |")
            continue
        err = f"{r['peak_error']:.2%}" if r.get("peak_error") is not None else ""
        act = f"{r['activation_ratio'] - 1:+.0%}" if r.get("activation_ratio") is not None else ""
        out.append(f"| {r['variant']} | {r['peak_bytes'] / 2**30:.2f} GiB ({r['peak_ratio'] - 1:+.0%}) | {act} | "
                   f"{r['time_ratio'] - 1:+.1%} | {err} |")
    return "\n".join(out)


def main() -> None:
    import torch

    p = argparse.ArgumentParser()
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "gpu"))
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--models", nargs="*", default=["gpt", "llama"])
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "compare.py"), "--models", *args.models, "--sizes", "gpu",
                    "--quick", "--warmup", "3", "--timed", "5", "--pairs", str(args.pairs), "--compile-pairs", "1",
                    "--results", args.results], check=True)
    for model in args.models:
        path = Path(args.results) / f"{model}-gpu.json"
        if path.exists():
            print(f"\n### {model} on {torch.cuda.get_device_name()}\n")
            print(table(json.loads(path.read_text())))
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
