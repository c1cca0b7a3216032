"""Op-level plans' predicted memory against the profiler oracle, on a mid-size sample GPT
(4 layers, width 256, seq 128, batch 8, CPU): profile, suggest at activation budgets of
70/50/30%, apply the budget-optimal plans (mixes of checkpoint and per-op keep sets) and
the selective-linear strategy, measure each patched script in a separate process
(tests/oracle.py). Memory only: no timing on a shared machine.

    python benchmarks/op_plans_accuracy.py [--workdir /tmp/op_plans]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

ARGS = ["--n-layer", "4", "--width", "256", "--seq-len", "128", "--batch", "8", "--steps", "30"]


def main() -> None:
    from memadvise.apply.apply import prepare
    from memadvise.collect.api import profile_script
    from memadvise.planning.suggest import suggest
    from memadvise.schema.plan import PlanFile
    from memadvise.sizes import Budget
    from oracle import measure_scripts

    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default="/tmp/op_plans")
    work = Path(p.parse_args().workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    script = work / "gpt.py"
    shutil.copy(ROOT / "sample_models" / "gpt.py", script)
    profile = profile_script(script, ARGS, warmup=1, timing_steps=3, steps=2, out=work / "profile.json")
    jobs, plans = [(script, ARGS)], []
    for f in (0.7, 0.5, 0.3):
        doc = suggest(profile, budget=Budget(fraction=f, text=f"{int(f * 100)}%"), budget_metric="activation",
                      profile_path=str(work / "profile.json"))
        pf = PlanFile.from_doc(doc, work / f"plan{int(f * 100)}.json")
        for strategy in ("budget-optimal", "selective-linear"):
            plan = next((x for x in doc["plans"] if x["strategy"] == strategy), None)
            if plan is None or (strategy == "selective-linear" and f != 0.5):
                continue
            path = work / f"gpt_{int(f * 100)}_{strategy}.py"
            path.write_text(prepare(pf, plan).patch.new_source)
            jobs.append((path, ARGS))
            plans.append((f, strategy, plan))
    results = measure_scripts(jobs, warmup=2)
    base = results[0]
    print(f"baseline: peak {base['peak_bytes']} B, activations {base['activation_forward_made_bytes']} B")
    print("| budget | plan | actions | peak predicted / measured | activations predicted / measured | predicted overhead |")
    print("|---|---|---|---|---|---|")
    for (f, strategy, plan), m in zip(plans, results[1:]):
        pred = plan["predicted"]
        kinds: dict[str, int] = {}
        for a in plan["actions"]:
            key = a["action"] if a["action"] != "selective" else f"selective {a['policy'] or 'per-op'}"
            kinds[key] = kinds.get(key, 0) + 1
        act = m["activation_forward_made_bytes"]
        print(f"| {f:.0%} | {strategy} | {', '.join(f'{k} ×{n}' for k, n in kinds.items())} | "
              f"{pred['peak_bytes']} / {m['peak_bytes']} ({pred['peak_bytes'] / m['peak_bytes'] - 1:+.4%}) | "
              f"{pred['activation_bytes']} / {act} ({pred['activation_bytes'] / act - 1:+.4%}) | "
              f"{pred['overhead']:+.1%} |")


if __name__ == "__main__":
    main()
