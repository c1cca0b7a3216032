"""Memory traffic: bytes each op moves, its arithmetic intensity, and where the step is
limited by memory bandwidth rather than compute (a roofline over the recorded step).

Per op: bytes = bytes read (its tensor inputs) + bytes written (its outputs); FLOPs from
PyTorch's flop formulas (zero for ops it has none for: pointwise ops, copies, norms);
time = its measured duration, scaled to the uninstrumented step. The device's ceilings —
bandwidth from a large copy, compute from a large matmul — are measured by the profile's
probe (``collect/calibrate.py``). An op is memory-bound when its intensity (FLOP/byte) is
below the ridge point (compute rate / bandwidth).
"""

from __future__ import annotations

import math

from dataclasses import dataclass

import numpy as np

from memadvise.schema.ops import MATMUL_KERNEL_OPS, RNG_OPS, VIEW_OPS, runs_in_float32
from memadvise.schema.profile import Profile
from memadvise.schema.roofline import Roofline, memory_bound_chains, roofline
from memadvise.schema.trace import Trace
from memadvise.sizes import format_bytes


def _matmul_rate(flops: np.ndarray, curve: list, default: float) -> np.ndarray:
    """FLOP/s of a float32 matmul of ``flops``, interpolated (in log FLOPs) on the probe's
    square-matmul curve and held flat beyond its ends; ``default`` without a curve."""
    if not curve:
        return np.full(len(flops), default)
    xs = np.log([float(f) for f, _ in curve])
    ys = np.asarray([float(r) for _, r in curve])
    return np.interp(np.log(np.maximum(flops, 1.0)), xs, ys)


def dispatch_cost(names, cal: dict) -> np.ndarray:
    """Per op, the probed fixed cost of dispatching it (s): views and in-place ops cost
    less than an op that allocates its output, a matmul more (BLAS setup)."""
    default = cal.get("op_overhead_us")
    default = 5.0 if default is None else float(default)
    by_kind = cal.get("op_overhead_us_by_kind") or {}

    def kind(n: str) -> str | None:
        if n in VIEW_OPS:
            return "view"
        if n in MATMUL_KERNEL_OPS:
            return "matmul"
        if n.endswith("_") and not n.endswith("__"):
            return "inplace"
        return None

    return np.fromiter((float(by_kind.get(kind(n), default)) for n in names), dtype=np.float64,
                       count=len(names)) / 1e6


