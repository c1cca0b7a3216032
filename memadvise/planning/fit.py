"""Capacity planning: the largest batch (or sequence length) that fits on a device, with
and without each recompute plan, from profiles at two or more small sizes."""

from __future__ import annotations

import re
from functools import lru_cache

from memadvise._errors import InputFileError, UsageError
from memadvise.analysis.scaling import ScalingModel, check_dimension_changed
from memadvise.analysis.simulator import Simulator
from memadvise.analysis.units import UnitTree
from memadvise.planning import solver, strategies
from memadvise.schema.actions import Action
from memadvise.schema.profile import Profile
from memadvise.sizes import parse_size

GiB = 2**30
MiB = 2**20
# Total memory as the driver reports it (nvidia-smi "Total", MiB), for common GPUs.
DEVICES: dict[str, int] = {
    "H200": 143_771 * MiB,
    "H100-80GB": 81_559 * MiB,
    "H100-94GB": 95_830 * MiB,
    "A100-80GB": 81_920 * MiB,
    "A100-40GB": 40_960 * MiB,
    "L40S": 46_068 * MiB,
    "L4": 23_034 * MiB,
    "A10G": 23_028 * MiB,
    "RTX4090": 24_564 * MiB,
    "RTX3090": 24_576 * MiB,
    "V100-32GB": 32_510 * MiB,
    "V100-16GB": 16_160 * MiB,
    "T4": 15_360 * MiB,
}
# What the CUDA context and PyTorch's own kernels take before the first tensor, when a
# CUDA profile did not measure it (NVML used minus reserved): a typical figure for
# recent drivers and PyTorch builds.
DEFAULT_CONTEXT_BYTES = 512 * MiB
# The caching allocator rounds and fragments: keep this share of a GPU free.
DEFAULT_HEADROOM = 0.05
MAX_VALUE = 1 << 20


def resolve_device(text: str, profiles: list[Profile]) -> tuple[int, str]:
    """(usable bytes, description) for ``--device-memory`` (a size or a known GPU)."""
    key = text.strip().upper().replace("_", "-")
    names = {k.upper(): k for k in DEVICES}
    if key in names:
        name = names[key]
        measured = [((p.doc.get("nvml") or {}).get("outside_pytorch_bytes")) for p in profiles]
        measured = [m for m in measured if m]
        context = max(measured) if measured else DEFAULT_CONTEXT_BYTES
        usable = int((DEVICES[name] - context) * (1 - DEFAULT_HEADROOM))
        how = "measured" if measured else "assumed"
        return usable, (f"{name}: {DEVICES[name] / GiB:.1f} GiB, less {context / MiB:.0f} MiB CUDA context ({how}) "
                        f"and {DEFAULT_HEADROOM:.0%} allocator headroom")
    if re.match(r"^\s*[0-9.]", text):
        size = parse_size(text, what="device memory")
        return size, f"{text.strip()} as given"
    raise UsageError(f"unknown device {text!r}; give a size (24GiB) or one of: {', '.join(DEVICES)}")


def parse_target(text: str, dimension: str) -> int:
    m = re.fullmatch(r"\s*([A-Za-z_]+)\s*=\s*([0-9]+)\s*", text or "")
    if not m:
        raise UsageError(f"--target {text!r} is not NAME=VALUE (e.g. {dimension}=64)")
    if m.group(1) != dimension:
        raise UsageError(f"--target varies {m.group(1)!r}, but the profiles vary {dimension!r}")
    value = int(m.group(2))
    if value < 1:
        raise UsageError("--target must be at least 1")
    return value


