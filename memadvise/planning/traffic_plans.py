"""Traffic strategies: changes that cut bytes moved (or ops launched) rather than bytes
held — a separate, combinable section of ``suggest``.

Each is predicted from measurements the profile carries (the optimizer's variants run on
copies, channels_last convolutions replayed, low-precision matmul rates, the roofline)
by ``analysis.traffic.predict_traffic``. Changes of numerics (mixed precision) are only
proposed when asked for (``allow_precision``).
"""

from __future__ import annotations

from memadvise.analysis.simulator import SimResult, Simulator
from memadvise.analysis.traffic import predict_traffic
from memadvise.schema.profile import Profile

SHORT = {
    "optimizer": "last-bit differences",
    "set_to_none": ".grad None until backward",
    "free_grads": "zero_grad before forward",
    "autocast": "changes numerics",
    "compile": "compile time at start",
    "channels_last": "layout only",
}
CAVEATS = {
    "optimizer": "same update, another implementation: results can differ in the last bits (summation order)",
    "set_to_none": "gradients are None between zero_grad() and backward: code reading .grad there must cope",
    "free_grads": "the gradients are set to None as each training forward starts (a forward pre-hook), which the "
                  "script's zero_grad() after the forward did anyway; code reading .grad between steps sees None",
    "autocast": "changes numerics (reduced precision); validate the loss curve",
    "compile": "compiles in the first steps (seconds to minutes); recompiles if shapes change; results can "
               "differ in the last bits",
    "channels_last": "a memory-format change only; inputs are converted by the first convolution",
}


def _name(change: dict) -> str:
    kind, value = next(iter(change.items()))
    if kind == "optimizer":
        return f"optimizer-{value}"
    if kind == "autocast":
        return f"autocast-{value}"
    return kind.replace("_", "-")


def candidates(profile: Profile, *, allow_precision: bool) -> tuple[list[dict], list[dict]]:
    """Traffic changes that apply to this profile, and why the others do not."""
    changes: list[dict] = []
    unavailable: list[dict] = []
    probe = ((profile.doc.get("optimizer") or {}).get("probe") or {})
    if probe.get("available"):
        current = probe.get("current")
        for variant, m in probe.get("variants", {}).items():
            if variant == current:
                continue
            if "error" in m:
                unavailable.append({"strategy": f"optimizer-{variant}", "reason": m["error"]})
            else:
                changes.append({"optimizer": variant})
    elif profile.doc.get("optimizer"):
        unavailable.append({"strategy": "optimizer", "reason": probe.get("reason", "the profile has no optimizer measurement")})
    changes.append({"set_to_none": True})
    changes.append({"free_grads": True})
    device = profile.device_type
    low = "bfloat16"
    if device == "cuda":
        cap = profile.records.environment.cuda_capability or (0, 0)
        low = "bfloat16" if cap[0] >= 8 else "float16"
    if allow_precision:
        changes.append({"autocast": low})
    else:
        unavailable.append({"strategy": f"autocast-{low}", "reason": "changes numerics: pass --allow-precision to consider it"})
    changes.append({"compile": True})
    changes.append({"channels_last": True})
    return changes, unavailable


def traffic_section(profile: Profile, sim: Simulator, *, allow_precision: bool,
                    recommended: tuple[str, list, SimResult] | None) -> dict:
    """The ``traffic`` section of the plan document."""
    changes, unavailable = candidates(profile, allow_precision=allow_precision)
    base = sim.baseline()
    plans = []
    for change in changes:
        try:
            pred = predict_traffic(profile, change, trace=sim.trace)
        except ValueError as exc:
            if "free_grads" not in change:  # a fix for one script shape: not worth a line elsewhere
                unavailable.append({"strategy": _name(change), "reason": str(exc)})
            continue
        if "free_grads" in change and pred.peak_bytes >= base.peak_bytes:
            continue  # gradients alive in the forward, but not at its peak: nothing won
        step = sim.base_step_s + pred.delta_s
        entry = {
            "strategy": _name(change),
            "change": change,
            "predicted": {"peak_bytes": pred.peak_bytes, "activation_bytes": pred.activation_bytes,
                          "step_time_s": step, "overhead": step / sim.base_step_s - 1.0},
            "notes": pred.notes,
            "caveat": CAVEATS[next(iter(change))],
            "short": SHORT[next(iter(change))],
            "changes_numerics": "autocast" in change,
        }
        if recommended is not None:
            name, actions, result = recommended
            combo = predict_traffic(profile, change, timeline=sim.simulate(actions, timeline=True).timeline,
                                    activation_bytes=result.activation_bytes, trace=sim.trace)
            combo_step = result.step_time_s + combo.delta_s
            entry["with_plan"] = {"plan": name, "peak_bytes": combo.peak_bytes, "activation_bytes": combo.activation_bytes,
                                  "step_time_s": combo_step, "overhead": combo_step / sim.base_step_s - 1.0}
        plans.append(entry)
    plans.sort(key=lambda p: p["predicted"]["step_time_s"])
    return {"plans": plans, "unavailable": unavailable, "baseline_peak_bytes": base.peak_bytes}