def predict_step_time(profile: Profile, trace: Trace | None = None) -> dict:
    """The traffic model's step time for the recorded step, from probes alone: no measured
    op duration of the step enters it; compare with the measured step time to see how far
    a step is from what its traffic and arithmetic allow.

    * matmuls, convolutions and attention: their own signature replayed alone after the run,
      with inputs and output out of cache as a step's weights and saved inputs are
      (``ops.replay_us``), else their FLOPs at the probed rate for a matmul of that size
      (convolutions: the probed convolution rate);
    * every other op at its roofline: bytes at the probed copy bandwidth, or at its own
      kind's probed rate where that is lower (random numbers, erf, normalisations compute
      per element), plus the probed dispatch cost of its kind;
    * the optimizer's step as measured on copies of its parameters and state (its
      per-parameter Python loop included), else its ops as above;
    * autograd: recording each node in forward and scheduling it in backward; and
      ``nn.Module.__call__`` per module call;
    * on CPU, the step's minor page faults (counted in its timing steps) at the probed
      cost of one: the probes ran on a pinned heap, without faults
      (``collect/host_memory.py``).

    ``roofline_step_time_s`` is the same sum with every op at its roofline."""
    from memadvise.schema.categories import Phase

    t = trace or Trace(profile)
    r = roofline(profile, t)
    cal = profile.doc.get("calibration") or {}
    names = np.asarray(t.strings, dtype=object)[t.op_name] if len(t.op_name) else np.asarray([], dtype=object)
    conv = np.fromiter(("convolution" in n for n in names), dtype=bool, count=len(names))
    rate = _matmul_rate(r.flops, cal.get("matmul_curve_float32") or [], r.flops_rate)
    rate[conv] = float(cal.get("conv_flops_per_s_float32") or r.flops_rate)
    kinds = cal.get("op_bytes_per_s") or {}
    bw = np.fromiter((min(r.bandwidth, float(kinds.get(n) or r.bandwidth)) for n in names), dtype=np.float64,
                     count=len(names))
    memory_s = r.bytes / bw
    compute_s = r.flops / rate
    dispatch_s = dispatch_cost(names, cal)
    roof_s = np.maximum(memory_s, compute_s) + dispatch_s
    replay_s = t.op_replay_us / 1e6
    replayed = ~np.isnan(replay_s)
    per_op = np.where(replayed, replay_s, roof_s)  # a replay includes its call's dispatch

    optimizer = t.op_phase == int(Phase.OPTIMIZER)
    probe = (profile.doc.get("optimizer") or {}).get("probe") or {}
    measured_opt = (probe.get("variants") or {}).get(probe.get("current") or "", {}).get("time_s")
    opt_from_probe = bool(optimizer.any() and measured_opt)
    optimizer_s = float(measured_opt) if opt_from_probe else float(per_op[optimizer].sum())

    views = np.fromiter((n in VIEW_OPS for n in names), dtype=bool, count=len(names))
    nodes = t.backward_nodes if t.backward_nodes is not None else int(((t.op_phase == 1) & ~views).sum())
    autograd_s = nodes * (float(cal.get("autograd_node_us") or 0.0) + float(cal.get("autograd_record_us") or 0.0)) / 1e6
    module_s = float(cal.get("module_call_us") or 0.0) / 1e6 * len(t.call_unit)
    faults = profile.records.summary.minor_faults_per_step
    fault_us = cal.get("page_fault_us") if cal.get("heap_pinned") else None
    page_faults_s = float(faults) * float(fault_us) / 1e6 if faults and fault_us else 0.0
    fixed_s = autograd_s + module_s + page_faults_s
    ops_s = float(per_op[~optimizer].sum())
    roofed = ~replayed & ~(optimizer & opt_from_probe)  # ops priced at their roofline
    mem_bound = memory_s >= compute_s
    return {
        "step_time_s": ops_s + optimizer_s + fixed_s,
        "roofline_step_time_s": float(roof_s.sum()) + fixed_s,
        "optimizer_s": optimizer_s,
        "optimizer_from_probe": opt_from_probe,
        "replayed_s": float(per_op[replayed & ~optimizer].sum()),
        "replayed_ops": int(replayed.sum()),
        "autograd_s": autograd_s,
        "module_calls_s": module_s,
        "page_faults_s": page_faults_s,
        "memory_bound_s": float(memory_s[mem_bound & roofed].sum()),
        "compute_bound_s": float(compute_s[~mem_bound & roofed].sum()),
        "dispatch_s": float(dispatch_s[roofed].sum()),
        "ops": len(per_op),
        "kind_rated_ops": int(sum(1 for n in names if n in kinds and float(kinds[n]) < r.bandwidth)),
    }


