"""Measure, on the profiled device, the fixed costs a plan adds besides recomputed ops.

``torch.utils.checkpoint`` costs a little per call (RNG state stash, a frame, hooks) and
selective checkpointing runs two Python dispatch modes over every op of the region.
These costs are machine-specific, so they are measured here, once per profile, on a
tiny model, rather than assumed.
"""

from __future__ import annotations

import functools
import statistics

import torch
from torch.utils.checkpoint import (
    CheckpointPolicy,
    checkpoint,
    create_selective_checkpoint_contexts,
)
from torch.utils._python_dispatch import TorchDispatchMode

from memadvise.collect.op_rates import probe_op_rates
from memadvise.collect.timing import interleaved, median_diff, median_time

N_BLOCKS = 16
WIDTH = 8


class _Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(WIDTH, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x))


class _CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def _policy(ctx, op, *args, **kwargs):
    if op is torch.ops.aten.addmm.default:
        return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


def _step_fn(blocks, x, mode: str, device: torch.device):
    """One forward+backward of the tiny blocks, plain or under a checkpoint mode."""
    def forward(h):
        for b in blocks:
            if mode in ("plain", "autocast"):
                h = b(h)
            elif mode == "checkpoint":
                h = checkpoint(b, h, use_reentrant=False)
            else:
                h = checkpoint(b, h, use_reentrant=False,
                               context_fn=functools.partial(create_selective_checkpoint_contexts, _policy))
        return h

    def run() -> None:
        if mode == "autocast":  # one context around the whole forward, as `apply` patches it
            with torch.autocast(device.type, dtype=low_precision(device)):
                h = forward(x)
        else:
            h = forward(x)
        h.float().sum().backward()

    return run


def low_precision(device: torch.device) -> torch.dtype:
    """The precision autocast would use on ``device``: bfloat16, float16 before Ampere."""
    if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] < 8:
        return torch.float16
    return torch.bfloat16


