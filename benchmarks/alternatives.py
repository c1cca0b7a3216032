"""What a user would otherwise pick, applied to a live model (imports nothing of memadvise).

Every transform changes ``model`` in place; every planner takes the model, the first
forward's real arguments and the activation budget as a fraction of the baseline's
activation memory (``keep_fraction``) and returns the transform it chose, with what it
chose in ``transform.info``. Anything that cannot run here raises ``Unavailable`` with one
sentence saying why; nothing falls back silently to something else.

* ``checkpoint_blocks``: ``torch.utils.checkpoint.checkpoint(use_reentrant=False)`` on every
  (or every k-th) repeated block.
* ``selective_blocks``: selective activation checkpointing in every block with the common
  policy (save matmul/conv/attention outputs, recompute the rest).
* ``compile_with_budget``: ``torch._functorch.config.activation_memory_budget`` + ``model.compile()``.
* ``sac_milp_plan``: PyTorch's own planner in ``torch.distributed._tools`` (MemTracker,
  RuntimeEstimator, SACEstimator, ``sac_milp``, per-module optimal SAC policies).
* ``ckptplan_plan``: the ``ckptplan`` package (declare, profile, plan, apply).

BatchNorm (ResNet): a checkpointed block re-runs its forward in backward, so a BatchNorm in
training mode inside it updates its running statistics a second time. Gradients are the same
(training-mode BatchNorm normalises with the batch's statistics); the running statistics
differ from an unmodified run. ``checkpoint_blocks`` and ``selective_blocks`` leave it so: that
is what a user gets from ``torch.utils.checkpoint`` as documented. (memadvise's own patch
snapshots and restores them around the recompute.)
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import logging
import math
import time
from collections import Counter
from typing import Any, Callable

import torch
import torch.nn as nn
from torch.utils._pytree import tree_map_only
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

__all__ = ["Unavailable", "blocks_of", "checkpoint_blocks", "selective_blocks", "compile_with_budget",
           "sac_milp_plan", "ckptplan_plan"]


class Unavailable(Exception):
    """A planner that cannot run here; ``str(exc)`` says why in one sentence."""


# ---------------------------------------------------------------------------------------------
# blocks and the checkpoint wrapper


def blocks_of(model: nn.Module) -> list[str]:
    """Names of the repeated blocks, in registration order: the children of a ModuleList or
    Sequential that has two or more children of one type, where that type is not itself a
    container (ResNet's stages are Sequentials of BasicBlocks: the BasicBlocks are the blocks)
    and has submodules (a bare Linear is no block); outermost groups only (a block inside
    another block is not listed). Empty when there are none."""
    found: list[str] = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.ModuleList, nn.Sequential)):
            continue
        kids = list(module.named_children())
        counts = Counter(type(m) for _, m in kids)
        for kid_name, m in kids:
            if (counts[type(m)] >= 2 and not isinstance(m, (nn.ModuleList, nn.Sequential))
                    and next(m.children(), None) is not None):
                found.append(f"{name}.{kid_name}" if name else kid_name)
    return [b for b in found if not any(b.startswith(o + ".") for o in found if o != b)]


def _require_blocks(model: nn.Module) -> list[str]:
    names = blocks_of(model)
    if not names:
        raise Unavailable(f"{type(model).__name__} has no repeated blocks (two or more children of one "
                          "non-container type in a ModuleList or Sequential)")
    return names


def _wrap(module: nn.Module, context_fn: Callable | None = None, **checkpoint_kwargs: Any) -> None:
    """Run ``module``'s forward under non-reentrant ``torch.utils.checkpoint`` (the module's
    hooks stay outside the checkpointed region)."""
    if getattr(module.forward, "_alternatives_wrapped", False):
        raise RuntimeError(f"{type(module).__name__} is already checkpointed")
    forward = module.forward
    kw = dict(checkpoint_kwargs)
    if context_fn is not None:
        kw["context_fn"] = context_fn

    @functools.wraps(forward)
    def wrapped(*args, **kwargs):
        return checkpoint(forward, *args, use_reentrant=False, **kw, **kwargs)

    wrapped._alternatives_wrapped = True
    module.forward = wrapped


def checkpoint_blocks(model: nn.Module, every: int = 1) -> None:
    """``torch.utils.checkpoint.checkpoint(use_reentrant=False)`` (RNG state preserved, the
    default) on blocks 0, every, 2*every, ... of ``blocks_of(model)``."""
    if every < 1:
        raise ValueError("every must be >= 1")
    for i, name in enumerate(_require_blocks(model)):
        if i % every == 0:
            _wrap(model.get_submodule(name))


# aten ops whose outputs the common selective policy saves (PyTorch's SAC docs / torchtitan's
# "op" policy: matmuls, convolutions and attention)
SAVE_OPS = frozenset({
    "mm", "addmm", "bmm", "baddbmm", "convolution", "_convolution", "mkldnn_convolution",
    "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_attention_math",
})


def _op_name(op) -> str:
    return getattr(getattr(op, "_overloadpacket", op), "__name__", str(op))


def _save_matmuls(ctx, op, *args, **kwargs):
    return CheckpointPolicy.MUST_SAVE if _op_name(op) in SAVE_OPS else CheckpointPolicy.PREFER_RECOMPUTE


# Linear layers only (Megatron-LM's selective recompute: attention scores recomputed)
SAVE_LINEAR_OPS = frozenset({"mm", "addmm", "_addmm_activation"})


def _save_linear(ctx, op, *args, **kwargs):
    return CheckpointPolicy.MUST_SAVE if _op_name(op) in SAVE_LINEAR_OPS else CheckpointPolicy.PREFER_RECOMPUTE


def selective_linear_blocks(model: nn.Module) -> None:
    """Selective activation checkpointing on every block keeping only the linear layers'
    outputs (``SAVE_LINEAR_OPS``): the five-line policy a user writes after reading
    Megatron-LM's paper."""
    for name in _require_blocks(model):
        _wrap(model.get_submodule(name), functools.partial(create_selective_checkpoint_contexts, _save_linear))