def traffic_report(profile: Profile, *, top: int = 10) -> dict:
    """Share of step time in memory-bound ops; the top memory-bound op chains by module."""
    t = Trace(profile)
    r = roofline(profile, t)
    units = profile.records.units
    total = float(r.time_s.sum())
    mb_time = float(r.time_s[r.memory_bound].sum())
    chains = []
    owner = t.op_owner
    for i, j in memory_bound_chains(t, r):
        call = int(owner[i])
        unit = units[int(t.call_unit[call])].name if call >= 0 else None
        sl = slice(i, j + 1)
        chains.append({
            "unit": unit,
            "phase": ("forward", "backward", "optimizer")[int(t.op_phase[i])],
            "ops": [t.op_name_str(k) for k in range(i, j + 1)],
            "bytes": int(r.bytes[sl].sum()),
            "time_s": float(r.time_s[sl].sum()),
            "time_at_bandwidth_s": float(r.bandwidth_time_s[sl].sum()),
        })
    # merge chains of the same unit, phase and op sequence (every block, every call)
    merged: dict[tuple, dict] = {}
    for c in chains:
        key = (c["unit"].split(".")[-1] if c["unit"] else None, c["phase"], tuple(c["ops"]))
        m = merged.setdefault(key, {**c, "count": 0, "bytes": 0, "time_s": 0.0, "time_at_bandwidth_s": 0.0})
        m["count"] += 1
        for k in ("bytes", "time_s", "time_at_bandwidth_s"):
            m[k] += c[k]
    ranked = sorted(merged.values(), key=lambda c: -c["time_s"])[:top]
    achieved = float(r.bytes[r.memory_bound].sum() / mb_time) if mb_time > 0 else 0.0
    return {
        "bandwidth_bytes_per_s": r.bandwidth,
        "matmul_flops_per_s": r.flops_rate,
        "ridge_flops_per_byte": r.ridge,
        "step_time_s": total,
        "memory_bound_time_s": mb_time,
        "memory_bound_share": mb_time / total if total else 0.0,
        "achieved_bandwidth_bytes_per_s": achieved,
        "bytes_moved": int(r.bytes.sum()),
        "flops": int(r.flops.sum()),
        "chains": ranked,
        "nvml": nvml_window(profile.doc.get("nvml") or {}),
        "model_step_time_s": (model := predict_step_time(profile, t))["step_time_s"],
        "roofline_step_time_s": model["roofline_step_time_s"],
    }


def _autocast_pointwise_delta(profile: Profile, t: Trace, r: Roofline, cal: dict, replayed: set[int]) -> tuple[float, int]:
    """Time change of the forward/backward ops the autocast replay did not cover (the
    probe replays matmuls and convolutions): each float32 op outside autocast's float32
    list gets low-precision inputs and outputs, so half its bytes; per element it computes
    as before. Its measured time scales as the traffic model's time does:
    ``max(bytes/2 / bandwidth, bytes / kind rate) / (bytes / min(bandwidth, kind rate))``."""
    from memadvise.schema.categories import Phase

    kinds = cal.get("op_bytes_per_s") or {}
    strings = t.strings
    shapes = (profile.trace.get("ops") or {}).get("shape") or []
    delta, n = 0.0, 0
    for i in range(len(r.time_s)):
        if i in replayed or t.op_phase[i] == Phase.OPTIMIZER or r.bytes[i] <= 0 or i >= len(shapes):
            continue
        if not str(strings[shapes[i]]).startswith("float32"):
            continue
        name = t.op_name_str(i)
        if name in VIEW_OPS or runs_in_float32(name) or name in MATMUL_KERNEL_OPS or "convolution" in name:
            continue
        kind = float(kinds.get(name) or r.bandwidth)
        before = r.bytes[i] / min(r.bandwidth, kind)
        after = max(0.5 * r.bytes[i] / r.bandwidth, r.bytes[i] / kind if kind < r.bandwidth else 0.0)
        delta += float(r.time_s[i]) * (after / before - 1.0)
        n += 1
    return delta, n


def fault_delta(profile: Profile, kind: str) -> dict | None:
    """Page faults per step under a change (CPU): the measured count scaled by the ratio
    of the change's replayed allocations to the recorded step's, both replayed on the
    heap as the run left it (``collect/fault_replay.py``); where the recorded replay
    faulted nothing, the change's own replayed count. Priced at the probed cost of a
    fault. None where the profile has no replay for this change."""
    cal = profile.doc.get("calibration") or {}
    replay = cal.get("fault_replay") or {}
    measured = profile.records.summary.minor_faults_per_step
    fault_us = cal.get("page_fault_us") if cal.get("heap_pinned") else None
    if kind not in replay or "recorded" not in replay or measured is None or not fault_us:
        return None
    base, new = float(replay["recorded"]), float(replay[kind])
    changed = float(measured) * new / base if base > 0 else float(measured) + new
    return {"recorded": float(measured), "changed": changed,
            "delta_s": (changed - float(measured)) * float(fault_us) / 1e6}


