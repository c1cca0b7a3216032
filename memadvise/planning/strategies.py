"""Recompute strategies: small rules that turn a unit tree into a set of actions.

A closed set, in the spirit of torchtitan's activation-checkpointing modes. Each rule
returns candidate plans (name, actions, description) or says why it does not apply;
the simulator predicts all of them and the solver searches beyond them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from memadvise.analysis.units import UnitTree
from memadvise.schema.actions import CHECKPOINT, DEFAULT_POLICY, OFFLOAD, SELECTIVE, Action

# The selective candidates: (strategy name, preset, what it keeps)
SELECTIVE_CANDIDATES = (
    ("selective", DEFAULT_POLICY, "keep matmul/conv/attention outputs"),
    ("selective-linear", "save-linear", "keep linear layers' outputs, recompute attention scores (Megatron-LM)"),
    ("selective-torchtitan", "save-torchtitan", "keep torchtitan's save list (mm, attention kernels, max)"),
)


@dataclass
class Candidate:
    strategy: str
    actions: list[Action]
    description: str


@dataclass
class Unavailable:
    strategy: str
    reason: str


def _checkpointable(tree: UnitTree, units: list[int]) -> tuple[list[int], list[str]]:
    ok, skipped = [], []
    for u in units:
        problem = tree.checkpoint_problem(u)
        if problem is None:
            ok.append(u)
        else:
            skipped.append(f"{tree.units[u].name or '(root)'}: {problem}")
    return ok, skipped


def _act(tree: UnitTree, units: list[int], action: str = CHECKPOINT, policy: str | None = None) -> list[Action]:
    return [Action(tree.units[u].name, action, policy) for u in units]


def candidates(tree: UnitTree, *, device_type: str) -> tuple[list[Candidate], list[Unavailable]]:
    out: list[Candidate] = []
    unavailable: list[Unavailable] = []
    blocks, skipped = _checkpointable(tree, tree.blocks)
    n = len(blocks)
    if n == 0:
        reason = "no repeated blocks found (children of a ModuleList/Sequential of one type)"
        if skipped:
            reason = "no block can be checkpointed: " + "; ".join(skipped[:3])
        for name in ("full", "every-2", "sqrt", *(c[0] for c in SELECTIVE_CANDIDATES)):
            unavailable.append(Unavailable(name, reason))
    else:
        label = tree.units[blocks[0]].type
        out.append(Candidate("full", _act(tree, blocks), f"checkpoint every {label} block ({n})"))
        for k in (2, 3, 4):
            if k < n:
                chosen = blocks[::k]
                out.append(Candidate(f"every-{k}", _act(tree, chosen), f"checkpoint every {k}th {label} block ({len(chosen)} of {n})"))
        # sqrt(n): checkpoint n - sqrt(n) blocks, keeping about sqrt(n) evenly spaced blocks stored
        keep = max(1, int(math.isqrt(n)))
        if 1 < keep < n:
            stride = n / keep
            kept = {blocks[min(n - 1, int(i * stride + stride / 2))] for i in range(keep)}
            chosen = [b for b in blocks if b not in kept]
            out.append(Candidate("sqrt", _act(tree, chosen), f"checkpoint all but {keep} ≈ √{n} evenly spaced {label} blocks"))
        else:
            unavailable.append(Unavailable("sqrt", f"√{n} rounds to {keep}: same as full checkpointing"))
        for name, preset, what in SELECTIVE_CANDIDATES:
            sel = [b for b in blocks if tree.selective_problem(b, preset) is None]
            if sel:
                out.append(Candidate(name, _act(tree, sel, SELECTIVE, preset),
                                     f"selective recompute in every {label} block: {what}"))
            else:
                problem = tree.selective_problem(blocks[0], preset)
                unavailable.append(Unavailable(name, f"{tree.units[blocks[0]].name}: {problem}"))
        if device_type == "cuda":
            out.append(Candidate("offload", _act(tree, blocks, OFFLOAD), f"offload saved tensors of every {label} block to host memory"))
    if device_type != "cuda":
        unavailable.append(Unavailable("offload", "save_on_cpu offload needs a CUDA profile (host and device memory are the same on CPU)"))

    # each level of the module tree
    seen: set[tuple[str, ...]] = {tuple(a.unit for a in c.actions) for c in out}
    for depth in range(0, tree.max_depth + 1):
        units, _ = _checkpointable(tree, tree.level(depth))
        units = [u for u in units if tree.units[u].record.activation_bytes > 0]
        if not units:
            continue
        key = tuple(tree.units[u].name for u in units)
        if key in seen:
            continue
        seen.add(key)
        what = "the whole model" if depth == 0 else f"every unit at depth {depth} ({len(units)})"
        out.append(Candidate(f"level-{depth}", _act(tree, units), f"checkpoint {what}"))
    return out, unavailable
