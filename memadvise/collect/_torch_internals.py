"""Every private PyTorch API that memadvise touches, behind one module.

Public APIs (module and optimizer hooks, ``saved_tensors_hooks``, ``TorchDispatchMode``)
are used directly elsewhere; what is private or semi-private lives here so that an
upgrade of PyTorch that moves it breaks exactly one file, with a clear fallback.
"""

from __future__ import annotations

from typing import Any, Callable

import torch


def sequence_nr() -> int:
    """The sequence number the next autograd node created on this thread will get.

    Nodes made by a module's forward have numbers in ``[seq at pre-hook, seq at hook)``,
    which is how backward ops are attributed to modules.
    """
    return torch._C._autograd._get_sequence_nr()


def current_node_seq() -> int:
    """Sequence number of the autograd node executing now in backward, or -1."""
    node = torch._C._current_autograd_node()
    if node is None:
        return -1
    try:
        seq = node._sequence_nr()
    except Exception:  # C++-only nodes may not expose it
        return -1
    return seq if 0 <= seq < 2**62 else -1  # AccumulateGrad has UINT64_MAX


def in_backward() -> bool:
    """True while the autograd engine runs a backward pass on this thread."""
    return torch._C._current_graph_task_id() != -1


def flop_registry() -> dict:
    """PyTorch's own FLOP formulas, keyed by op overload packet (``torch.utils.flop_counter``)."""
    try:
        from torch.utils.flop_counter import flop_registry as registry

        return registry
    except ImportError:  # a torch without flop formulas: FLOPs are recorded as 0
        return {}


def count_flops(registry: dict, packet: Any, args: tuple, kwargs: dict, out: Any) -> int:
    fn: Callable | None = registry.get(packet)
    if fn is None:
        return 0
    try:
        return int(fn(*args, **kwargs, out_val=out))
    except Exception:  # a formula that does not accept these arguments: no estimate
        return 0


def remove_global_module_hook(handle: Any) -> None:
    """Remove a hook registered with ``register_module_forward_hook(..., with_kwargs=True)``.
    The handle forgets the hook's entry in ``_global_forward_hooks_with_kwargs`` (PyTorch
    2.13), and that stale entry makes ``torch.compile(module)`` warn of global hooks later
    in the same process."""
    handle.remove()
    try:
        from torch.nn.modules import module as _module

        _module._global_forward_hooks_with_kwargs.pop(handle.id, None)
    except AttributeError:  # a PyTorch without the table
        pass