def selective_blocks(model: nn.Module) -> None:
    """Selective activation checkpointing on every block with the common policy: MUST_SAVE the
    outputs of matmul/conv/attention ops (``SAVE_OPS``), PREFER_RECOMPUTE everything else.

    BatchNorm: its output is recomputed (PREFER_RECOMPUTE), so nothing BatchNorm makes is
    cached; caching it would fail in ResNet, whose in-place ReLU overwrites the BatchNorm
    output ("Tensor cached during selective activation checkpoint has been mutated"). The
    conv outputs that are cached are never written in place. As with full checkpointing, the
    recompute updates the running statistics a second time (see the module docstring)."""
    for name in _require_blocks(model):
        _wrap(model.get_submodule(name), functools.partial(create_selective_checkpoint_contexts, _save_matmuls))


def compile_with_budget(model: nn.Module, budget: float) -> None:
    """``torch._functorch.config.activation_memory_budget = budget`` (global, read when the
    graph is partitioned, i.e. at the first compiled call), then ``model.compile()`` in place.
    Called from a forward pre-hook, the call in progress still runs eagerly; the next call
    compiles forward and backward with inductor (a C++ compiler on CPU)."""
    if not 0.0 <= budget <= 1.0:
        raise ValueError("budget must be in [0, 1]")
    try:
        import torch._functorch.config as functorch_config
        import torch._inductor  # noqa: F401
    except ImportError as exc:
        raise Unavailable(f"torch {torch.__version__} has no {exc.name}, needed for torch.compile's activation budget") from None
    if not hasattr(functorch_config, "activation_memory_budget"):
        raise Unavailable(f"torch {torch.__version__} has no torch._functorch.config.activation_memory_budget")
    device = _device_of(model)
    if device.type == "cpu":
        from torch._inductor import config as inductor_config
        from torch._inductor.cpp_builder import get_cpp_compiler
        try:
            get_cpp_compiler()
        except Exception as exc:  # no C++ compiler: inductor cannot build CPU kernels
            raise Unavailable(f"torch.compile (inductor) needs a C++ compiler on CPU ({inductor_config.cpp.cxx}): {_first_line(exc)}") from None
    functorch_config.activation_memory_budget = budget
    model.compile()


