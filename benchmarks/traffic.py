"""Traffic model against measurement, on the sample models and a many-parameter script.

For each script: `memadvise profile` (with ``--probe-compile`` unless ``--skip-compile``),
``--runs`` times (separate processes), then
* the traffic model's step time for the unmodified step (``predict_step_time``: matmuls
  and convolutions as their own signatures replayed alone, every other op at its roofline
  — bytes at the probed bandwidth or its kind's probed rate — plus the probed dispatch
  cost, the optimizer's step as measured on copies, autograd's per-node and nn.Module's
  per-call costs) against the step time measured in the same profile's uninstrumented
  timing steps; per run, and median of the predictions against median of the
  measurements; also the same sum with every op at its roofline (``roofline_step_time_s``);
* `memadvise suggest --allow-precision` on the run with the median measured step, then
  for every traffic plan it predicts, `memadvise apply --traffic NAME --verify
  --verify-repeats R --json`: the plan's predicted speedup against the speedup measured
  by verify (original and patched script, each profiled in its own process, alternated R
  times; the median of the per-pair ratios of the uninstrumented timing steps).

    python benchmarks/traffic.py [--models mlp gpt resnet many_params] [--skip-compile] [--runs 5] [--repeats 5]

Writes benchmarks/results/traffic.json; `report_benchmarks.py` puts the table in BENCHMARKS.md.
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
# script, uninstrumented steps timed per profile, script arguments: enough steps that the
# timed window is a few tenths of a second even for the millisecond steps
SCRIPTS = {
    "mlp": (ROOT / "sample_models" / "mlp.py", 100, ["--steps", "110"]),
    "gpt": (ROOT / "sample_models" / "gpt.py", 20, ["--steps", "30"]),
    "resnet": (ROOT / "sample_models" / "resnet.py", 20, ["--steps", "30"]),
    "many_params": (ROOT / "tests" / "scripts" / "many_params.py", 40, ["50"]),
}


def memadvise(*args: str, check: bool = True) -> dict:
    args = [str(a) for a in args]
    cut = args.index("--") if "--" in args else len(args)  # what follows "--" belongs to the script
    proc = subprocess.run([sys.executable, "-m", "memadvise", *args[:cut], "--json", *args[cut:]],
                          capture_output=True, text=True, cwd=ROOT)
    if check and proc.returncode != 0:
        raise RuntimeError(f"memadvise {args[0]} failed ({proc.returncode}): {proc.stderr.strip()[-1500:]}")
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}


def one(name: str, script: Path, timing_steps: int, script_args: list[str], tmp: Path, *, skip_compile: bool,
        repeats: int, runs: int) -> dict:
    from memadvise.analysis.traffic import predict_step_time
    from memadvise.schema.profile import read_profile

    plan_path = tmp / f"{name}.plan.json"
    base = []
    for k in range(max(1, runs)):
        path = tmp / f"{name}-{k}.profile.json"
        memadvise("profile", script, "--out", path, "--timing-steps", str(timing_steps),
                  *([] if skip_compile else ["--probe-compile"]), "--", *script_args)
        profile = read_profile(path)
        model = predict_step_time(profile)
        base.append({"path": path, "measured_step_s": profile.summary["step_time_s"],
                     "predicted_step_s": model["step_time_s"], "roofline_step_s": model["roofline_step_time_s"],
                     "terms": model})
    measured = statistics.median(b["measured_step_s"] for b in base)
    predicted = statistics.median(b["predicted_step_s"] for b in base)
    mid = sorted(base, key=lambda b: b["measured_step_s"])[len(base) // 2]
    profile_path = mid["path"]
    out = {"model": name, "measured_step_s": measured, "predicted_step_s": predicted,
           "baseline_error": predicted / measured - 1, "terms": mid["terms"],
           "roofline_step_s": statistics.median(b["roofline_step_s"] for b in base),
           "runs": [{"measured_step_s": b["measured_step_s"], "predicted_step_s": b["predicted_step_s"],
                     "error": b["predicted_step_s"] / b["measured_step_s"] - 1,
                     "roofline_error": b["roofline_step_s"] / b["measured_step_s"] - 1} for b in base],
           "plans": []}
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
    p.add_argument("--repeats", type=int, default=5, help="original/patched pairs per verify (median of the pairs)")
    p.add_argument("--runs", type=int, default=5, help="baseline profiles per script (median of their predictions "
                   "against median of their measurements)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "traffic.json"))
    p.add_argument("--smoke", action="store_true", help="few steps, one run, one pair: checks the harness, not the model")
    args = p.parse_args()
    if args.smoke:
        args.runs, args.repeats, args.skip_compile = 1, 1, True
        for name, (script, _, _) in SCRIPTS.items():
            SCRIPTS[name] = (script, 2, ["--steps", "12"] if name != "many_params" else ["12"])
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            print(name, file=sys.stderr, flush=True)
            results.append(one(name, *SCRIPTS[name], Path(tmp), skip_compile=args.skip_compile, repeats=args.repeats,
                               runs=args.runs))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    if not args.smoke and Path(args.out) == ROOT / "benchmarks" / "results" / "traffic.json":
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from report_benchmarks import write_markdown

        write_markdown(ROOT / "benchmarks" / "results", ROOT / "BENCHMARKS.md")
    for r in results:
        per_run = ", ".join(f"{x['error']:+.0%}" for x in r["runs"])
        print(f"{r['model']}: baseline step predicted {r['predicted_step_s'] * 1000:.1f} ms, measured "
              f"{r['measured_step_s'] * 1000:.1f} ms ({r['baseline_error']:+.1%}; medians of {len(r['runs'])} runs: "
              f"{per_run})")
        for pl in r["plans"]:
            if "measured_speedup" in pl:
                pairs = ", ".join(f"{x:+.0%}" for x in pl.get("measured_speedup_pairs", []))
                print(f"  {pl['strategy']}: predicted {pl['predicted_speedup']:+.1%}, measured {pl['measured_speedup']:+.1%} "
                      f"({pl['speedup_error_pts']:+.1f} pts; pairs {pairs})")
            else:
                print(f"  {pl['strategy']}: {pl.get('error') or pl.get('skipped')}")


if __name__ == "__main__":
    main()
