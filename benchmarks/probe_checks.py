"""What the timing probes should measure on a quiet machine, measured: the expectations
the test suite does not assert, because a timing on a loaded machine can take any sign.

* a minor page fault costs between 10 ns and 100 µs (``host_memory.page_fault_cost_s``);
* recording an autograd node costs something: 100 multiplies on a tensor that requires
  grad take longer than on one that does not (``autograd_record_us`` > 0);
* a compiled forward+backward of a Linear(8, 8) costs more than the eager one (guards,
  the generated code's wrapper), and the graph's fixed cost is positive and below the
  compiled call itself (``profile --probe-compile``).

Whether a traffic plan's speed-up has its predicted sign (the fused optimizer on the
many-parameter script among them) is measured end to end by ``benchmarks/traffic.py``.

    python benchmarks/probe_checks.py [--skip-compile] [--out benchmarks/results/probe_checks.json]

Prints one line per expectation, measured value and whether it held; exits 0 either way
(a benchmark reports, it does not gate).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def checks(skip_compile: bool) -> list[dict]:
    import torch

    from memadvise.collect.calibrate import probe_roofline
    from memadvise.collect.host_memory import page_fault_cost_s

    cpu = torch.device("cpu")
    out = []

    def check(name: str, held: bool, **measured) -> None:
        out.append({"expectation": name, "held": bool(held), **measured})

    if platform.system() == "Linux":
        cost = page_fault_cost_s(mib=4, repeats=3)
        check("a minor fault costs 10 ns .. 100 µs", cost is not None and 1e-8 < cost < 1e-4, fault_s=cost)
    cal = probe_roofline(cpu, repeats=3)
    check("recording an autograd node costs time", cal.get("autograd_record_us", 0) > 0,
          autograd_record_us=cal.get("autograd_record_us"))
    if not skip_compile:
        from memadvise.collect.compile_probe import probe_compile

        probe = probe_compile(cpu)
        if "error" in probe:
            check("the compile probe runs", False, error=probe["error"])
        else:
            check("a compiled tiny step costs more than the eager one",
                  probe["compiled_tiny_us"] > probe["eager_tiny_us"] > 0,
                  compiled_tiny_us=probe["compiled_tiny_us"], eager_tiny_us=probe["eager_tiny_us"])
            check("the graph's fixed cost is positive and below the compiled call",
                  0 < probe["graph_overhead_us"] < probe["compiled_tiny_us"],
                  graph_overhead_us=probe["graph_overhead_us"], compiled_tiny_us=probe["compiled_tiny_us"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-compile", action="store_true", help="Leave out the compile probe (compiles: seconds).")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "probe_checks.json")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    results = checks(args.skip_compile)
    for r in results:
        figures = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in r.items() if k not in ("expectation", "held"))
        print(f"{'held' if r['held'] else 'NOT HELD'}: {r['expectation']} ({figures})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