# ---------------------------------------------------------------------------------------------
# helpers for the planners


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return f"{type(exc).__name__}: {line[:200]}" if line else type(exc).__name__


def _device_of(model: nn.Module) -> torch.device:
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def _loss(out) -> torch.Tensor:
    """The estimation loss: the output itself when it is a scalar tensor, else its sum (first
    tensor of a tuple/list, ``.loss`` of an output object)."""
    if isinstance(out, (tuple, list)):
        out = out[0]
    out = getattr(out, "loss", out) if not isinstance(out, torch.Tensor) else out
    return out if out.dim() == 0 else out.sum()


@contextlib.contextmanager
def _model_state_kept(model: nn.Module):
    """Whatever a planner does to the model while it measures, the script continues from the
    same state: parameters and buffers (state_dict), gradients, train/eval flags and the RNG
    states (CPU and CUDA; dropout and benchmark inputs draw from them) are put back."""
    state = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    grads = {p: (None if p.grad is None else p.grad.detach().clone()) for p in model.parameters()}
    modes = [(m, m.training) for m in model.modules()]
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        with torch.no_grad():
            for k, v in model.state_dict(keep_vars=True).items():
                if v.shape != state[k].shape:
                    v.data = state[k].clone()  # noqa: PLW2901 (lazy modules, resized buffers)
                else:
                    v.copy_(state[k])
        for p, g in grads.items():
            p.grad = g
        for m, training in modes:
            m.training = training
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


# ---------------------------------------------------------------------------------------------
# PyTorch's own planner: torch.distributed._tools (sac_milp)


