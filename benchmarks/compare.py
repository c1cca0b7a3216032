"""memadvise against the alternatives, side by side, one process per model and size.

For each sample model and size, in ONE process: profile with memadvise, suggest (plans at
activation budgets of 70/50/30%, at the predicted peak of each eager alternative memadvise
also predicts — full, every-2, selective, selective-linear — and the Pareto front), then run the unmodified script and
every variant — memadvise's plans and what a user would otherwise pick (checkpoint every
block, every second block, selective "save matmuls" and "save linear", torch.compile with
an activation memory budget, PyTorch's own sac_milp planner, the ckptplan package) —
measuring peak and activation memory independently (PyTorch's profiler memory timeline
of one steady-state step, tests/oracle.py) and the step time as the median, over
``--pairs`` alternating pairs, of the variant's median step time over the baseline's
timed right before it. The models: the sample MLP, GPT and ResNet, and a Hugging Face
Llama built from a config with eager attention (benchmarks/models/hf_llama.py).

    python benchmarks/compare.py                      # every model, both sizes
    python benchmarks/compare.py --models gpt --sizes small
    python benchmarks/compare.py --smoke              # tiny sizes, few steps (the smoke test)
    python benchmarks/compare.py --models gpt llama --pairs 3

Writes benchmarks/results/<model>-<size>.json/.csv/.png and rewrites BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import runpy
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

# inductor compiles in a pool of worker processes by default; on 2 cores those workers
# (started, warmed and left idling by the first compile) skew the timed steps of
# whichever variant compiles first. Compile in this process instead.
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

SIZES = {
    # small: the sample defaults; large: a few seconds per step on 2 CPU cores
    "mlp": {"small": [], "large": ["--depth", "12", "--width", "1536", "--batch", "512"],
            "smoke": ["--depth", "3", "--width", "64", "--batch", "16"]},
    "gpt": {"small": [], "large": ["--n-layer", "6", "--width", "384", "--seq-len", "256", "--batch", "12"],
            # the GPU configuration (benchmarks/gpu_check.py)
            "gpu": ["--n-layer", "12", "--n-head", "12", "--width", "768", "--seq-len", "1024", "--batch", "8"],
            "smoke": ["--n-layer", "2", "--width", "32", "--seq-len", "16", "--batch", "2"]},
    "resnet": {"small": [], "large": ["--width", "48", "--image-size", "64", "--batch", "48"],
               "smoke": ["--width", "4", "--blocks", "1", "--stages", "2", "--image-size", "8", "--batch", "4"]},
    # a Hugging Face Llama from a config, eager attention (needs transformers)
    "llama": {"small": [], "large": ["--layers", "6", "--hidden", "384", "--seq-len", "256", "--batch", "4"],
              "gpu": ["--layers", "8", "--hidden", "1024", "--heads", "16", "--seq-len", "1024", "--batch", "8"],
              "smoke": ["--layers", "2", "--hidden", "32", "--heads", "2", "--vocab", "64", "--seq-len", "16",
                        "--batch", "2"]},
}
SCRIPTS = {"llama": ROOT / "benchmarks" / "models" / "hf_llama.py"}  # the others: sample_models/<model>.py
PAIRS = 3  # step time: median over alternating (baseline, variant) pairs, each timed next to its baseline
KEEP = (0.7, 0.5, 0.3)  # activation-memory budgets, as fractions of the baseline's
# memadvise's strategies that are also eager alternatives: memadvise's plan at each one's peak
MATCHED = ("full", "every-2", "selective", "selective-linear")


class _Stop(BaseException):
    pass


def run_variant(script: Path, args: list[str], transform, *, warmup: int, timed: int, memory: bool = True) -> dict:
    """Run the script in this process; apply ``transform(model, args, kwargs)`` at the first
    forward of the root model; time ``timed`` steps after ``warmup``; profile one more
    (``memory``), or stop there."""
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    if "torch._dynamo" in sys.modules:
        # every variant compiles afresh, as in a process of its own: past dynamo's recompile
        # limit (8 by default) a compiled variant would run eagerly without a word
        torch._dynamo.reset()

    from memadvise.collect import independent as oracle  # the independent measurement, in the product

    state = {"applied": False, "steps": 0, "t": [], "error": None, "plan_s": 0.0, "info": None}
    harness = oracle._Harness(warmup + timed)

    def first_forward(module, fargs):
        if state["applied"]:
            return
        state["applied"] = True
        if transform is not None:
            t0 = time.perf_counter()
            state["info"] = transform(module, fargs, {})
            state["plan_s"] = time.perf_counter() - t0

    def on_step(optimizer, a, k):
        state["steps"] += 1
        state["t"].append(time.perf_counter())
        if not memory and state["steps"] >= warmup + timed:
            raise oracle._StopScript

    h1 = torch.nn.modules.module.register_module_forward_pre_hook(first_forward)
    h2 = register_optimizer_step_post_hook(on_step)
    if memory:
        harness.install()
    saved = sys.argv[:], sys.path[0]
    sys.argv = [str(script), *args, "--steps", str(warmup + timed + 3)]
    sys.path[0] = str(script.parent)
    try:
        with open(os.devnull, "w") as null, _redirect(null):
            runpy.run_path(str(script), run_name="__main__")
    except oracle._StopScript:
        pass
    except BaseException as exc:  # noqa: BLE001 — a variant that fails is a result
        state["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        if os.environ.get("MEMADVISE_BENCH_DEBUG"):
            traceback.print_exc()
    finally:
        if harness.in_profiled_step:
            harness.prof.stop()
        if memory:
            harness.uninstall()
        h1.remove()
        h2.remove()
        sys.argv, sys.path[0] = saved
    if state["error"]:
        return {"error": state["error"]}
    ts = state["t"]
    steps = [b - a for a, b in zip(ts[warmup - 1: warmup + timed - 1], ts[warmup: warmup + timed])]
    if not memory:
        return {"step_time_s": statistics.median(steps) if steps else None, "step_times_s": steps}
    mem = oracle._analyze(harness.prof, harness.wall_s)
    harness.prof = None
    import gc

    gc.collect()
    return {
        "peak_bytes": mem["peak_bytes"],
        # what the forward left for backward, category-free: a compiled graph's saved values
        # are reused in place by its backward (donated), so "destroyed in the step" misses them
        "activation_bytes": mem["held_for_backward_bytes"],
        "activation_forward_made_bytes": mem["activation_forward_made_bytes"],
        "step_time_s": statistics.median(steps) if steps else None,
        "step_times_s": steps,
        "plan_s": state["plan_s"],
        "info": state["info"],
    }


class _redirect:
    """Silence the script's prints (stdout) while it runs."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def __enter__(self):
        self.old = sys.stdout
        sys.stdout = self.stream

    def __exit__(self, *exc):
        sys.stdout = self.old


