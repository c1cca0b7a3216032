"""Scale: profile file I/O for a 50,000-op step, `suggest` (budget-optimal solver
included) on a synthetic 2,000-unit profile, and the solver with per-op choices on 2,000
units of 30 ops each. Targets: about 1 s, under 2 s, and under 5 s.

    python benchmarks/scale.py [--out benchmarks/results/scale.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from memadvise.analysis.simulator import Simulator
from memadvise.analysis.units import UnitTree
from memadvise.planning import solver
from memadvise.planning.suggest import suggest
from memadvise.schema.profile import Profile, read_profile, write_profile
from memadvise.sizes import parse_budget
from memadvise.testing.synthetic import chain_profile, op_chain_profile

ROOT = Path(__file__).resolve().parents[1]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scale.json"))
    args = p.parse_args()
    results = {}

    # a 50,000-op step: 12,500 blocks of the synthetic chain (4 ops per block)
    doc = chain_profile(12_500, [65536 + 64 * (i % 7) for i in range(12_500)], 16384, device_type="cuda")
    n_ops = len(doc["trace"]["ops"]["name"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "profile.json"
        _, write_s = timed(lambda: write_profile(doc, path))
        _, read_s = timed(lambda: read_profile(path))
        size = path.stat().st_size
    results["profile_io"] = {"ops": n_ops, "write_s": write_s, "read_s": read_s, "bytes": size}
    print(f"profile of {n_ops} ops: write {write_s:.2f} s, read+validate {read_s:.2f} s, {size / 2**20:.1f} MiB")

    # suggest on 2,000 units (1,999 blocks and the root), budget at 60% of the peak
    doc = chain_profile(1_999, [65536 * (1 + i % 5) for i in range(1_999)], 16384, device_type="cuda",
                        fwd_us=[50.0 + 10 * (i % 9) for i in range(1_999)])
    profile = Profile(doc)
    plan, suggest_s = timed(lambda: suggest(profile, budget=parse_budget("60%")))
    rec = plan["recommendation"]
    sim = Simulator(profile)
    tree = UnitTree(profile, sim.trace)
    base = sim.baseline().peak_bytes
    sol, solve_s = timed(lambda: solver.solve(sim, tree, int(base * 0.6), device_type="cuda"))
    results["solver_2000_units"] = {
        "units": len(profile.units), "solve_s": solve_s, "method": sol.method if sol else None,
        "evaluated": sol.evaluated if sol else None, "suggest_s": suggest_s,
        "recommendation": rec and rec["strategy"],
    }
    print(f"2,000 units: solver {solve_s:.2f} s ({sol.method}, {sol.evaluated} simulations); "
          f"whole suggest (all strategies, 5 budgets) {suggest_s:.2f} s")

    # per-op choices: 2,000 units (1,999 blocks of 30 ops and the root), sizes and times
    # varying per op as in a transformer block (matmuls slow and compact, pointwise ops
    # fast over large tensors), budget at 60% of the peak
    n, m = 1_999, 30
    kinds = [("addmm", 64, 40.0), ("gelu", 256, 3.0), ("mul", 128, 1.5), ("softmax", 512, 4.0), ("bmm", 512, 20.0),
             ("add", 64, 1.0)]
    names = [[kinds[(i + j) % 6][0] for j in range(m)] for i in range(n)]
    sizes = [[kinds[(i + j) % 6][1] * 1024 * (1 + (i * j) % 3) for j in range(m)] for i in range(n)]
    times = [[kinds[(i + j) % 6][2] * (1 + (i + 2 * j) % 4) for j in range(m)] for i in range(n)]
    profile = Profile(op_chain_profile(n, names, sizes, times, 65536, device_type="cuda", checkpoint_call_ms=0.01,
                                       selective_op_us=0.2))
    sim = Simulator(profile)
    tree = UnitTree(profile, sim.trace)
    base = sim.baseline().peak_bytes
    cpu0 = time.process_time()
    sol, solve_s = timed(lambda: solver.solve(sim, tree, int(base * 0.6), device_type="cuda", offload=False))
    cpu_s = time.process_time() - cpu0  # this process's CPU time: the wall time on an idle machine
    kinds_used: dict[str, int] = {}
    for a in sol.actions if sol else []:
        kinds_used[a.label()] = kinds_used.get(a.label(), 0) + 1
    results["solver_2000_units_30_ops"] = {
        "units": len(profile.units), "ops": len(profile.trace["ops"]["name"]), "solve_s": solve_s, "solve_cpu_s": cpu_s,
        "method": sol.method if sol else None, "evaluated": sol.evaluated if sol else None,
        "overhead": sol.result.overhead if sol else None, "actions": kinds_used, "target_s": 5.0,
    }
    print(f"2,000 units × 30 ops, per-op choices: solver {solve_s:.2f} s, {cpu_s:.2f} s of CPU (target < 5 s; "
          f"{sol.method if sol else None}, "
          f"{sol.evaluated if sol else 0} simulations, {kinds_used})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
