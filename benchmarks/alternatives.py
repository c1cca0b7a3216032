"""What a user would otherwise pick, applied to a live model (imports nothing of memadvise).

Each function changes ``model`` in place, or raises ``Unavailable`` with one sentence
saying why it cannot run here. Planners take the model, the first forward's arguments
and the activation budget as a fraction of the baseline's (``keep_fraction``), and
return the transform they chose.
"""

from __future__ import annotations

import copy
import functools
from collections import Counter

import torch
import torch.nn as nn
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

MATMULS = {"mm", "addmm", "bmm", "baddbmm", "convolution", "_convolution", "mkldnn_convolution",
           "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
           "_scaled_dot_product_flash_attention_for_cpu"}


class Unavailable(Exception):
    """A planner that cannot run here; ``str(exc)`` says why in one sentence."""


def blocks_of(model: nn.Module) -> list[str]:
    """Names of the repeated blocks: children of a ModuleList/Sequential, two or more of one
    (non-container) type, outermost groups only."""
    groups = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.ModuleList, nn.Sequential)):
            kids = list(module.named_children())
            counts = Counter(type(m) for _, m in kids)
            for _, m in kids:
                if counts[type(m)] >= 2 and not isinstance(m, (nn.ModuleList, nn.Sequential)) and list(m.children()):
                    groups.append(f"{name}.{_}" if name else _)
    groups = [g for g in groups if not any(g != o and g.startswith(o + ".") for o in groups)]
    if not groups:
        raise Unavailable("no repeated blocks (children of a ModuleList/Sequential of one type)")
    return groups


def _wrap(module: nn.Module, context_fn=None) -> None:
    forward = module.forward

    @functools.wraps(forward)
    def wrapped(*args, **kwargs):
        kw = {"context_fn": context_fn} if context_fn is not None else {}
        return checkpoint(forward, *args, use_reentrant=False, **kw, **kwargs)

    module.forward = wrapped


def checkpoint_blocks(model: nn.Module, every: int = 1) -> None:
    """torch.utils.checkpoint (non-reentrant) on every ``every``-th block."""
    for i, name in enumerate(blocks_of(model)):
        if i % every == 0:
            _wrap(model.get_submodule(name))


def _save_matmuls(ctx, op, *args, **kwargs):
    name = getattr(getattr(op, "_overloadpacket", op), "__name__", "")
    return CheckpointPolicy.MUST_SAVE if name in MATMULS else CheckpointPolicy.PREFER_RECOMPUTE


def selective_blocks(model: nn.Module) -> None:
    """Selective activation checkpointing on every block with the common policy: save
    matmul/conv/attention outputs, recompute the rest (PyTorch docs' example). As a user
    would write it: BatchNorm running statistics update again under recompute."""
    for name in blocks_of(model):
        _wrap(model.get_submodule(name), functools.partial(create_selective_checkpoint_contexts, _save_matmuls))


def compile_with_budget(model: nn.Module, budget: float) -> None:
    """torch.compile's min-cut partitioner with an activation memory budget."""
    try:
        import torch._functorch.config as functorch_config
    except ImportError as exc:
        raise Unavailable(f"torch._functorch.config is missing: {exc}") from None
    functorch_config.activation_memory_budget = budget
    model.compile()


def _loss(out):
    t = out[0] if isinstance(out, (tuple, list)) else getattr(out, "loss", out)
    return t if t.dim() == 0 else t.float().sum()


