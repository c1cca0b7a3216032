"""The GPU check of issue 19: do memadvise's memory figures hold against the CUDA allocator?

For the sample GPT (12 layers, width 768, seq 1024, batch 8) and a Hugging Face Llama
(8 layers, hidden 1024, seq 1024, batch 8, float32, eager attention), through the real
CLI, each step in its own process:

1. ``memadvise profile``: the profile's peak (built from the allocator's readings around
   each op) and NVML's counters over the timed steps;
2. ``memadvise suggest --budget (peak - 0.7 x activations)``: the recommended plan's
   predicted peak and step-time overhead;
3. ``memadvise apply --verify``: the original and the patched script measured without
   memadvise's recorder (``memadvise.collect.independent``: ``max_memory_allocated`` over
   one steady-state step, from the end of optimizer step k to the end of k+1), memadvise's
   own readings beside them, and the measured overhead.

It prints one table and writes ``results.json``, ``table.txt`` and each model's profile,
plan, patch and verify result under ``--out``. Targets (issue 19): profile peak within
0.5% of the allocator, plan peaks within 2%, verify's measurement equal to the allocator.

    python benchmarks/cuda_check.py --out DIR               # one GPU, under 5 minutes
    python benchmarks/cuda_check.py --device cpu --smoke --out DIR   # tiny, on CPU
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ACTIVATION_CUT = 0.7  # the budget: baseline peak minus this share of the activations (issue 19)
PROFILE_TARGET = 0.005  # profile peak against the allocator
PLAN_TARGET = 0.02  # predicted plan peak against the allocator

MODELS = {
    "gpt": (ROOT / "sample_models" / "gpt.py",
            ["--n-layer", "12", "--n-head", "12", "--width", "768", "--seq-len", "1024", "--batch", "8"],
            ["--n-layer", "2", "--n-head", "2", "--width", "32", "--seq-len", "16", "--batch", "2", "--vocab", "64"]),
    "hf-llama": (ROOT / "tests" / "scripts" / "hf_llama.py",
                 ["--layers", "8", "--hidden", "1024", "--intermediate", "2752", "--heads", "16", "--seq", "1024",
                  "--batch", "8", "--vocab", "32000"],
                 ["--layers", "2", "--seq", "16", "--batch", "2"]),
}
STEPS = ["--steps", "12"]  # profile: 2 + 3 + 1; verify's profiles: 2 + 5 + 1; the measurement: 3


def _cli(args: list, log: Path, timeout: float) -> tuple[int, dict | None, float]:
    """Run ``python -m memadvise ARGS --json``; (exit code, its JSON, seconds)."""
    t0 = time.perf_counter()
    env = dict(os.environ)  # this checkout's memadvise, installed or not
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run([sys.executable, "-m", "memadvise", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)
    seconds = time.perf_counter() - t0
    log.write_text(f"$ memadvise {' '.join(map(str, args))}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        doc = None
    return proc.returncode, doc, seconds


def _error(p: float | None, m: float | None) -> float | None:
    return None if p is None or not m else (p - m) / m


def check_model(name: str, script: Path, args: list[str], out: Path, timeout: float) -> dict:
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    row: dict = {"model": name, "script": str(script.relative_to(ROOT)), "args": args}
    rc, _doc, row["profile_s"] = _cli(["profile", script, "--warmup", "2", "--steps", "1", "--timing-steps", "3",
                                       "--out", d / "profile.json", "--json", "--", *args], d / "profile.log", timeout)
    if rc != 0:
        return {**row, "error": f"profile failed (exit {rc}): see {d / 'profile.log'}"}
    profile = json.loads((d / "profile.json").read_text())
    s = profile["summary"]
    rep = next(st for st in profile["steps"] if st["index"] == s["representative_step"])
    env = profile.get("environment") or {}
    row["device_name"] = f"{(env.get('device') or {}).get('name')}, torch {env.get('torch_build')}"
    row.update(profile_peak=s["peak_bytes"], activation_bytes=s["activation_bytes"],
               profile_step_allocator_max=(rep.get("allocator") or {}).get("max_allocated_bytes"),
               untracked_at_peak=s["by_category_at_peak"].get("untracked"), notes=profile.get("notes", []),
               nvml=_nvml(profile.get("nvml") or {}))
    budget = int(s["peak_bytes"] - ACTIVATION_CUT * s["activation_bytes"])
    row["budget"] = budget
    rc, plans, row["suggest_s"] = _cli(["suggest", "--profile", d / "profile.json", "--budget", f"{budget}B",
                                        "--out", d / "plan.json", "--json"], d / "suggest.log", timeout)
    if rc not in (0, 1) or not plans or not plans.get("plans"):  # 1: no plan meets the budget
        return {**row, "error": f"suggest failed (exit {rc}): see {d / 'suggest.log'}"}
    rank = (plans.get("recommendation") or {}).get("rank")
    if rank is None:  # none meets the budget: the lowest predicted peak
        rank = min(plans["plans"], key=lambda p: p["predicted"]["peak_bytes"])["rank"]
    plan = next(p for p in plans["plans"] if p["rank"] == rank)
    row["meets_budget"] = plan.get("meets_budget")
    row.update(plan_rank=rank, plan_strategy=plan["strategy"], plan_predicted_peak=plan["predicted"]["peak_bytes"],
               plan_predicted_overhead=plan["predicted"]["overhead"])
    rc, applied, row["verify_s"] = _cli(["apply", "--plan", d / "plan.json", "--rank", rank, "--patch", d / "plan.patch",
                                         "--verify", "--verify-out", d / "verify.json", "--tolerance", "2%", "--json"],
                                        d / "verify.log", timeout)
    verify = (applied or {}).get("verify")
    if not verify:
        return {**row, "error": f"apply --verify failed (exit {rc}): see {d / 'verify.log'}"}
    peak = verify["rows"]["peak_bytes"]
    over = verify["rows"]["overhead"]
    row.update(instrument=peak.get("instrument"), independent_error=peak.get("independent_error"),
               allocator_baseline=peak["baseline_measured"], allocator_plan=peak["measured"],
               memadvise_baseline=peak.get("memadvise_baseline"), memadvise_plan=peak.get("memadvise"),
               measured_overhead=over["measured"], verify_passed=verify["passed"])
    row["profile_error"] = _error(row["profile_peak"], row["allocator_baseline"])
    row["plan_error"] = _error(row["plan_predicted_peak"], row["allocator_plan"])
    row["profile_ok"] = row["profile_error"] is not None and abs(row["profile_error"]) <= PROFILE_TARGET
    row["plan_ok"] = row["plan_error"] is not None and abs(row["plan_error"]) <= PLAN_TARGET
    return row


def _nvml(nv: dict) -> dict:
    if not nv.get("available"):
        return {"available": False, "reason": nv.get("reason", "not an NVIDIA GPU run")}
    window = nv.get("timed_steps") or nv.get("recorded_steps") or {}
    return {"available": True, "window": "timed steps" if nv.get("timed_steps") else "recorded steps",
            "n_samples": window.get("n_samples"), "mem_util_pct_mean": window.get("mem_util_pct_mean"),
            "dram_bw_util_pct_mean": window.get("dram_bw_util_pct_mean"),
            "dram_bw_util_pct_max": window.get("dram_bw_util_pct_max"),
            "outside_pytorch_bytes": nv.get("outside_pytorch_bytes")}


def _b(n) -> str:
    return "-" if n is None else f"{n:,}"


def _p(x) -> str:
    return "-" if x is None else f"{x:+.2%}"


def _pct(x) -> str:
    return "not available" if x is None else f"{x:.0f}%"


def table(rows: list[dict], device: str) -> str:
    names = sorted({r["device_name"] for r in rows if r.get("device_name")})
    lines = [f"memadvise cuda check on {device} ({'; '.join(names) or '-'}); measured = "
             f"{rows[0].get('instrument') or '-'}, in separate processes without memadvise's recorder", ""]
    for r in rows:
        lines.append(f"{r['model']}: {r['script']} {' '.join(r['args'])}")
        if "error" in r and "allocator_baseline" not in r:
            lines.append(f"  error: {r['error']}")
            lines.append("")
            continue
        lines += [
            f"  baseline peak   profile {_b(r['profile_peak'])} B / allocator {_b(r['allocator_baseline'])} B "
            f"({_p(r['profile_error'])}; target 0.5%: {'ok' if r['profile_ok'] else 'MISSED'}); "
            f"profile's own step max {_b(r['profile_step_allocator_max'])} B, untracked {_b(r['untracked_at_peak'])} B",
            f"  plan #{r['plan_rank']} {r['plan_strategy']} (budget {_b(r['budget'])} B)  predicted "
            f"{_b(r['plan_predicted_peak'])} B / allocator {_b(r['allocator_plan'])} B ({_p(r['plan_error'])}; "
            f"target 2%: {'ok' if r['plan_ok'] else 'MISSED'})",
            f"  verify          measured {_b(r['allocator_plan'])} B ({r['instrument']}); memadvise's own reading "
            f"{_b(r['memadvise_plan'])} B; passed {r['verify_passed']}"
            + (f"; independent measurement failed: {r['independent_error']}" if r.get("independent_error") else ""),
            f"  overhead        predicted {_p(r['plan_predicted_overhead'])} / measured {_p(r['measured_overhead'])}",
        ]
        nv = r["nvml"]
        if nv["available"]:
            lines.append(f"  NVML over the {nv['window']} ({nv['n_samples']} samples): memory controller busy "
                         f"{_pct(nv['mem_util_pct_mean'])}, DRAM bandwidth (GPM) {_pct(nv['dram_bw_util_pct_mean'])}"
                         f" (max {_pct(nv['dram_bw_util_pct_max'])}); outside PyTorch {_b(nv['outside_pytorch_bytes'])} B")
        else:
            lines.append(f"  NVML            not available: {nv['reason']}")
        for note in r.get("notes") or []:
            lines.append(f"  note: {note}")
        lines.append(f"  seconds: profile {r['profile_s']:.0f}, suggest {r['suggest_s']:.0f}, verify {r['verify_s']:.0f}")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="results directory (the device's $OUT)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--smoke", action="store_true", help="tiny model sizes (seconds on a CPU)")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    p.add_argument("--timeout", type=float, default=600, help="seconds per command")
    ns = p.parse_args()
    ns.out.mkdir(parents=True, exist_ok=True)
    rows = []
    t0 = time.perf_counter()
    for name in ns.models.split(","):
        script, full, smoke = MODELS[name]
        args = (smoke if ns.smoke else full) + STEPS + ["--device", ns.device]
        try:
            rows.append(check_model(name, script, args, ns.out, ns.timeout))
        except subprocess.TimeoutExpired as exc:
            rows.append({"model": name, "script": str(script.relative_to(ROOT)), "args": args,
                         "error": f"timed out after {exc.timeout:g} s"})
        print(f"{name}: done at {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    text = table(rows, ns.device)
    (ns.out / "results.json").write_text(json.dumps({"device": ns.device, "smoke": ns.smoke, "rows": rows,
                                                     "seconds": time.perf_counter() - t0}, indent=1))
    (ns.out / "table.txt").write_text(text + "\n")
    print(text)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
