"""Self-check of benchmarks/alternatives.py on the sample models at small sizes.

For each model, in this process: run the unmodified script (``--steps 4``) via runpy, then
once per variant with the variant applied at the first forward call of the root model (the
first module called; its real args and kwargs go to the planner). Checks that each run
completes 4 optimizer steps and compares the gradients just before the first
``optimizer.step()`` with the unmodified run's. Memory of step 2 is measured with PyTorch's
MemTracker (torch.distributed._tools, a dispatch mode: live tensor bytes, CPU too):
"act" = activation bytes alive at the end of the forward (inputs made in the step and the
output included), "peak" = peak of everything it tracks. Not measured for torch.compile.

    python benchmarks/check_alternatives.py                 # all three models
    python benchmarks/check_alternatives.py --models gpt --keep 0.5 0.3
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import runpy
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import alternatives as alt  # noqa: E402

SIZES = {
    "mlp": ["--depth", "4", "--width", "128", "--batch", "32"],
    "gpt": ["--n-layer", "3", "--width", "64", "--seq-len", "32", "--batch", "4"],
    "resnet": ["--width", "8", "--blocks", "2", "--stages", "2", "--image-size", "16", "--batch", "8"],
}
STEPS = 4


def variants(keep: list[float]):
    """(name, apply(model, args, kwargs) -> info, exact gradients expected, measure memory)."""

    def simple(fn, **kw):
        def apply(model, a, k):
            fn(model, **kw)
            return None
        return apply

    def planned(planner, frac, **kw):
        def apply(model, a, k):
            transform = planner(model, a, k, frac, **kw)
            transform(model)
            return getattr(transform, "info", None)
        return apply

    out = [
        ("checkpoint every block", simple(alt.checkpoint_blocks, every=1), True, True),
        ("checkpoint every 2nd block", simple(alt.checkpoint_blocks, every=2), True, True),
        ("selective: save matmuls", simple(alt.selective_blocks), True, True),
        ("torch.compile budget 0.5", simple(alt.compile_with_budget, budget=0.5), False, False),
    ]
    for f in keep:
        out.append((f"sac_milp {f:.0%}", planned(alt.sac_milp_plan, f), False, True))
        out.append((f"sac_milp {f:.0%} cpu-benchmark", planned(alt.sac_milp_plan, f, estimate_mode="cpu-benchmark"),
                    False, True))
        out.append((f"ckptplan {f:.0%}", planned(alt.ckptplan_plan, f), False, True))
    return out


def run(model_name: str, apply=None, *, measure: bool = True) -> dict:
    """Run sample_models/<model_name>.py in this process, ``apply`` at the first module call."""
    from torch.distributed._tools.mem_tracker import MemTracker
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    script = ROOT / "sample_models" / f"{model_name}.py"
    st: dict = {"applied": False, "steps": 0, "step_t": [], "grads": None, "buffers": None, "info": None,
                "plan_s": None, "error": None, "unavailable": None, "root": None, "mt": None,
                "act": None, "peak": None, "pending": [], "t_applied": None}
    orig_call = nn.Module.__call__

    def intercept(self, *a, **k):
        # installed for the whole run (a hook can't add or remove global hooks while they
        # are being iterated): runs what is pending before the next module call
        while st["pending"]:
            st["pending"].pop(0)()
        if not st["applied"]:
            st["applied"] = True
            st["root"] = self
            self.register_forward_hook(after_forward)
            if apply is not None:
                t0 = time.perf_counter()
                st["info"] = apply(self, a, k)
                st["plan_s"] = time.perf_counter() - t0
            st["t_applied"] = time.perf_counter()
        return orig_call(self, *a, **k)

    def after_forward(module, a, out):
        if st["mt"] is not None and st["act"] is None:
            snap = st["mt"].get_tracker_snapshot("current")
            st["act"] = sum(d.get("Activation", 0) for d in snap.values())

    def pre_step(opt, a, k):
        root = st["root"]
        if st["steps"] == 0 and root is not None:
            st["grads"] = {n: None if p.grad is None else p.grad.detach().clone() for n, p in root.named_parameters()}
            st["buffers"] = {n: b.detach().clone() for n, b in root.named_buffers()}
        if st["mt"] is not None and st["peak"] is None:
            snap = st["mt"].get_tracker_snapshot("peak")
            st["peak"] = sum(d.get("Total", 0) for d in snap.values())
            st["pending"].append(stop_tracker)

    def start_tracker():
        st["mt"] = MemTracker()
        st["mt"].__enter__()

    def stop_tracker():
        if st["mt"] is not None:
            st["mt"].__exit__(None, None, None)
            st["mt"] = None

    def post_step(opt, a, k):
        st["steps"] += 1
        st["step_t"].append(time.perf_counter())
        if st["steps"] == 1 and measure:
            st["pending"].append(start_tracker)

    h1 = register_optimizer_step_pre_hook(pre_step)
    h2 = register_optimizer_step_post_hook(post_step)
    saved = sys.argv[:], sys.path[:]
    sys.argv = [str(script), *SIZES[model_name], "--steps", str(STEPS)]
    sys.path.insert(0, str(script.parent))
    nn.Module.__call__ = intercept
    t_start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(str(script), run_name="__main__")
    except alt.Unavailable as exc:
        st["unavailable"] = str(exc)
    except Exception as exc:  # noqa: BLE001 -- a variant that fails is a result
        st["error"] = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"
        if os.environ.get("CHECK_DEBUG"):
            traceback.print_exc()
    finally:
        nn.Module.__call__ = orig_call
        stop_tracker()
        h1.remove()
        h2.remove()
        sys.argv, sys.path[:] = saved
    st["wall_s"] = time.perf_counter() - t_start
    st["root"] = None
    return st


def compare_grads(a: dict | None, b: dict | None) -> tuple[bool | None, float | None]:
    if not a or not b or a.keys() != b.keys():
        return None, None
    equal, diff = True, 0.0
    for n in a:
        x, y = a[n], b[n]
        if (x is None) != (y is None):
            return False, float("inf")
        if x is None:
            continue
        equal &= torch.equal(x, y)
        diff = max(diff, float((x - y).abs().max()))
    return equal, diff


def compare_buffers(a: dict | None, b: dict | None) -> bool | None:
    if a is None or b is None or a.keys() != b.keys():
        return None
    return all(torch.equal(a[n], b[n]) for n in a)


def mib(n) -> str:
    return "-" if n is None else f"{n / 2**20:.3f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(SIZES), choices=list(SIZES))
    p.add_argument("--keep", nargs="+", type=float, default=[0.5], help="keep fractions for the planners")
    a = p.parse_args(argv)
    failures = 0
    rows = []
    plans = []
    for model_name in a.models:
        print(f"== {model_name} {' '.join(SIZES[model_name])}", flush=True)
        base = run(model_name)
        if base["error"] or base["steps"] != STEPS:
            print(f"  baseline failed: {base['error']} ({base['steps']} steps)")
            failures += 1
            continue
        rows.append((model_name, "baseline", "ran", f"{base['steps']}", "", "", mib(base["act"]), mib(base["peak"]), "", ""))
        for name, apply, exact, measure in variants(a.keep):
            r = run(model_name, apply, measure=measure)
            steps = f"{r['steps']}"
            if r["unavailable"]:
                status, ok = f"Unavailable({r['unavailable']})", True
            elif r["error"]:
                status, ok = f"failed({r['error']})", False
            elif r["steps"] != STEPS:
                status, ok = f"failed(only {r['steps']} steps)", False
            else:
                status, ok = "ran", True
            equal, diff = compare_grads(base["grads"], r["grads"])
            grads = "-" if equal is None else ("equal" if equal else f"max|d|={diff:.2e}")
            if status == "ran" and exact and not equal:
                status, ok = "failed(gradients differ from the unmodified run)", False
            buffers = compare_buffers(base["buffers"], r["buffers"])
            bufs = "-" if buffers is None or not base["buffers"] else ("same" if buffers else "differ")
            plan_s = "" if r["plan_s"] is None else f"{r['plan_s']:.2f}"
            extra = ""
            if name.startswith("torch.compile") and status == "ran" and len(r["step_t"]) >= 4:
                t, tb = r["step_t"], base["step_t"]
                extra = (f"step 1 {t[0] - r['t_applied']:.1f}s (compiles fw+bw), step 4 {t[3] - t[2]:.3f}s "
                         f"(eager {tb[3] - tb[2]:.3f}s)")
            rows.append((model_name, name, status, steps, grads, bufs, mib(r["act"]), mib(r["peak"]), plan_s, extra))
            failures += not ok
            if r["info"]:
                plans.append((model_name, name, r["info"], r["act"], base["act"]))
            print(f"  {name}: {status.splitlines()[0][:150]}", flush=True)

    print()
    head = ("model", "variant", "result", "steps", "grads@1", "buffers@1", "act MiB", "peak MiB", "plan s", "")
    widths = [max(len(str(r[i])) for r in [head, *rows]) if i != 2 else 60 for i in range(len(head))]
    print("  ".join(str(h).ljust(w) for h, w in zip(head, widths)))
    for r in rows:
        cells = [str(c) for c in r]
        status = cells[2]
        first = cells[:2] + [status[:60]] + cells[3:]
        print("  ".join(c.ljust(w) for c, w in zip(first, widths)))
        for i in range(60, len(status), 60):
            print(" " * (widths[0] + widths[1] + 4) + status[i:i + 60])
    print()
    for model_name, name, info, act, base_act in plans:
        print(f"{model_name} / {name}:")
        for k, v in info.items():
            print(f"    {k}: {v}")
        if act and base_act and "predicted_activation_bytes" in info:
            pred = info["predicted_activation_bytes"] / max(info["baseline_activation_bytes"], 1)
            print(f"    activation kept: predicted {pred:.1%} of its baseline, measured {act / base_act:.1%} "
                  f"(MemTracker, step 2)")
    print(f"\n{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