def sac_milp_plan(model: nn.Module, args, kwargs, keep_fraction: float):
    """PyTorch's own planner (torch.distributed._tools): MemTracker, RuntimeEstimator and
    SACEstimator statistics, sac_milp over the module tree, then per module the optimal
    selective policy for the fraction of activations it is told to discard."""
    try:
        import pulp  # noqa: F401
        from torch.distributed._tools.ilp_utils import aggregate_stats, get_peak_memory_runtime_baseline, parse_module_info
        from torch.distributed._tools.mem_tracker import MemTracker
        from torch.distributed._tools.runtime_estimator import RuntimeEstimator
        from torch.distributed._tools.sac_estimator import SACEstimator
        from torch.distributed._tools.sac_ilp import get_optimal_checkpointing_policy_per_module, sac_milp
    except ImportError as exc:
        raise Unavailable(f"sac_milp needs {exc.name or exc}") from None
    device = next(model.parameters()).device
    state = copy.deepcopy(model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    try:
        mt = MemTracker()
        mt.track_external(model, opt)
        with mt:
            for i in range(2):  # twice, as PyTorch's own test does: the first initialises state
                _loss(model(*args, **kwargs)).backward()
                opt.step()
                opt.zero_grad()
                if i == 0:
                    mt.reset_mod_stats()
        rt = RuntimeEstimator()
        with rt(estimate_mode_type="operator-level-benchmark"):
            _loss(model(*args, **kwargs)).backward()
            opt.zero_grad()
        sac = SACEstimator()
        with sac(estimate_mode_type="operator-level-benchmark"):
            loss = _loss(model(*args, **kwargs))
        loss.backward()
        opt.zero_grad()
        info = aggregate_stats(model, mt, rt, sac, device)
        graph = parse_module_info(info)
        peak, _ = get_peak_memory_runtime_baseline(graph)
        # the activation budget, as sac_milp takes it: a peak in GiB, the baseline peak
        # less the activations to discard
        acts = max(n["act_fw_per_module"] for n in graph.nodes) if graph.nodes else 0
        budget_gib = (peak - (1 - keep_fraction) * acts) / 2**30
        decisions, _recompute, _peak = sac_milp(graph, memory_budget=budget_gib)
    except Unavailable:
        raise
    except Exception as exc:
        raise Unavailable(f"sac_milp failed here: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:120]}") from None
    finally:
        model.load_state_dict(state)
        for p in model.parameters():
            p.grad = None
    if not decisions:
        raise Unavailable(f"sac_milp found no plan for keep fraction {keep_fraction} (its own peak estimate: {_peak})")
    chosen = {}
    for fqn, discard in decisions.items():
        name = fqn.split(".", 1)[1] if "." in fqn else ""
        stats = sac.sac_mod_stats[fqn]
        keep = get_optimal_checkpointing_policy_per_module(stats, memory_budget=1 - discard)
        chosen[name] = (stats.func_names, keep)

    def transform(m: nn.Module) -> None:
        for name, (funcs, keep) in chosen.items():
            counter = {"i": 0}

            def policy(ctx, op, *a, _keep=keep, _counter=counter, **k):
                i = _counter["i"]
                _counter["i"] = i + 1
                return CheckpointPolicy.MUST_SAVE if i < len(_keep) and _keep[i] else CheckpointPolicy.PREFER_RECOMPUTE

            def contexts(_counter=counter, _policy=policy):
                _counter["i"] = 0
                return create_selective_checkpoint_contexts(_policy)

            _wrap(m.get_submodule(name) if name else m, contexts)

    transform.info = {"modules": sorted(chosen), "discard": {k: round(v, 3) for k, v in decisions.items()},
                      "predicted_peak_gib": round(float(_peak), 4) if _peak else None}
    return transform


def ckptplan_plan(model: nn.Module, args, kwargs, keep_fraction: float):
    """The ckptplan package: declare the blocks, profile them on the first block's real
    input, plan with dynamic programming for the activation saving, checkpoint those."""
    try:
        import ckptplan
    except ImportError:
        raise Unavailable("the ckptplan package is not installed") from None
    names = blocks_of(model)
    captured = {}

    def grab(module, a, k):
        captured.setdefault("args", a)
        captured.setdefault("kwargs", k)

    first = model.get_submodule(names[0])
    handle = first.register_forward_pre_hook(grab, with_kwargs=True)
    state = copy.deepcopy(model.state_dict())
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        handle.remove()
        model.load_state_dict(state)
    try:
        blocks = ckptplan.declare_blocks(model, [(n, model.get_submodule(n)) for n in names])
        device = next(model.parameters()).device
        example = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in captured["args"])
        profiles = ckptplan.profile_blocks(blocks, example, captured.get("kwargs") or None, device=device,
                                           num_warmup=1, num_trials=3)
        plan = ckptplan.plan_checkpoints(profiles, blocks, target_kind="activation_saving_fraction",
                                         target_value=1 - keep_fraction, on_infeasible="best_effort")
    except Exception as exc:
        raise Unavailable(f"ckptplan failed here: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:120]}") from None
    finally:
        model.load_state_dict(state)
    chosen = [d.block_id for d in plan.decisions if d.checkpointed]

    def transform(m: nn.Module) -> None:
        for name in chosen:
            _wrap(m.get_submodule(name))

    transform.info = {"blocks": chosen}
    return transform