def memadvise_transform(actions):
    def apply(model, fargs, fkwargs):
        import memadvise

        memadvise.apply_plan(model, actions)
        return {"units": [a.unit for a in actions]}

    return apply


def plan_transform(plan: dict):
    """How a suggested plan runs: a compile-budget plan as torch.compile at its budget (what
    its patch does), any other through memadvise.apply_plan."""
    from memadvise.schema.actions import Action

    if plan.get("compile"):
        import alternatives as alt

        budget = float(plan["compile"]["budget"])

        def apply(model, fargs, fkwargs):
            alt.compile_with_budget(model, budget=budget)
        return apply
    return memadvise_transform([Action.from_json(a) for a in plan["actions"]])


def _plan_key(plan: dict) -> tuple:
    return (tuple(sorted(json.dumps(a, sort_keys=True) for a in plan["actions"])),
            (plan.get("compile") or {}).get("budget"))


def _compiles(name: str) -> bool:
    return name.startswith("torch.compile") or "compile-budget" in name


def _compile_plan(front: dict, name: str) -> dict | None:
    """memadvise's own plan for the alternative "torch.compile budget B", if suggest has one."""
    if not name.startswith("torch.compile budget "):
        return None
    b = float(name.rsplit(" ", 1)[1])
    return next((p for p in front["plans"] if p.get("compile") and abs(float(p["compile"]["budget"]) - b) < 1e-9),
                None)


def config_key(name: str, plan: dict | None) -> tuple:
    """What a variant runs: two variants with the same key run the same code on the same
    model (memadvise's ``compile-budget-B`` plan and the alternative "torch.compile budget B"
    both call ``alternatives.compile_with_budget(model, B)``), so they are measured once."""
    if plan is not None:
        if plan.get("compile"):
            return ("compile", float(plan["compile"]["budget"]))
        return ("memadvise",) + _plan_key(plan)
    if name.startswith("torch.compile budget "):
        return ("compile", float(name.rsplit(" ", 1)[1]))
    return ("alternative", name)


