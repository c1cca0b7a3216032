"""What ``torch.compile`` costs on the profiled device beyond the fusion it buys (opt-in:
``memadvise profile --probe-compile``, since it compiles, which takes seconds).

The traffic model prices fusion from the roofline (``analysis/traffic.py``); two costs
are not in any eager op and are measured here instead, each as compiled minus eager on a
small fixed workload, forward and backward:

* the compiled graph's fixed cost per call, forward + backward (guards, the wrapper that
  runs the generated code, the one autograd node standing for the whole graph): a
  Linear(8, 8) + ReLU, whose kernels take a few microseconds either way, so that the
  difference is the graph's cost;
* random numbers: dropout on a 1 MiB activation (4 MiB on CUDA), compiled minus eager
  per element: compiled kernels draw them differently, and a compiled step with dropout
  can be slower than the eager one on CPU where the same step without is faster.

Compiled and eager run in turn and each difference is taken within a round: the
machine's speed drifts between rounds more than these costs. Measurements behind these
choices: ``benchmarks/results/probe-measurements.md``.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from memadvise.collect.timing import interleaved, median_diff


def probe_compile(device: torch.device, repeats: int = 15) -> dict:
    """``graph_overhead_us`` (compiled minus eager, one forward + backward of a tiny model),
    ``rng_extra_ns_per_element`` (compiled minus eager dropout forward + backward, per
    element): medians of the differences within interleaved rounds; ``compile_s``;
    ``{"error": ...}`` where the device or the compiler cannot."""
    import torch._dynamo

    start = time.perf_counter()
    try:

        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            tiny = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU()).to(device)
            tiny_c = torch.compile(torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU()).to(device))
            x = torch.randn(4, 8, device=device)

            def step(m) -> None:
                m(x).sum().backward()

            numel = (1 if device.type == "cpu" else 4) * 2**18
            act = torch.randn(numel, device=device, requires_grad=True)

            def dropout(t: torch.Tensor) -> torch.Tensor:
                return F.dropout(t, 0.1, training=True)

            dropout_c = torch.compile(dropout)

            def drop_step(f) -> None:
                f(act).sum().backward()

            step(tiny_c)  # compile, forward and backward
            drop_step(dropout_c)
            for _ in range(2):
                step(tiny), step(tiny_c), drop_step(dropout), drop_step(dropout_c)
            # compiled and eager in turn, each difference taken within a round (see the docstring)
            t = interleaved({"eager": lambda: step(tiny), "compiled": lambda: step(tiny_c)}, device, 2 * repeats + 1)
            d = interleaved({"eager": lambda: drop_step(dropout), "compiled": lambda: drop_step(dropout_c)}, device,
                             repeats)
            eager, compiled = statistics.median(t["eager"]), statistics.median(t["compiled"])
            drop_eager, drop_compiled = statistics.median(d["eager"]), statistics.median(d["compiled"])
            graph_s = median_diff(t["compiled"], t["eager"])
            rng_s = median_diff(d["compiled"], d["eager"])
    except Exception as exc:  # no compiler, an unsupported device: no estimate
        return {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ''}"}
    finally:
        torch._dynamo.reset()  # the probe's compiled code is not the script's
    return {
        "graph_overhead_us": round(graph_s * 1e6, 3),
        "rng_extra_ns_per_element": round(rng_s / numel * 1e9, 5),
        "eager_tiny_us": round(eager * 1e6, 3),
        "compiled_tiny_us": round(compiled * 1e6, 3),
        "eager_dropout_us": round(drop_eager * 1e6, 3),
        "compiled_dropout_us": round(drop_compiled * 1e6, 3),
        "compile_s": round(time.perf_counter() - start, 2),
    }
