"""The profile's ``compile_plans``: what ``torch.compile`` would save for backward at each
activation memory budget (opt-in: ``memadvise profile --compile-plans``).

The batch the script fed its model is copied to host memory in one forward before the
recorded steps (``BatchCapture``); after the run, the model's forward and backward are
captured once as ``torch.compile`` would and PyTorch's partitioner is run on the same
joint graphs at each budget of the ladder (``collect._compile_internals``). The profile
keeps, per budget, the saved values and their bytes, the ops recomputed in backward and
the graph breaks; ``suggest`` turns them into ``compile(budget=b)`` plans.

Shape of the section (optional; absent when the flag is off)::

    {"available": true, "torch": "2.13.0", "capture_s": 2.1,
     "graphs": 1, "graph_breaks": [{"reason": ..., "where": "model.py:42"}],
     "compiled_modules": ["", "blocks.0", ...],   # module paths inside a compiled graph
     "budgets": [{"budget": 0.5, "saved_bytes": ..., "saved_count": ...,
                  "saved": [[name, bytes, dtype, shape], ...], "recomputed": {op: n},
                  "recomputed_count": n, "recomputed_flops": n,
                  "graphs": [{"forward_nodes": n, "backward_nodes": n,
                              "saved_lifetimes": [[made, last read, bytes], ...],
                              "backward_work": [[made, last read, bytes], ...],
                              "forward_work": [[made, freed, bytes], ...],
                              "gradients": [[made, bytes], ...],
                              "buffers": "inductor"}]}, ...]}

``made``/``last read`` are fractions of the forward graph's kernels (made) and of the
backward graph's kernels (last read, and both for each graph's own buffers), as
Inductor's generated code runs them (``buffers: "inductor"``). Where its code
generation fails, ``buffers`` says why and the lifetimes are estimated from the order
of the graphs' ops (fractions of ops; no ``forward_work``/``gradients``).

or ``{"available": false, "reason": "<one sentence>"}``.
"""

from __future__ import annotations

import time
from typing import Any

import torch


class BatchCapture:
    """Copies, to host memory, the arguments of the root model's next forward call.

    Armed at the first step boundary (when the root model is known) for the next call,
    which falls in a warmup step when ``--warmup`` is 2 or more, else in the first timing
    step (one host copy of the batch: negligible next to a step). The copy lives on the
    host so that the recorded steps see no extra device memory.
    """

    def __init__(self) -> None:
        self.args: tuple | None = None
        self.kwargs: dict | None = None
        self.module: torch.nn.Module | None = None
        self.error: str | None = None
        self._handle: Any = None

    def arm(self, module: torch.nn.Module) -> None:
        if self._handle is not None or self.args is not None:
            return
        self.module = module
        self._handle = module.register_forward_pre_hook(self._pre, with_kwargs=True)

    def _pre(self, module: Any, args: tuple, kwargs: dict) -> None:
        self.disarm()
        try:
            self.args = _to_host(args)
            self.kwargs = _to_host(kwargs)
        except Exception as exc:  # an argument we cannot copy: no compile plans, said in one line
            self.error = f"the model's arguments could not be copied ({type(exc).__name__}: {exc})"

    def disarm(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


class _HostTensor:
    """A tensor argument copied to host memory as raw bytes in a numpy array, outside
    PyTorch's allocator (whose every byte the recorder counts on CPU), with what brings
    it back: dtype, shape, device."""

    def __init__(self, tensor: torch.Tensor) -> None:
        t = tensor.detach()
        host = t.to("cpu").contiguous()
        self.data = host.view(-1).view(torch.uint8).numpy().copy() if host.numel() else None
        del host
        self.dtype, self.shape, self.device = t.dtype, tuple(t.shape), t.device
        self.requires_grad = tensor.requires_grad

    def tensor(self) -> torch.Tensor:
        if self.data is None:
            return torch.empty(self.shape, dtype=self.dtype, device=self.device)
        return torch.from_numpy(self.data.copy()).view(self.dtype).view(self.shape).to(self.device)


def _to_host(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return _HostTensor(value)
    if isinstance(value, tuple):
        return tuple(_to_host(v) for v in value)
    if isinstance(value, list):
        return [_to_host(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_host(v) for k, v in value.items()}
    return value


def _to_device(value: Any) -> Any:
    if isinstance(value, _HostTensor):
        t = value.tensor()
        return t.requires_grad_(True) if value.requires_grad and t.is_floating_point() else t
    if isinstance(value, tuple):
        return tuple(_to_device(v) for v in value)
    if isinstance(value, list):
        return [_to_device(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_device(v) for k, v in value.items()}
    return value


def compile_plans(module: torch.nn.Module | None, batch: BatchCapture | None,
                  budgets: tuple[float, ...] | None = None) -> dict:
    """The ``compile_plans`` section: the partition at every budget, or why not."""
    from memadvise.collect import _compile_internals as ci

    budgets = budgets or ci.LADDER
    if module is None:
        return {"available": False, "reason": "no root model was found, so there is nothing to compile"}
    if batch is None or batch.args is None:
        reason = (batch.error if batch is not None and batch.error else
                  "the model's batch was not captured (--compile-plans copies it in an unrecorded step after "
                  "the first: give --warmup and --timing-steps that add up to 2 or more)")
        return {"available": False, "reason": reason}
    start = time.perf_counter()
    try:
        args, kwargs = _to_device(batch.args), _to_device(batch.kwargs or {})
        cap = ci.capture(module, args, kwargs)
        del args, kwargs
        rows = []
        for b in budgets:
            parts = [ci.partition(g, b) for g in cap.graphs]
            recomputed: dict[str, int] = {}
            for p in parts:
                for op, n in p["recomputed"].items():
                    recomputed[op] = recomputed.get(op, 0) + n
            saved = sorted((s for p in parts for s in p["saved"]), key=lambda s: -s[1])
            rows.append({
                "budget": float(b),
                "saved_bytes": int(sum(p["saved_bytes"] for p in parts)),
                "saved_count": int(sum(p["saved_count"] for p in parts)),
                "saved_input_count": int(sum(p["saved_input_count"] for p in parts)),
                "saved": saved[: ci.MAX_SAVED_LISTED],
                "recomputed": dict(sorted(recomputed.items())),
                "recomputed_count": int(sum(recomputed.values())),
                "recomputed_flops": int(sum(p["recomputed_flops"] for p in parts)),
                # per graph, in dynamo's order: for the memory replay (analysis.compile_plans)
                "graphs": [{k: p[k] for k in ("forward_nodes", "backward_nodes", "saved_lifetimes", "backward_work",
                                              "forward_work", "gradients", "buffers") if k in p}
                           for p in parts],
            })
    except ci.CompileCaptureError as exc:
        return {"available": False, "reason": str(exc)}
    modules = sorted({m for g in cap.graphs for m in g.modules})
    return {
        "available": True,
        "torch": torch.__version__.split("+")[0],
        "capture_s": round(time.perf_counter() - start, 2),
        "graphs": len(cap.graphs),
        "graph_breaks": cap.breaks,
        "compiled_modules": modules,
        "budgets": rows,
    }