def alternative_transforms(keep: tuple[float, ...], *, skip_slow: bool = False, quick: bool = False):
    import alternatives as alt

    def simple(fn, **kw):
        def apply(model, fargs, fkwargs):
            fn(model, **kw)
        return apply

    def planned(planner, frac):
        def apply(model, fargs, fkwargs):
            transform = planner(model, fargs, fkwargs, frac)
            transform(model)
            return getattr(transform, "info", None)
        return apply

    out = [
        ("checkpoint every block", simple(alt.checkpoint_blocks, every=1)),
        ("checkpoint every 2nd block", simple(alt.checkpoint_blocks, every=2)),
        ("selective: save matmuls", simple(alt.selective_blocks)),
        ("selective: save linear", simple(alt.selective_linear_blocks)),
    ]
    for f in keep if not skip_slow else ():
        out.append((f"torch.compile budget {f}", simple(alt.compile_with_budget, budget=f)))
    for f in keep if not quick else ():
        out.append((f"sac_milp {int(f * 100)}%", planned(alt.sac_milp_plan, f)))
    for f in keep if not quick else ():
        out.append((f"ckptplan {int(f * 100)}%", planned(alt.ckptplan_plan, f)))
    return out


def one(model: str, size: str, *, warmup: int, timed: int, skip_slow: bool = False, pairs: int = PAIRS,
        compile_pairs: int | None = None, quick: bool = False, compile_plans: bool = False) -> list[dict]:
    """Every variant of ``model`` at ``size``: rows of measured and predicted figures.
    ``quick``: memadvise's budget plans and the eager and compile alternatives only (no
    Pareto-front plans, no sac_milp or ckptplan). ``compile_pairs``: timing pairs for the
    torch.compile variants (each run compiles again), default ``pairs``. ``compile_plans``:
    profile with ``--compile-plans --probe-compile``, so that memadvise's own compile-budget
    plans compete in its recommendations (issue 20's ranking check)."""
    from memadvise.collect.api import profile_script
    from memadvise.planning.suggest import suggest
    from memadvise.sizes import Budget

    script = SCRIPTS.get(model, ROOT / "sample_models" / f"{model}.py")
    args = SIZES[model][size]
    rows: list[dict] = []

    # baseline first (timing reference and the plain-run time for the profiling overhead)
    base1 = run_variant(script, args, None, warmup=warmup, timed=timed)
    t0 = time.perf_counter()
    profile = profile_script(script, [*args, "--steps", "100"], warmup=1, timing_steps=3, steps=2,
                             compile_plans=compile_plans, probe_compile=compile_plans)
    profile_s = time.perf_counter() - t0
    s = profile.summary
    instrumented_ratio = statistics.median(s["instrumented_step_times_s"]) / s["step_time_s"]

    variants: list[tuple[str, str, object, dict | None]] = []
    t0 = time.perf_counter()
    front = suggest(profile)
    suggest_s = time.perf_counter() - t0
    seen: set[tuple] = set()
    base_peak = front["baseline"]["peak_bytes"]
    for f in KEEP:
        doc = suggest(profile, budget=Budget(fraction=f, text=f"{int(f * 100)}%"), budget_metric="activation")
        rec = doc["recommendation"]
        plan = next((p for p in doc["plans"] if rec and p["rank"] == rec["rank"]), None)
        if plan is None:
            rows.append({"variant": f"memadvise {int(f * 100)}%", "kind": "memadvise", "error": "no plan meets the budget"})
            continue
        key = _plan_key(plan)
        seen.add(key)
        variants.append((f"memadvise {int(f * 100)}% ({plan['strategy']})", "memadvise", plan_transform(plan), plan))
    # at each eager alternative's own predicted peak (memadvise predicts these strategies
    # too): memadvise's cheapest plan there, to be compared at equal measured peak
    for strategy in MATCHED:
        alt_plan = next((p for p in front["plans"] if p["strategy"] == strategy), None)
        if alt_plan is None:
            continue
        peak = alt_plan["predicted"]["peak_bytes"]
        doc = suggest(profile, budget=Budget(bytes=peak, text=f"{strategy}'s peak"))
        rec = doc["recommendation"]
        plan = next((p for p in doc["plans"] if rec and p["rank"] == rec["rank"]), None)
        if plan is None:
            continue
        key = _plan_key(plan)
        if key in seen:
            continue
        seen.add(key)
        variants.append((f"memadvise at {strategy}'s peak ({plan['strategy']})", "memadvise", plan_transform(plan), plan))
    for plan in front["plans"] if not quick else ():
        key = _plan_key(plan)
        if plan["pareto"] and key not in seen:
            seen.add(key)
            variants.append((f"memadvise front: {plan['strategy']}", "memadvise-front", plan_transform(plan), plan))
    try:
        for name, transform in alternative_transforms(KEEP, skip_slow=skip_slow, quick=quick):
            # "torch.compile budget B" is memadvise's compile-budget-B plan where the profile
            # has compile plans: its prediction is checked too
            variants.append((name, "alternative", transform, _compile_plan(front, name)))
    except ImportError as exc:
        rows.append({"variant": "alternatives", "kind": "alternative", "error": f"benchmarks/alternatives.py: {exc}"})

    measured = []
    first_of: dict[tuple, tuple[str, dict]] = {}  # config key -> (first variant's name, its measurement)
    for name, kind, transform, plan in variants:
        key = config_key(name, plan)
        if key in first_of:  # the same configuration as a variant measured already: its measurement
            same_name, r = first_of[key]
            measured.append((name, kind, plan, {**r, "same_config_as": same_name}))
            continue
        print(f"  {model}/{size}: {name}", file=sys.stderr, flush=True)
        # torch.compile compiles forward and backward in the first steps: time after them
        w = warmup + 5 if _compiles(name) else warmup
        r = run_variant(script, args, transform, warmup=w, timed=timed)
        # alternating pairs: the variant timed right after its own baseline, the ratio's median
        ratios = []
        n_pairs = compile_pairs if compile_pairs is not None and _compiles(name) else pairs
        for _ in range(n_pairs if "error" not in r else 0):
            b = run_variant(script, args, None, warmup=warmup, timed=timed, memory=False)
            v = run_variant(script, args, transform, warmup=w, timed=timed, memory=False)
            if b.get("step_time_s") and v.get("step_time_s"):
                ratios.append(v["step_time_s"] / b["step_time_s"])
        r["pair_ratios"] = ratios
        first_of[key] = (name, r)
        measured.append((name, kind, plan, r))
    base2 = run_variant(script, args, None, warmup=warmup, timed=timed)

    base = {
        "peak_bytes": base1.get("peak_bytes"),
        "activation_bytes": base1.get("activation_bytes"),
        "step_time_s": statistics.mean([b["step_time_s"] for b in (base1, base2) if b.get("step_time_s")]),
    }
    plain_run_s = base["step_time_s"] * (1 + 3 + 2)
    rows.append({"variant": "baseline", "kind": "baseline", **base, "peak_ratio": 1.0, "activation_ratio": 1.0,
                 "time_ratio": 1.0, "baseline_drift": (base2.get("step_time_s") or 0) / (base1.get("step_time_s") or 1) - 1})
    for name, kind, plan, r in measured:
        row = {"variant": name, "kind": kind}
        if "error" in r:
            row["error"] = r["error"]
            rows.append(row)
            continue
        row.update({k: r[k] for k in ("peak_bytes", "activation_bytes", "step_time_s", "plan_s")})
        row["activation_forward_made_bytes"] = r.get("activation_forward_made_bytes")
        row["peak_ratio"] = r["peak_bytes"] / base["peak_bytes"]
        row["activation_ratio"] = r["activation_bytes"] / base["activation_bytes"] if base["activation_bytes"] else None
        row["time_ratio"] = r["step_time_s"] / base["step_time_s"]
        if r.get("pair_ratios"):
            row["time_ratio_first_last"] = row["time_ratio"]  # against the run's first and last baselines
            row["time_ratio_pairs"] = r["pair_ratios"]
            row["time_ratio"] = statistics.median(r["pair_ratios"])
        if r.get("info"):
            row["chosen"] = json.dumps(r["info"])[:300]
        if r.get("same_config_as"):
            row["same_config_as"] = r["same_config_as"]
        if plan is not None:
            pred = plan["predicted"]
            row["predicted_peak_bytes"] = pred["peak_bytes"]
            row["predicted_activation_bytes"] = pred["activation_bytes"]
            row["predicted_overhead"] = pred["overhead"]
            row["peak_error"] = abs(pred["peak_bytes"] - r["peak_bytes"]) / r["peak_bytes"]
            row["activation_error"] = (abs(pred["activation_bytes"] - r["activation_bytes"]) / r["activation_bytes"]
                                       if r["activation_bytes"] > 4096 else None)
            row["overhead_error_pts"] = (pred["overhead"] - (row["time_ratio"] - 1)) * 100
        rows.append(row)
    rows.append({"variant": "memadvise profile", "kind": "meta", "profile_s": profile_s,
                 "profile_overhead_ratio": profile_s / plain_run_s if plain_run_s else None,
                 "instrumented_step_ratio": instrumented_ratio, "suggest_s": suggest_s,
                 "predicted_baseline_peak_bytes": base_peak, "baseline_peak_error": abs(base_peak - base["peak_bytes"]) / base["peak_bytes"],
                 **_provenance()})
    return rows


