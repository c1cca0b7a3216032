"""Measure the optimizer's implementations on copies of its parameters and state.

PyTorch optimizers run a per-parameter loop, a multi-tensor ``foreach`` path (few, large
ops with whole-model temporaries: the step's peak can move into ``optimizer.step()``) or
a ``fused`` kernel. Which is faster and how much memory each needs depends on the model
and the device, so after the profiled run each available implementation takes a few
steps on clones of the real parameters, gradients and state: median step time and the
memory it needs beyond parameters, gradients and state.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch

VARIANTS = ("for-loop", "foreach", "fused")


def current_variant(optimizer: Any) -> str:
    defaults = getattr(optimizer, "defaults", {}) or {}
    if defaults.get("fused"):
        return "fused"
    if defaults.get("foreach"):
        return "foreach"
    if defaults.get("foreach") is None and "foreach" in defaults:
        params = [p for g in optimizer.param_groups for p in g["params"]]
        try:
            from torch.optim.optimizer import _default_to_fused_or_foreach

            _, foreach = _default_to_fused_or_foreach(params, differentiable=False, use_fused=False)
            return "foreach" if foreach else "for-loop"
        except Exception:  # a private helper whose signature moves between torch versions: assume the loop
            return "for-loop"
    return "for-loop"


def probe_optimizer(optimizer: Any, device: torch.device, *, steps: int = 3, memory_share: float = 0.25) -> dict:
    """{"current": name, "variants": {name: {"time_s", "extra_peak_bytes"} or {"error"}}}."""
    defaults = getattr(optimizer, "defaults", None)
    if defaults is None or "foreach" not in defaults:
        return {"available": False, "reason": f"{type(optimizer).__name__} has no foreach/fused implementations"}
    params = [p for g in optimizer.param_groups for p in g["params"]]
    state_bytes = sum(v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values()
                      if isinstance(v, torch.Tensor))
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    need = 3 * param_bytes + state_bytes  # clones of params, grads and state, and room for temporaries
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if need > memory_share * free:
            return {"available": False, "reason": "not enough free device memory to probe on copies"}
    out: dict[str, Any] = {"available": True, "current": current_variant(optimizer), "variants": {}}
    for variant in VARIANTS:
        if variant == "fused" and "fused" not in defaults:
            out["variants"][variant] = {"error": f"{type(optimizer).__name__} has no fused implementation"}
            continue
        try:
            out["variants"][variant] = _measure(optimizer, variant, device, steps)
        except Exception as exc:  # an implementation this optimizer or device lacks
            out["variants"][variant] = {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:160]}"}
    return out


def _measure(optimizer: Any, variant: str, device: torch.device, steps: int) -> dict:
    from memadvise.collect.measure import measure

    groups = []
    clones = {}
    for g in optimizer.param_groups:
        ps = []
        for p in g["params"]:
            c = p.detach().clone().requires_grad_(p.requires_grad)
            c.grad = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(c)
            clones[id(p)] = c
            ps.append(c)
        opts = {k: v for k, v in g.items() if k != "params"}
        opts["foreach"] = variant == "foreach"
        if "fused" in g or "fused" in optimizer.defaults:
            opts["fused"] = True if variant == "fused" else None
        groups.append({"params": ps, **opts})
    opt = type(optimizer)(groups)
    opt.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    for g, wanted in zip(opt.param_groups, groups):  # load_state_dict restored the originals' flags
        for key in ("foreach", "fused"):
            if key in wanted:
                g[key] = wanted[key]
    opt.step()  # first step: lazy state and kernels
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    with measure(device) as m:
        opt.step()
    extra = max(0, m.result.peak_bytes - m.result.start_bytes)
    del opt, groups, clones
    return {"time_s": statistics.median(times), "extra_peak_bytes": int(extra)}
