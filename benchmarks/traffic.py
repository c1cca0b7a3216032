"""Traffic model against measurement, on the sample models and a many-parameter script.

For each script: `memadvise profile`, then
* the traffic model's step time for the unmodified step (``predict_step_time``: each op
  at its roofline — bytes at the probed bandwidth, FLOPs at the probed matmul or
  convolution rate — plus the probed per-op dispatch cost) against the step time
  measured in the profile's uninstrumented timing steps;
* `memadvise suggest --allow-precision`, then for every traffic plan it predicts,
  `memadvise apply --traffic NAME --verify --verify-repeats 3 --json`: the plan's predicted
  speedup against the speedup measured by verify (original and patched script, each
  profiled in its own process, alternated 3 times; the median of the per-pair ratios of
  the uninstrumented timing steps).

    python benchmarks/traffic.py [--models mlp gpt resnet many_params] [--skip-compile]

Writes benchmarks/results/traffic.json; `report_benchmarks.py` puts the table in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {
    "mlp": ROOT / "sample_models" / "mlp.py",
    "gpt": ROOT / "sample_models" / "gpt.py",
    "resnet": ROOT / "sample_models" / "resnet.py",
    "many_params": ROOT / "tests" / "scripts" / "many_params.py",
}


def memadvise(*args: str, check: bool = True) -> dict:
    proc = subprocess.run([sys.executable, "-m", "memadvise", *map(str, args), "--json"], capture_output=True,
                          text=True, cwd=ROOT)
    if check and proc.returncode != 0:
        raise RuntimeError(f"memadvise {args[0]} failed ({proc.returncode}): {proc.stderr.strip()[-1500:]}")
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}


def one(name: str, script: Path, tmp: Path, *, skip_compile: bool, repeats: int) -> dict:
    from memadvise.analysis.traffic import predict_step_time
    from memadvise.schema.profile import read_profile

    profile_path, plan_path = tmp / f"{name}.profile.json", tmp / f"{name}.plan.json"
    memadvise("profile", script, "--out", profile_path, "--timing-steps", "5")
    profile = read_profile(profile_path)
    model = predict_step_time(profile)
    measured = profile.summary["step_time_s"]
    out = {"model": name, "measured_step_s": measured, "predicted_step_s": model["step_time_s"],
           "baseline_error": model["step_time_s"] / measured - 1, "terms": model, "plans": []}
    doc = memadvise("suggest", "--profile", profile_path, "--out", plan_path, "--allow-precision")
    out["unavailable"] = doc["traffic"]["unavailable"]
    for plan in doc["traffic"]["plans"]:
        strategy = plan["strategy"]
        if skip_compile and strategy == "compile":
            out["plans"].append({"strategy": strategy, "skipped": "--skip-compile"})
            continue
        print(f"  {name}: {strategy}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        r = memadvise("apply", "--plan", plan_path, "--traffic", strategy, "--patch", tmp / f"{name}-{strategy}.patch",
                      "--verify", "--verify-repeats", str(repeats), "--tolerance", "100%", check=False)
        row = {"strategy": strategy, "predicted_speedup": -plan["predicted"]["overhead"],
               "predicted_peak_bytes": plan["predicted"]["peak_bytes"], "verify_s": time.perf_counter() - t0}
        v = r.get("verify")
        if not v:
            row["error"] = r.get("error", "verify gave no result")
        else:
            rows = v["rows"]
            row.update({
                "measured_speedup": -rows["overhead"]["measured"],
                "measured_peak_bytes": rows["peak_bytes"]["measured"],
                "baseline_peak_bytes": rows["peak_bytes"]["baseline_measured"],
                "speedup_error_pts": (rows["overhead"]["measured"] - plan["predicted"]["overhead"]) * 100,
                "measured_speedup_pairs": [-x for x in rows["overhead"].get("measured_pairs", [])],
            })
            row["same_sign"] = (row["predicted_speedup"] >= 0) == (row["measured_speedup"] >= 0)
        out["plans"].append(row)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="*", default=list(SCRIPTS))
    p.add_argument("--skip-compile", action="store_true", help="leave out torch.compile (minutes of compiling)")
    p.add_argument("--repeats", type=int, default=3, help="original/patched pairs per verify (median of the pairs)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "traffic.json"))
    args = p.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            print(name, file=sys.stderr, flush=True)
            results.append(one(name, SCRIPTS[name], Path(tmp), skip_compile=args.skip_compile, repeats=args.repeats))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    for r in results:
        print(f"{r['model']}: baseline step predicted {r['predicted_step_s'] * 1000:.1f} ms, measured "
              f"{r['measured_step_s'] * 1000:.1f} ms ({r['baseline_error']:+.1%})")
        for pl in r["plans"]:
            if "measured_speedup" in pl:
                pairs = ", ".join(f"{x:+.0%}" for x in pl.get("measured_speedup_pairs", []))
                print(f"  {pl['strategy']}: predicted {pl['predicted_speedup']:+.1%}, measured {pl['measured_speedup']:+.1%} "
                      f"({pl['speedup_error_pts']:+.1f} pts; pairs {pairs})")
            else:
                print(f"  {pl['strategy']}: {pl.get('error') or pl.get('skipped')}")


if __name__ == "__main__":
    main()