def _provenance() -> dict:
    """When and on what this table was measured: BENCHMARKS.md mixes runs of different days."""
    import datetime

    import torch

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {"date": datetime.date.today().isoformat(), "commit": commit.stdout.strip() or None,
            "torch": torch.__version__, "cpus": os.cpu_count()}


def write_outputs(model: str, size: str, rows: list[dict], results: Path = RESULTS) -> None:
    results.mkdir(parents=True, exist_ok=True)
    stem = results / f"{model}-{size}"
    stem.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    keys = sorted({k for r in rows for k in r})
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"baseline": ("*", "black", 14), "memadvise": ("o", "tab:blue", 8),
              "memadvise-front": ("o", "tab:cyan", 6), "alternative": ("s", "tab:orange", 7)}
    for kind, (marker, color, size_) in styles.items():
        pts = [r for r in rows if r.get("kind") == kind and r.get("peak_bytes")]
        if not pts:
            continue
        ax.scatter([r["time_ratio"] for r in pts], [r["peak_bytes"] / 2**20 for r in pts], marker=marker, c=color,
                   s=size_ ** 2, label=kind, zorder=3)
        for r in pts:
            if kind != "memadvise-front":
                ax.annotate(r["variant"].split(" (")[0], (r["time_ratio"], r["peak_bytes"] / 2**20), fontsize=6,
                            xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("measured step time / baseline")
    ax.set_ylabel("measured peak memory (MiB)")
    ax.set_title(f"{model} ({size}): lower left is better")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="*", default=list(SIZES))
    p.add_argument("--sizes", nargs="*", default=["small", "large"])
    p.add_argument("--smoke", action="store_true", help="tiny sizes, 1 warmup and 2 timed steps")
    p.add_argument("--one", nargs=2, metavar=("MODEL", "SIZE"), help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--timed", type=int, default=5)
    p.add_argument("--results", default=str(RESULTS), help="folder for the JSON/CSV/PNG results")
    p.add_argument("--skip-slow", action="store_true", help="leave out torch.compile (minutes of compiling)")
    p.add_argument("--pairs", type=int, default=PAIRS, help="alternating (baseline, variant) timing pairs per variant")
    p.add_argument("--compile-pairs", type=int, default=None, help="timing pairs of the torch.compile variants")
    p.add_argument("--quick", action="store_true", help="budget plans and eager/compile alternatives only")
    p.add_argument("--compile-plans", action="store_true",
                   help="profile with --compile-plans: memadvise's compile-budget plans compete in its recommendations")
    args = p.parse_args()
    results = Path(args.results)
    if args.smoke:
        args.sizes, args.warmup, args.timed, args.pairs = ["smoke"], 1, 2, 1
    if args.one:
        model, size = args.one
        rows = one(model, size, warmup=args.warmup, timed=args.timed, skip_slow=args.skip_slow, pairs=args.pairs,
                   compile_pairs=args.compile_pairs, quick=args.quick, compile_plans=args.compile_plans)
        write_outputs(model, size, rows, results)
        return
    for model in args.models:
        if model == "llama" and importlib.util.find_spec("transformers") is None:
            print("llama: skipped (transformers is not installed)", file=sys.stderr, flush=True)
            continue
        for size in args.sizes:
            print(f"{model} ({size})", file=sys.stderr, flush=True)
            subprocess.run([sys.executable, __file__, "--one", model, size, "--warmup", str(args.warmup),
                            "--timed", str(args.timed), "--results", str(results), "--pairs", str(args.pairs)]
                           + (["--skip-slow"] if args.skip_slow else []) + (["--quick"] if args.quick else [])
                           + (["--compile-plans"] if args.compile_plans else [])
                           + (["--compile-pairs", str(args.compile_pairs)] if args.compile_pairs is not None else []),
                           check=True)
    if not args.smoke and "gpu" not in args.sizes:
        from report_benchmarks import write_markdown

        write_markdown(results, ROOT / "BENCHMARKS.md")


if __name__ == "__main__":
    main()