def fit(profiles: list[Profile], *, device_memory: str, target: str | None = None) -> dict:
    """The fit document: largest size per strategy, and the plan for a target size."""
    varied = [p.records.settings.vary for p in profiles]
    dims = {v.name if v is not None else None for v in varied}
    if None in dims or len(dims) != 1:
        raise InputFileError(
            "fit needs profiles made with `memadvise profile --vary NAME=V1,V2 ...` (each records its value); "
            "these profiles have no or different --vary settings"
        )
    dimension = dims.pop()
    values = [float(v.value) for v in varied if v is not None]
    model = ScalingModel(profiles, values, dimension)  # refuses mixed scripts and structures
    check_dimension_changed(model.profiles, model.values.tolist(), dimension)
    usable, device_text = resolve_device(device_memory, profiles)
    base = model.profiles[-1]
    tree = UnitTree(base)
    cands, _ = strategies.candidates(tree, device_type=base.device_type)
    plans: list[tuple[str, list[Action]]] = [("none", [])] + [(c.strategy, c.actions) for c in cands]

    @lru_cache(maxsize=None)
    def sim_at(v: int) -> Simulator:
        return Simulator(model.profile_at(v))

    @lru_cache(maxsize=None)
    def evaluate(v: int, key: int):
        return sim_at(v).simulate(plans[key][1])

    def largest(fits) -> int:
        """Largest integer value for which ``fits`` holds (fits assumed monotone)."""
        hi = int(model.values[-1])
        if not fits(1):
            return 0
        lo = 1
        while fits(hi):
            lo = hi
            hi *= 2
            if hi > MAX_VALUE:
                return lo
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid
        return lo

    rows = []
    for key, (name, actions) in enumerate(plans):
        best = largest(lambda v, k=key: evaluate(v, k).peak_bytes <= usable)
        r = evaluate(best, key) if best else None
        rows.append({
            "strategy": name,
            "actions": [a.to_json() for a in actions],
            "largest": best,
            "peak_bytes": r.peak_bytes if r else None,
            "step_time_s": r.step_time_s if r else None,
            "overhead": r.overhead if r else None,
            "throughput_per_s": (best / r.step_time_s) if r and r.step_time_s else None,
        })

    def solve_at(v: int):
        sim = sim_at(v)
        return solver.solve(sim, UnitTree(sim.profile, sim.trace), usable, device_type=base.device_type,
                            seeds=[a for _, a in plans[1:]])

    solutions: dict[int, object] = {}

    def optimal_fits(v: int) -> bool:
        if v not in solutions:
            solutions[v] = solve_at(v)
        return solutions[v] is not None

    best = largest(optimal_fits)
    sol = solutions.get(best) if best else None
    rows.append({
        "strategy": "budget-optimal",
        "actions": [a.to_json() for a in sol.actions] if sol else [],
        "largest": best,
        "peak_bytes": sol.result.peak_bytes if sol else None,
        "step_time_s": sol.result.step_time_s if sol else None,
        "overhead": sol.result.overhead if sol else None,
        "throughput_per_s": (best / sol.result.step_time_s) if sol and sol.result.step_time_s else None,
    })

    target_doc = None
    if target is not None:
        tv = parse_target(target, dimension)
        plain = sim_at(tv).baseline()
        sol_t = solve_at(tv)
        target_doc = {
            "value": tv,
            "peak_bytes_without_plan": plain.peak_bytes,
            "fits_without_plan": plain.peak_bytes <= usable,
            "plan": None if sol_t is None else {
                "actions": [a.to_json() for a in sol_t.actions],
                "peak_bytes": sol_t.result.peak_bytes,
                "activation_bytes": sol_t.result.activation_bytes,
                "step_time_s": sol_t.result.step_time_s,
                "overhead": sol_t.result.overhead,
            },
            "lowest_peak_bytes": min(evaluate_at(sim_at(tv), a).peak_bytes for _, a in plans),
        }
    return {
        "dimension": dimension,
        "profiled": [int(v) for v in model.values],
        "device": {"text": device_memory, "usable_bytes": usable, "description": device_text},
        "growth": model.bytes.kinds(),
        "strategies": rows,
        "target": target_doc,
        "script": base.script,
    }


def evaluate_at(sim: Simulator, actions: list[Action]):
    return sim.simulate(actions)


def predict_peak(profiles: list[Profile], value: float, actions: list[Action] | None = None) -> int:
    """Predicted peak at ``value`` of the profiles' varied dimension (tests, benchmarks)."""
    varied = [p.records.settings.vary for p in profiles]
    if any(v is None for v in varied):
        raise InputFileError("predict_peak needs profiles made with `memadvise profile --vary NAME=V1,V2 ...`")
    dims = {v.name for v in varied if v is not None}
    values = [float(v.value) for v in varied if v is not None]
    model = ScalingModel(profiles, values, dims.pop())
    return Simulator(model.profile_at(value)).simulate(actions or []).peak_bytes