def probe_roofline(device: torch.device, repeats: int = 7) -> dict:
    """Attainable memory bandwidth (a large copy: bytes read + written per second) and
    matmul rate (FLOP/s) of ``device``, measured here rather than read from a datasheet.
    Each is the median of ``repeats`` runs, so that the figures describe the machine as it
    is while the step is timed (a busy machine lowers both alike)."""
    def timed(fn) -> float:
        return median_time(fn, device, repeats)

    out: dict = {}
    try:
        n = (256 if device.type == "cuda" else 32) * 2**20 // 4  # larger than any CPU cache
        src = torch.empty(n, dtype=torch.float32, device=device).uniform_()
        dst = torch.empty_like(src)
        out["bandwidth_bytes_per_s"] = 2 * src.numel() * 4 / timed(lambda: dst.copy_(src))
        src = dst = None  # free them before the matmuls
        size = 4096 if device.type == "cuda" else 1024
        # float16 only where autocast would use it (CUDA): CPUs have no fast float16
        # matmul, and timing one costs seconds
        dtypes = (torch.float32, torch.bfloat16) + ((torch.float16,) if device.type == "cuda" else ())
        for dtype in dtypes:
            try:
                a = torch.randn(size, size, device=device).to(dtype)
                b = torch.randn(size, size, device=device).to(dtype)
                rate = 2 * size**3 / timed(lambda a=a, b=b: a @ b)
            except Exception:  # a dtype the device has no matmul for
                continue
            out[f"matmul_flops_per_s_{str(dtype).replace('torch.', '')}"] = rate
        # convolutions reach a different ceiling than matmuls (im2col/winograd kernels)
        n_img, ch, hw = (64, 128, 56) if device.type == "cuda" else (16, 64, 32)
        img = torch.randn(n_img, ch, hw, hw, device=device)
        weight = torch.randn(ch, ch, 3, 3, device=device)
        conv_flops = 2 * n_img * ch * hw * hw * ch * 9
        out["conv_flops_per_s_float32"] = conv_flops / timed(
            lambda: torch.nn.functional.conv2d(img, weight, padding=1))
        img = weight = None
        tiny = torch.ones(8, device=device)
        out["op_overhead_us"] = timed(lambda: [tiny.add(1) for _ in range(100)]) / 100 * 1e6
        # dispatch differs by kind: a view allocates nothing, an in-place op no output, a
        # matmul goes through BLAS setup
        small = torch.ones(8, 8, device=device)
        out["op_overhead_us_by_kind"] = {
            "view": timed(lambda: [small.t() for _ in range(100)]) / 100 * 1e6,
            "inplace": timed(lambda: [tiny.add_(1) for _ in range(100)]) / 100 * 1e6,
            "matmul": timed(lambda: [small @ small for _ in range(100)]) / 100 * 1e6,
        }
        # the autograd engine's cost per backward node, beyond the op the node dispatches
        leaf = torch.ones(8, device=device, requires_grad=True)

        def chain():
            y = leaf
            for _ in range(100):
                y = y * 1.5
            return y

        def chain_untracked():
            y = tiny
            for _ in range(100):
                y = y * 1.5
            return y

        # nn.Module.__call__ itself (hook dispatch, forward lookup), paid once per module call
        ident = torch.nn.Identity()
        t = interleaved({"fwd": chain, "untracked": chain_untracked, "both": lambda: chain().backward(tiny),
                          "call": lambda: [ident(tiny) for _ in range(100)],
                          "forward": lambda: [ident.forward(tiny) for _ in range(100)]}, device, 2 * repeats + 1)
        # forward + backward = two forwards' ops (a mul per node each way) + the engine
        out["autograd_node_us"] = max(0.0, statistics.median(b - 2 * f for b, f in zip(t["both"], t["fwd"])) / 100 * 1e6)
        # a forward op on tensors that require grad records its node (and saves its inputs)
        out["autograd_record_us"] = max(0.0, median_diff(t["fwd"], t["untracked"]) / 100 * 1e6)
        out["module_call_us"] = max(0.0, median_diff(t["call"], t["forward"]) / 100 * 1e6)
        out.update(probe_op_rates(device, repeats=repeats))
    except Exception as exc:  # a probe this device cannot run: the profile's notes say so, models use defaults
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def calibrate(device: torch.device, repeats: int = 15) -> dict:
    """``checkpoint_call_ms``, ``selective_op_us`` and ``autocast_matmul_overhead_us`` on
    ``device``: medians over ``repeats`` rounds of the difference between the modes, run in
    turn within each round; and the roofline probe."""
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            blocks = [_Block().to(device) for _ in range(N_BLOCKS)]
            x = torch.randn(4, WIDTH, device=device, requires_grad=True)
            with _CountOps() as counter:
                blocks[0](x)
            ops_per_block = max(1, counter.n)
            modes = {m: _step_fn(blocks, x, m, device) for m in ("plain", "checkpoint", "selective", "autocast")}
            try:
                modes["autocast"]()
            except Exception:  # no autocast for this device
                del modes["autocast"]
            t = interleaved(modes, device, repeats)
    except Exception as exc:  # calibration is an estimate: never fail a profile over it
        return {"error": f"{type(exc).__name__}: {exc}"}
    # the recompute of a tiny block is in `ckpt - plain` too; its op time is negligible
    call_ms = max(0.0, median_diff(t["checkpoint"], t["plain"]) / N_BLOCKS * 1000.0)
    op_us = max(0.0, median_diff(t["selective"], t["checkpoint"]) / (N_BLOCKS * ops_per_block) * 1e6)
    extra = {}
    if "autocast" in t:
        # per Linear: the weight cast, the autocast dispatch, the casts back in backward
        extra["autocast_matmul_overhead_us"] = round(max(0.0, median_diff(t["autocast"], t["plain"]) / N_BLOCKS * 1e6), 3)
    return {
        **probe_roofline(device),
        **extra,
        "checkpoint_call_ms": round(call_ms, 4),
        "selective_op_us": round(op_us, 3),
        "repeats": repeats,
        "method": f"{N_BLOCKS} Linear({WIDTH},{WIDTH})+ReLU blocks, fwd+bwd, median of {repeats}",
    }