def _numel(shape: str) -> int:
    """Elements of a recorded shape string such as ``float32[8, 64, 128]`` (0 if none)."""
    if "[" not in shape:
        return 0
    inside = shape[shape.find("[") + 1:shape.rfind("]")]
    n = 1
    for dim in inside.split(","):
        dim = dim.strip()
        if not dim.isdigit():
            return 0 if dim else n
        n *= int(dim)
    return n


def _model_calls(profile: Profile) -> int:
    """Forward calls of the root model per step (graphs ``torch.compile(model)`` runs)."""
    calls = profile.trace.get("calls") or {}
    units = profile.records.units
    n = sum(1 for u, parent, phase in zip(calls.get("unit", []), calls.get("parent", []), calls.get("phase", []))
            if parent == -1 and phase == 0 and u >= 0 and units[u].name == "")
    return max(1, n)


# ---------------------------------------------------------------------------- changes
@dataclass
class TrafficPrediction:
    """A traffic change predicted on a step: extra time (s, negative = faster) and the new peak."""

    change: dict
    delta_s: float
    peak_bytes: int
    activation_bytes: int
    notes: list[str]


def predict_traffic(profile: Profile, change: dict, *, timeline=None, activation_bytes: int | None = None,
                    trace: Trace | None = None) -> TrafficPrediction:
    """Predict one traffic change (``{"optimizer": "fused"}``, ``{"autocast": "bfloat16"}``,
    ``{"compile": True}``, ``{"channels_last": True}``, ``{"set_to_none": True}``) on the
    recorded step, or on a recompute plan's predicted ``timeline``."""
    from memadvise.schema.categories import Category, Phase

    t = trace or Trace(profile)
    tl = timeline if timeline is not None else t.baseline_timeline()
    total = tl.total.astype(np.float64).copy()
    act = activation_bytes if activation_bytes is not None else profile.records.summary.activation_bytes
    r = roofline(profile, t)
    cal = profile.doc.get("calibration") or {}
    notes: list[str] = []
    delta = 0.0
    kind, value = next(iter(change.items()))
    rec_ops = ~tl.recompute
    op_of = np.full(len(total), -1, dtype=np.int64)
    op_of[rec_ops] = np.arange(int(rec_ops.sum()))  # recorded op index of each point (recompute: none)

    if kind == "optimizer":
        probe = ((profile.doc.get("optimizer") or {}).get("probe") or {})
        variants = probe.get("variants", {})
        cur, new = variants.get(probe.get("current")), variants.get(value)
        if not cur or not new or "error" in new or "error" in cur:
            raise ValueError(f"no measurement of the {value} optimizer")
        delta = new["time_s"] - cur["time_s"]
        total[tl.phase == int(Phase.OPTIMIZER)] += new["extra_peak_bytes"] - cur["extra_peak_bytes"]
        notes.append(f"measured on copies of the optimizer: {cur['time_s'] * 1000:.2f} → {new['time_s'] * 1000:.2f} ms, "
                     f"{format_bytes(new['extra_peak_bytes'])} of temporaries")
    elif kind == "set_to_none":
        grads = tl.by_category[:, int(Category.GRADIENT)].astype(np.float64)
        zero_ops = [i for i in range(len(t.op_name)) if t.op_name_str(i) == "zero_" and int(t.op_mutates[i]) >= 0
                    and int(t.st_category[int(t.op_mutates[i])]) == int(Category.GRADIENT)]
        if not zero_ops:
            raise ValueError("gradients are already set to None, not zeroed in place")
        last_zero = max(zero_ops)
        first_bwd = next((i for i in range(last_zero, len(t.op_phase)) if t.op_phase[i] == Phase.BACKWARD), len(t.op_phase))
        window = (op_of > last_zero) & (op_of < first_bwd)
        total[window] -= grads[window]
        delta = -float(r.time_s[zero_ops].sum())
    elif kind == "free_grads":
        # the previous step's gradients alive before the step's first backward (zero_grad()
        # after the forward): dropped when the forward starts instead, they leave the
        # forward peak; the script drops them before the backward anyway
        grads = tl.by_category[:, int(Category.GRADIENT)].astype(np.float64)
        first_bwd = next((i for i in range(len(t.op_phase)) if t.op_phase[i] == Phase.BACKWARD), None)
        if first_bwd is None or first_bwd == 0:
            raise ValueError("the step has no forward before a backward")
        window = (op_of >= 0) & (op_of < first_bwd) & (tl.phase == int(Phase.FORWARD))
        at_backward = grads[op_of == first_bwd - 1]
        if not window.any() or float(grads[window].max()) <= 0:
            raise ValueError("no gradients are alive during the forward")
        if at_backward.size and float(at_backward[-1]) > 0:
            raise ValueError("the gradients alive in the forward are still alive when the backward starts "
                             "(accumulated, or zeroed in place: see set-to-none)")
        notes.append(f"the previous step's gradients ({format_bytes(float(grads[window].max()))}) are alive in "
                     "the forward and dropped by zero_grad() before the backward: dropped before the forward")
        total[window] -= grads[window]
    elif kind == "autocast":
        low = str(value)
        rate_low = float(cal.get(f"matmul_flops_per_s_{low}") or 0)
        if rate_low <= 0:
            raise ValueError(f"the device has no measured {low} matmul")
        ratios = cal.get("autocast_op_ratio") or {}
        if ratios and cal.get("autocast_dtype") == low:
            # each forward/backward op replayed with its inputs in the low precision, measured
            for i, ratio in ratios.items():
                i = int(i)
                if i < len(r.time_s) and t.op_phase[i] != Phase.OPTIMIZER:
                    delta += float(r.time_s[i]) * (float(ratio) - 1.0)
            notes.append(f"{len(ratios)} ops replayed in {low}, measured")
            extra, n_est = _autocast_pointwise_delta(profile, t, r, cal, set(map(int, ratios)))
            if n_est:
                delta += extra
                notes.append(f"{n_est} other ops from the traffic model: half the bytes at their kind's probed rate")
            per_matmul = float(cal.get("autocast_matmul_overhead_us") or 0.0) / 1e6
            if per_matmul > 0:
                names = np.asarray(t.strings, dtype=object)[t.op_name]
                n_mm = int(sum(1 for k, n in enumerate(names) if t.op_phase[k] == Phase.FORWARD
                               and n in ("mm", "addmm", "bmm", "baddbmm", "convolution", "linear")))
                delta += n_mm * per_matmul
                notes.append(f"autocast's casts and dispatch: {per_matmul * 1e6:.1f} µs per matmul, measured")
        else:  # no replay: the roofline's estimate
            matmul = (r.flops > 0) & (t.op_phase != Phase.OPTIMIZER)
            other = (~matmul) & (r.bytes > 0) & (t.op_phase != Phase.OPTIMIZER)
            delta += float(r.time_s[matmul].sum()) * (r.flops_rate / rate_low - 1.0)
            delta -= 0.5 * float(np.minimum(r.time_s[other], r.bandwidth_time_s[other]).sum())
        param_bytes = int((profile.doc.get("model") or {}).get("param_bytes") or 0)
        delta += 1.5 * param_bytes / r.bandwidth  # weights cast to the low precision each forward
        a = tl.by_category[:, int(Category.ACTIVATION)].astype(np.float64)
        fwd_bwd = tl.phase != int(Phase.OPTIMIZER)
        total[fwd_bwd] += -0.5 * a[fwd_bwd] + 0.5 * param_bytes
        act = int(0.5 * act + 0.5 * param_bytes)
        notes.append(f"{low} matmul measured at {rate_low / 1e9:.0f} vs {r.flops_rate / 1e9:.0f} GFLOP/s float32")
        notes.append("changes numerics: reduced-precision activations and matmuls" +
                     ("; float16 needs a GradScaler" if low == "float16" else ""))
    elif kind == "compile":
        # each chain of memory-bound ops of the model (through its modules' boundaries: the
        # compiler sees the whole forward, and the whole backward, as one graph) becomes one
        # kernel that reads the chain's inputs and writes its outputs once (taken as two of
        # its ops' traffic at the probed bandwidth),
        # paying one op's dispatch; random numbers are drawn per element in the fused kernel
        # too, so they keep their time (compiled ones can be slower than eager ones on CPU:
        # benchmarks/results/probe-measurements.md)
        overhead = float(cal.get("op_overhead_us") or 5.0) / 1e6
        saved, rng_kept = 0.0, 0.0
        for i, j in memory_bound_chains(t, r, across_modules=True):
            if t.op_phase[i] == Phase.OPTIMIZER:
                continue
            ops = [k for k in range(i, j + 1) if t.op_name_str(k) not in RNG_OPS]
            rng_kept += float(sum(r.time_s[k] for k in range(i, j + 1) if t.op_name_str(k) in RNG_OPS))
            if len(ops) < 2:
                continue
            fused = max(float(r.bandwidth_time_s[ops].sum()) / len(ops) * 2, overhead)
            saved += max(0.0, float(r.time_s[ops].sum()) - fused)
        delta = -saved
        notes.append("fusion of memory-bound chains estimated from the roofline; the first steps compile "
                     "(seconds to minutes) and the compiler chooses what to save for backward")
        probe = cal.get("compile_probe") or {}
        if all(isinstance(probe.get(k), (int, float)) for k in ("graph_overhead_us", "rng_extra_ns_per_element")):
            graphs = _model_calls(profile)
            overhead_s = graphs * float(probe["graph_overhead_us"]) / 1e6
            shapes = (profile.trace.get("ops") or {}).get("shape") or []
            rng_elems = sum(_numel(t.strings[int(shapes[k])]) for k in range(min(len(shapes), len(t.op_name)))
                            if t.op_phase[k] != Phase.OPTIMIZER and t.op_name_str(k) in RNG_OPS)
            rng_s = rng_elems * float(probe["rng_extra_ns_per_element"]) / 1e9
            delta += overhead_s + rng_s
            notes.append(f"measured on this device (profile --probe-compile): {probe['graph_overhead_us']:.0f} µs per "
                         f"compiled forward+backward ({graphs} per step), random numbers "
                         f"{probe['rng_extra_ns_per_element']:+.2f} ns per element compiled ({rng_s * 1000:+.2f} ms)")
        else:
            notes.append("the compiled graph's fixed cost and its random numbers not measured: "
                         "`memadvise profile --probe-compile` measures them")
        if rng_kept > 0:
            notes.append(f"random numbers ({rng_kept * 1000:.2g} ms per step) kept at their time: the compiled "
                         "kernels draw them per element too, and on CPU may be slower than eager's (dropout)")
    elif kind == "channels_last":
        ratios = cal.get("channels_last_op_ratio") or {}
        if not ratios:
            raise ValueError("no convolution to measure")
        for i, ratio in ratios.items():
            delta += float(r.time_s[int(i)]) * (float(ratio) - 1.0)
        notes.append(f"{len(ratios)} convolutions replayed in channels_last, measured")
    else:
        raise ValueError(f"unknown traffic change {kind!r}")
    faults = fault_delta(profile, kind)
    if faults is not None:
        delta += faults["delta_s"]
        notes.append(f"page faults per step {faults['recorded']:.0f} → {faults['changed']:.0f} "
                     f"({faults['delta_s'] * 1000:+.2f} ms; the step's allocations replayed on the heap as the run left it)")
    return TrafficPrediction(change=change, delta_s=delta, peak_bytes=int(total.max()) if len(total) else 0,
                             activation_bytes=int(act), notes=notes)


NVML_WINDOWS = (("timed_steps", "the timed steps"), ("recorded_steps", "the recorded steps"),
                ("overall", "the whole run, idle time included"))


def nvml_window(nvml: dict) -> dict | None:
    """NVML's counters over the steps: the uninstrumented timed steps where the profile has
    them (what the step time is measured on), else the recorded steps, else (profiles made
    before step windows) the whole run; ``window`` says which, in words."""
    for key, words in NVML_WINDOWS:
        agg = nvml.get(key)
        if agg and agg.get("n_samples"):
            # profiles made before NaN readings were dropped may hold some: never passed on
            return {**{k: v for k, v in agg.items() if not (isinstance(v, float) and not math.isfinite(v))},
                    "window": words}
    return None
