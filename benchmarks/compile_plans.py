"""compile(budget) plans: predicted peak of each budget against an independent measurement.

    python benchmarks/compile_plans.py gpt --budgets 0.7 0.5 0.3 -- --n-layer 2 --width 64 ...
    python benchmarks/compile_plans.py tests/scripts/hf_llama.py -- --layers 2

Profiles the sample model with ``--compile-plans``, runs ``suggest``, writes the patched
script of each ``compile-budget-B`` plan (the budget + ``model.compile()``), and measures
the original and every patched script with ``tests/oracle.py`` (torch.profiler's memory
timeline, one process each). Prints one row per budget and writes
``benchmarks/results/compile-plans-<model>.json``. CPU only (the oracle is).
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
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="a sample model (gpt, mlp, resnet) or the path of a training script")
    p.add_argument("--budgets", type=float, nargs="+", default=[0.7, 0.5, 0.3])
    p.add_argument("--out", help="results file (default: benchmarks/results/compile-plans-<model>.json)")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    a = p.parse_args(argv[:cut])
    args = argv[cut + 1:]  # the sample script's own arguments
    from oracle import measure_script

    from memadvise.apply.apply import prepare
    from memadvise.schema.plan import read_plan

    work = Path(tempfile.mkdtemp(prefix="memadvise-compile-bench-"))
    source = ROOT / "sample_models" / f"{a.model}.py"
    if not source.exists():
        source = Path(a.model)
    a.model = source.stem
    script = work / f"{a.model}.py"
    script.write_text(source.read_text())
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "memadvise", "profile", str(script), "--compile-plans", "--out",
                    str(work / "profile.json"), "--", *args], check=True, capture_output=True)
    profile_s = time.perf_counter() - t0
    subprocess.run([sys.executable, "-m", "memadvise", "suggest", "--profile", str(work / "profile.json"),
                    "--out", str(work / "plan.json")], check=True, capture_output=True)
    plan_file = read_plan(work / "plan.json")
    eager = measure_script(str(script), args, warmup=2, timeout=1800)
    rows = [{"plan": "eager", "measured_peak_bytes": eager["peak_bytes"],
             "predicted_peak_bytes": plan_file.doc["baseline"]["peak_bytes"]}]
    for b in a.budgets:
        plan = next(x for x in plan_file.doc["plans"] if x["strategy"] == f"compile-budget-{b:g}")
        patched = work / f"{a.model}_budget_{b:g}.py"
        patched.write_text(prepare(plan_file, plan).patch.new_source)
        m = measure_script(str(patched), args, warmup=2, timeout=1800)
        rows.append({"plan": plan["strategy"], "measured_peak_bytes": m["peak_bytes"],
                     "predicted_peak_bytes": plan["predicted"]["peak_bytes"],
                     "saved_bytes": plan["compile"]["saved_bytes"],
                     "non_monotonic_predicted": plan["compile"]["non_monotonic"]})
    for r in rows:
        r["error"] = r["predicted_peak_bytes"] / r["measured_peak_bytes"] - 1
        print(f"{r['plan']:<22} predicted {r['predicted_peak_bytes']:>12,d}  measured {r['measured_peak_bytes']:>12,d}"
              f"  error {r['error']:+.1%}")
    out = Path(a.out) if a.out else ROOT / "benchmarks" / "results" / f"compile-plans-{a.model}.json"
    out.write_text(json.dumps({"model": a.model, "args": args, "profile_s": round(profile_s, 1),
                               "date": time.strftime("%Y-%m-%d"), "rows": rows}, indent=1) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