def _fake_copy(model: nn.Module, fake_mode) -> nn.Module:
    """A copy of ``model`` whose parameters and buffers are FakeTensors (the estimators run
    under FakeTensorMode, as PyTorch's own test does): same module names, no real compute on
    the real model, no change to its state."""
    memo: dict[int, Any] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(fake_mode.from_tensor(p.detach()), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = fake_mode.from_tensor(b)
    return copy.deepcopy(model, memo)


def _cpu_benchmark_estimate(func, args, kwargs):
    """A CPU port of ``RuntimeEstimator._benchmark_estimate`` ("operator-level-benchmark"): the
    same steps (run the real kernel on random inputs of the fake tensors' shapes, 2 warm-up
    and 3 timed runs, outputs turned back into fake tensors), timed with time.perf_counter
    instead of CUDA events. Used only with ``estimate_mode="cpu-benchmark"``."""
    import torch.utils._pytree as pytree
    from torch.distributed._tools.runtime_estimator import RuntimeEstimator
    from torch.utils._mode_utils import no_dispatch
    from torch.utils._runtime_estimation import _FLOAT_TYPES, _VIEW_OPS

    fake_mode = RuntimeEstimator.fake_mode
    if func._overloadpacket in _VIEW_OPS or torch.Tag.inplace_view in func.tags:
        return func(*args, **kwargs or {}), 0.0
    inp_impls: dict[int, Any] = {}
    flat, spec = pytree.tree_flatten((args, kwargs))
    try:
        with no_dispatch():
            def to_real(e):
                if fake_mode.is_our_fake(e):
                    out = (torch.rand_like(e, device=e.fake_device) if e.dtype in _FLOAT_TYPES
                           else torch.ones_like(e, device=e.fake_device))
                    inp_impls[id(out)] = e
                    return out
                return e

            real_args, real_kwargs = pytree.tree_unflatten([to_real(a) for a in flat], spec)
            r = func(*real_args, **real_kwargs)
            for _ in range(2):
                func(*real_args, **real_kwargs)
            t0 = time.perf_counter()
            for _ in range(3):
                func(*real_args, **real_kwargs)
            op_ms = (time.perf_counter() - t0) * 1000.0 / 3
        storages = {e._typed_storage()._cdata for e in pytree.tree_leaves((real_args, real_kwargs))
                    if isinstance(e, torch.Tensor) and not e.is_sparse}

        def map_out(e):
            if isinstance(e, torch.Tensor):
                if id(e) in inp_impls:
                    return inp_impls[id(e)]
                if not e.is_sparse and e._typed_storage()._cdata in storages:
                    raise NotImplementedError  # output aliases an input: let fake mode propagate it
                return fake_mode.fake_tensor_converter.from_real_tensor(fake_mode, e)
            return e

        return pytree.tree_map(map_out, r), op_ms
    except NotImplementedError:
        return func(*args, **kwargs or {}), 0.0


def _sac_estimators(model: nn.Module, args, kwargs, estimate_mode: str):
    """MemTracker, RuntimeEstimator and SACEstimator over a fake copy of the model, the flow of
    PyTorch's test/distributed/_tools/test_sac_ilp.py; returns (module_info, sac_estimator)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.ilp_utils import aggregate_stats
    from torch.distributed._tools.mem_tracker import MemTracker, _ModState
    from torch.distributed._tools.runtime_estimator import RuntimeEstimator
    from torch.distributed._tools.sac_estimator import SACEstimator

    device = _device_of(model)
    fake_mode = FakeTensorMode()
    fmodel = _fake_copy(model, fake_mode)
    fargs = tree_map_only(torch.Tensor, fake_mode.from_tensor, tuple(args))
    fkwargs = tree_map_only(torch.Tensor, fake_mode.from_tensor, dict(kwargs or {}))
    mode = "operator-level-benchmark" if estimate_mode == "cpu-benchmark" else estimate_mode
    def zero_grad():
        for p in fmodel.parameters():
            p.grad = None

    # No optimizer (the test steps one to initialise its state): a real optimizer.step() here
    # would fire the script's global optimizer hooks (step counters, profilers); sac_milp's
    # memory model has no optimizer state anyway.
    with fake_mode:
        mt = MemTracker()
        mt.track_external(fmodel)
        last = None
        with mt:
            for i in range(2):  # twice, as the test does: the first iteration initialises state
                _loss(fmodel(*fargs, **fkwargs)).backward()
                if i == 1:
                    last = mt.get_tracker_snapshot("current")
                zero_grad()
                if i == 0:
                    mt.reset_mod_stats()
        for stats in mt.memory_tracking.values():  # the test's post-processing
            if _ModState.POST_BW not in stats.snapshots:
                stats.snapshots.setdefault(_ModState.POST_BW, []).append(copy.deepcopy(last))
        rt = RuntimeEstimator()
        with rt(estimate_mode_type=mode):
            if estimate_mode == "cpu-benchmark":
                rt._estimate = _cpu_benchmark_estimate
            _loss(fmodel(*fargs, **fkwargs)).backward()
            zero_grad()
        sac = SACEstimator()
        with sac(estimate_mode_type=mode):
            if estimate_mode == "cpu-benchmark":
                sac._estimate_runtime = _cpu_benchmark_estimate
            loss = _loss(fmodel(*fargs, **fkwargs))
        loss.backward()
        info = aggregate_stats(fmodel, mt, rt, sac, device)
    return info, sac


class _LogCapture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _save_inplace_groups_at_last_op(keep: list[int], inplace_ops) -> tuple[list[int], int]:
    """PyTorch's per-module policy saves or recomputes an op together with the in-place ops
    that write into its output (``inplace_ops``: (op, parent) pairs; CPU dropout is
    empty_like -> bernoulli_ -> div_, ResNet's ReLU is relu_ on BatchNorm's output). Saving
    the parent as it says makes SAC cache a tensor that the next op then overwrites, and
    SAC refuses it in backward ("Tensor cached during selective activation checkpoint has
    been mutated"). The same storage, at its final value, is saved by caching the group's
    LAST op instead: keep[last] = 1, the group's other ops recomputed. Same saved bytes;
    returns the policy and how many groups were changed."""
    keep = list(keep)
    groups: dict[int, list[int]] = {}
    for op, parent in inplace_ops:
        group = groups.setdefault(parent, [parent])
        if op != parent:
            group.append(op)
    moved = 0
    for members in groups.values():
        members = sorted(set(members))
        if len(members) > 1 and any(keep[i] for i in members):
            for i in members:
                keep[i] = 0
            keep[members[-1]] = 1
            moved += 1
    return keep, moved


def sac_milp_plan(model: nn.Module, args, kwargs, keep_fraction: float, *,
                  estimate_mode: str | None = None) -> Callable[[nn.Module], None]:
    """PyTorch's own SAC planner (torch.distributed._tools, needs ``pulp``):

    1. MemTracker, RuntimeEstimator and SACEstimator statistics of one training step of a
       FakeTensor copy of the model on the first batch (loss: the output if it is a scalar,
       else its sum), ``aggregate_stats`` and ``parse_module_info``;
    2. ``sac_milp(graph, memory_budget)``: which modules to checkpoint and what fraction of
       each one's activation memory to discard, minimising recompute time under a peak budget;
    3. per chosen module, ``get_optimal_checkpointing_policy_per_module(stats, 1 - discard)``:
       save (1) or recompute (0) for each aten op of the module's forward, in order;
    4. the transform wraps each chosen module in non-reentrant checkpoint with
       ``create_selective_checkpoint_contexts`` and a policy that walks that op list (a
       mismatch between the op the policy sees and the one planned raises), except that an
       in-place group it saves is saved at its last op (``_save_inplace_groups_at_last_op``:
       what it says to save cannot run as said).

    Budget translation. ``sac_milp`` takes a peak in GiB, of its own memory model (parameters
    + gradients + activations + activation gradients, no optimizer state). Its baseline is
    ``get_peak_memory_runtime_baseline(graph)`` = P and its measure of the model's
    activation memory is the root module's ``act_fw_per_module`` = A (what the whole forward
    leaves for backward, its input and output excluded; the quantity its discard variables
    are fractions of). Keeping ``keep_fraction`` of the activations means discarding
    (1 - keep_fraction)·A, so ``memory_budget = (P - (1 - keep_fraction)·A) / 2**30``: the
    peak moves down one for one with what is discarded, as it does in sac_milp's own model
    when the peak is at the start of backward.

    ``estimate_mode``: None = "operator-level-cost-model" on CUDA (what PyTorch's test uses);
    on CPU both of PyTorch's modes need CUDA (benchmark times with CUDA events, the cost
    model reads CUDA device properties), so None raises Unavailable there. "cpu-benchmark"
    (explicit opt-in) runs the same flow with ``_cpu_benchmark_estimate``, a CPU port of the
    "operator-level-benchmark" timer, and says so in ``transform.info``.
    """
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError("keep_fraction must be in (0, 1]")
    try:
        import pulp  # noqa: F401
    except ImportError:
        raise Unavailable("sac_milp needs the pulp package (the MILP solver binding), which is not installed") from None
    try:
        import numpy  # noqa: F401
        import pwlf  # noqa: F401
    except ImportError as exc:
        raise Unavailable(f"PyTorch's SACEstimator needs the {exc.name} package (piecewise-linear fit of each module's "
                          "memory/recompute trade-off curve, used by aggregate_stats), which is not installed") from None
    from torch.distributed._tools.ilp_utils import get_peak_memory_runtime_baseline, parse_module_info
    from torch.distributed._tools.sac_estimator import OPS_TO_ALWAYS_SKIP
    from torch.distributed._tools.sac_ilp import get_optimal_checkpointing_policy_per_module, sac_milp

    device = _device_of(model)
    if estimate_mode is None:
        if device.type != "cuda":
            raise Unavailable(
                f"torch {torch.__version__}'s RuntimeEstimator/SACEstimator need CUDA: \"operator-level-benchmark\" "
                "times ops with torch.cuda.Event (RuntimeError: Tried to instantiate dummy base class Event) and "
                "\"operator-level-cost-model\" asserts \"Roofline estimation needs to access CUDA capabilities\", "
                f"so sac_milp cannot be fed on {device.type}")
        estimate_mode = "operator-level-cost-model"
    elif estimate_mode not in ("operator-level-benchmark", "operator-level-cost-model", "cpu-benchmark"):
        raise ValueError(f"unknown estimate_mode {estimate_mode!r}")

    t0 = time.perf_counter()
    log = _LogCapture()
    loggers = [logging.getLogger("torch.distributed._tools.sac_ilp")]
    for lg in loggers:
        lg.addHandler(log)
    try:
        with _model_state_kept(model), contextlib.redirect_stdout(io.StringIO()):
            try:
                info, sac = _sac_estimators(model, args, kwargs, estimate_mode)
                graph = parse_module_info(info)
            except Exception as exc:
                raise Unavailable(f"PyTorch's SAC estimators failed on {type(model).__name__} "
                                  f"({estimate_mode}): {_first_line(exc)}") from exc
        estimated_s = time.perf_counter() - t0
        root = graph.nodes[0]
        base_peak, base_ms = get_peak_memory_runtime_baseline(graph)
        base_act = root["act_fw_per_module"]
        budget_bytes = base_peak - (1.0 - keep_fraction) * base_act
        try:
            decisions, recompute_ms, peak = sac_milp(graph, memory_budget=budget_bytes / 2**30)
        except Exception as exc:
            bad = [n for n in graph.nodes if not n["is_leaf"]
                   and not all(math.isfinite(v) for v in (*n["slopes"], *n["intercepts"]))]
            if bad:
                raise Unavailable(
                    f"sac_milp cannot run on {type(model).__name__}: the piecewise-linear fit (pwlf, 2 segments) of "
                    f"the recompute trade-off curve of {len(bad)} module(s), first {bad[0]['fqn']} "
                    f"({len(bad[0]['tradeoff_curve'])} points), has NaN slopes, which pulp rejects "
                    f"({_first_line(exc)})") from exc
            raise Unavailable(f"sac_milp failed on {type(model).__name__}: {_first_line(exc)}") from exc
    finally:
        for lg in loggers:
            lg.removeHandler(log)
    if peak == -1:
        raise Unavailable(
            f"sac_milp found no plan for {keep_fraction:.0%} of the activations: its budget "
            f"{budget_bytes / 2**20:.2f} MiB is below the lowest peak its model allows "
            f"(baseline peak {base_peak / 2**20:.2f} MiB, activations {base_act / 2**20:.2f} MiB)")

    fqn_root = root["fqn"]

    def local(fqn: str) -> str:
        return "" if fqn == fqn_root else fqn[len(fqn_root) + 1:]

    chosen: dict[str, list[int]] = {}
    ops: dict[str, list[str]] = {}
    discarded = 0.0
    adjusted = 0
    for fqn, ratio in decisions.items():
        stats = sac.sac_mod_stats[fqn]
        keep = get_optimal_checkpointing_policy_per_module(stats, memory_budget=min(1.0, max(0.0, 1.0 - ratio)))
        if not keep and stats.func_names:
            forced = [i for a, b in stats.inplace_ops if a == b and stats.memory[(i := a)] > 0]
            why = (f": its in-place op #{forced[0]} ({stats.func_names[forced[0]]}, {stats.memory[forced[0]]} B, "
                   "writing into a tensor made outside the module) must be saved, over the budget"
                   if forced else "")
            raise Unavailable(f"sac_milp chose to discard {ratio:.1%} of {fqn}'s activations but "
                              f"get_optimal_checkpointing_policy_per_module finds no op policy for that "
                              f"(pulp: Infeasible){why}")
        keep, moved = _save_inplace_groups_at_last_op(keep, stats.inplace_ops)
        adjusted += moved
        chosen[local(fqn)] = keep
        ops[local(fqn)] = list(stats.func_names)
        node = graph.name2node[fqn]
        discarded += node["sac_memory"] * ratio - (node["sac_memory"] - node["act_fw_per_module"])
    skip_only_here = OPS_TO_ALWAYS_SKIP  # SACEstimator skips these; SAC's policy still sees some of them

    def transform(m: nn.Module) -> None:
        for name, keep in chosen.items():
            names = ops[name]

            def contexts(_keep=keep, _names=names, _module=name):
                counters = {False: 0, True: 0}

                def policy(ctx, op, *a, **k):
                    if op in skip_only_here:
                        return CheckpointPolicy.PREFER_RECOMPUTE
                    i = counters[ctx.is_recompute]
                    counters[ctx.is_recompute] = i + 1
                    if i >= len(_keep) or _names[i] != _op_name(op):
                        raise RuntimeError(
                            f"sac_milp policy for {_module or '<root>'!r}: op #{i} is {_op_name(op)}, the plan "
                            f"expected {_names[i] if i < len(_names) else 'no more ops'}")
                    return CheckpointPolicy.MUST_SAVE if _keep[i] else CheckpointPolicy.PREFER_RECOMPUTE

                return create_selective_checkpoint_contexts(policy)

            _wrap(m.get_submodule(name) if name else m, contexts)

    transform.info = {
        "estimate_mode": estimate_mode,
        "modules": sorted(chosen),
        "discard": {local(k): round(v, 4) for k, v in decisions.items()},
        "saved_ops": {k: f"{sum(v)}/{len(v)}" for k, v in chosen.items()},
        "budget_bytes": int(budget_bytes),
        "baseline_peak_bytes": int(base_peak),
        "baseline_activation_bytes": int(base_act),
        "predicted_peak_bytes": int(peak),
        "predicted_activation_bytes": int(base_act - discarded),
        "predicted_recompute_ms": recompute_ms,
        "baseline_compute_ms": round(base_ms, 3),
        "inplace_groups_saved_at_last_op": adjusted,
        "warnings": log.lines[:6],
        "estimate_s": round(estimated_s, 3),
        "planning_s": round(time.perf_counter() - t0, 3),
    }
    return transform


# ---------------------------------------------------------------------------------------------
# ckptplan


class _Stop(Exception):
    pass


def ckptplan_plan(model: nn.Module, args, kwargs, keep_fraction: float) -> Callable[[nn.Module], None]:
    """The ``ckptplan`` package, as its README's pipeline intends: ``declare_blocks`` (the
    repeated blocks, in execution order), ``profile_blocks`` on the first block's real input
    (captured by running the model's forward up to that block), ``plan_checkpoints`` with the
    default "dynamic_programming" planner, then the plan applied: its ``apply_plan`` builds a
    ``CheckpointedSequential`` of the blocks, which a script that calls its own model cannot
    use, so the transform wraps exactly the blocks the plan checkpoints in
    ``torch.utils.checkpoint`` with the plan's ``use_reentrant``/``preserve_rng_state`` --
    what ``CheckpointedSequential.forward`` does for each block.

    Budget translation: ckptplan's budget is on the sum of its blocks' isolated activation
    bytes (its own baseline); ``target_kind="activation_saving_fraction"``,
    ``target_value = 1 - keep_fraction``. Activations outside the blocks (embeddings, head,
    loss) are not in its total. An infeasible target is reported, not forced
    (``on_infeasible="raise"``, the default).

    ckptplan 0.1.0rc1 measures activation bytes on CUDA only: on CPU ``plan_checkpoints``
    raises TimingOnlyProfileError, and this raises Unavailable with its message.
    """
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError("keep_fraction must be in (0, 1]")
    try:
        import ckptplan
    except ImportError:
        raise Unavailable("the ckptplan package is not installed") from None
    version = getattr(ckptplan, "__version__", "?")
    names = _require_blocks(model)
    t0 = time.perf_counter()
    device = _device_of(model)
    first = model.get_submodule(names[0])
    captured: dict[str, Any] = {}

    def grab(module, a, k):
        captured["args"], captured["kwargs"] = a, k
        raise _Stop

    with _model_state_kept(model):
        handle = first.register_forward_pre_hook(grab, with_kwargs=True)
        try:
            with torch.no_grad():
                model(*args, **(kwargs or {}))
        except _Stop:
            pass
        finally:
            handle.remove()
        if "args" not in captured:
            raise Unavailable(f"block {names[0]} is not called in {type(model).__name__}'s forward")
        example = tuple(tree_map_only(torch.Tensor, lambda t: t.detach().clone(), tuple(captured["args"])))
        example_kw = tree_map_only(torch.Tensor, lambda t: t.detach().clone(), dict(captured["kwargs"])) or None
        try:
            blocks = ckptplan.declare_blocks(model, [(n, model.get_submodule(n)) for n in names])
            profiles = ckptplan.profile_blocks(blocks, example, example_kw, device=device)
        except Exception as exc:
            raise Unavailable(f"ckptplan {version} could not profile {type(model).__name__}'s blocks: {_first_line(exc)}") from exc
    if keep_fraction >= 1.0:
        plan = None
        chosen: list[str] = []
    else:
        try:
            plan = ckptplan.plan_checkpoints(profiles, blocks, target_kind="activation_saving_fraction",
                                             target_value=1.0 - keep_fraction)
        except ckptplan.TimingOnlyProfileError as exc:
            raise Unavailable(f"ckptplan {version} cannot plan on {device.type}: {type(exc).__name__}: {exc}") from exc
        except ckptplan.InfeasibleTargetError as exc:
            excluded = sorted({p.exclusion_reason for p in profiles if not p.eligible_for_checkpoint})
            raise Unavailable(
                f"ckptplan {version} cannot save {1 - keep_fraction:.0%} of {type(model).__name__}'s block "
                f"activations: {exc}" + (f" ({sum(not p.eligible_for_checkpoint for p in profiles)} of {len(profiles)} "
                                          f"blocks excluded: {', '.join(excluded)})" if excluded else "")) from exc
        except Exception as exc:
            raise Unavailable(f"ckptplan {version} failed to plan: {_first_line(exc)}") from exc
        chosen = [d.block_id for d in plan.decisions if d.checkpointed]
    use_reentrant = plan.use_reentrant if plan is not None else False
    preserve = plan.preserve_rng_state if plan is not None else True

    def transform(m: nn.Module) -> None:
        for name in chosen:
            if use_reentrant:
                raise Unavailable("ckptplan chose reentrant checkpointing, which this adapter does not apply")
            _wrap(m.get_submodule(name), preserve_rng_state=preserve)

    transform.info = {
        "modules": chosen,
        "ineligible": {p.block_id: p.exclusion_reason for p in profiles if not p.eligible_for_checkpoint},
        "predicted_activation_bytes_before": getattr(plan, "predicted_activation_bytes_before", None),
        "predicted_activation_bytes_after": getattr(plan, "predicted_activation_bytes_after", None),
        "predicted_recompute_ms": getattr(plan, "predicted_recompute_time_upper_bound_ms", None),
        "planning_s": round(time.perf_counter() - t0, 3),
    }
    return transform
