"""What a plan does to a live model, with public PyTorch APIs only.

The source of ``MemadviseForward`` and ``memadvise_apply`` below is copied verbatim into
the patches that ``memadvise apply`` writes (``--runtime inline``, the default), so a
patched script runs where memadvise is not installed; ``memadvise.apply_plan`` and
``--runtime import`` run this very module. Keep both self-contained: they import what they
need inside their bodies, and no line is longer than 100 columns (a test checks).

Why an object and not a closure: the planned forward is an instance attribute of the
module it plans (``module.forward``), holding that module. ``copy.deepcopy`` and
``pickle`` copy a module's ``__dict__`` through their memo, so a copy's forward holds the
copy (``AveragedModel`` and EMA copies evaluate their own weights), ``torch.save(model)``
pickles it by its class name (a patched script's ``__main__.MemadviseForward``, like the
script's own model class), and the ``state_dict`` keys do not change. A closure over the
original bound method survives none of this.
"""


class MemadviseForward:
    """`module.forward` under a memadvise plan (see memadvise_apply). It holds its module:
    copy.deepcopy and pickle copy it with the module, so a copy runs the copy's weights."""

    def __init__(self, module, action, keep=None, restore=False):
        self.module, self.action, self.restore = module, action, bool(restore)
        pairs = [(k, None) if isinstance(k, str) else tuple(k) for k in keep or ()]
        self.keep = frozenset(op if k is None else (op, k) for op, k in pairs)  # None: every call
        self.inner = module.__dict__.get("forward")  # an instance forward set before ours

    def __call__(self, *args, **kwargs):
        import functools

        import torch
        from torch.utils.checkpoint import checkpoint

        forward = self.inner or type(self.module).forward.__get__(self.module)
        if not torch.is_grad_enabled():  # nothing is saved for backward
            return forward(*args, **kwargs)
        compiling = torch.compiler.is_compiling()
        if self.action == "offload":  # torch.compile traces no saved-tensor hooks: eager
            offloaded = torch.compiler.disable(self.offloaded) if compiling else self.offloaded
            return offloaded(forward, *args, **kwargs)
        # preserve_rng_state: dropout replays its masks. torch.compile traces the recompute
        # (buffers update once) and takes only a selective policy's context_fn.
        if compiling and self.action != "selective":
            return checkpoint(forward, *args, use_reentrant=False, **kwargs)
        context_fn = functools.partial(MemadviseForward.contexts, self, compiling)
        return checkpoint(forward, *args, use_reentrant=False, preserve_rng_state=True,
                          context_fn=context_fn, **kwargs)

    def offloaded(self, forward, *args, **kwargs):
        import torch

        with torch.autograd.graph.save_on_cpu(pin_memory=True):
            return forward(*args, **kwargs)

    def contexts(self, compiling=False):
        import contextlib

        from torch.utils.checkpoint import create_selective_checkpoint_contexts

        fwd = rec = contextlib.nullcontext()
        if self.action == "selective":
            fwd, rec = create_selective_checkpoint_contexts(self.policy())
        if self.restore and not compiling:  # BatchNorm's running stats must update once
            rec = contextlib.contextmanager(self.restoring)(rec)
        return fwd, rec

    def restoring(self, recompute):
        import torch

        buffers = list(self.module.buffers())
        saved = [b.detach().clone() for b in buffers]
        try:
            with recompute:
                yield
        finally:  # a recompute ends with an exception when it stops early
            with torch.no_grad():
                for b, s in zip(buffers, saved):
                    b.copy_(s)

    def policy(self):
        """Keeps `keep`'s ops, counting each op's calls in one checkpoint call (forward and
        recompute apart, detach aside as torch's SAC does): (op, k) is the k-th call."""
        from torch.utils.checkpoint import CheckpointPolicy

        counts = {False: {}, True: {}}

        def policy_fn(ctx, op, *args, **kwargs):
            name = getattr(op, "_overloadpacket", op).__name__
            seen = counts[bool(ctx.is_recompute)]
            k = seen[name] = seen.get(name, -1) + (name != "detach")
            if name in self.keep or (name, k) in self.keep:
                return CheckpointPolicy.MUST_SAVE
            return CheckpointPolicy.PREFER_RECOMPUTE

        return policy_fn


def memadvise_apply(model, actions):
    """Checkpoint, selectively recompute or offload submodules of `model`, in place.

    actions: (submodule path, "checkpoint" | "selective" | "offload", keep: op names and
    (op, k-th call) pairs whose outputs a selective recompute keeps, restore: whether to
    restore buffers after a recompute[, plan name]). `module._memadvise_plan` says what
    runs. A Hugging Face `config.use_cache` is turned off: a KV cache would grow twice.
    """
    if getattr(getattr(model, "config", None), "use_cache", False):
        model.config.use_cache = False
    for unit, action, keep, restore, *name in actions:
        module = model.get_submodule(unit)
        if isinstance(module.__dict__.get("forward"), MemadviseForward):
            raise RuntimeError(f"{unit or 'the model'} already has a plan")
        module.forward = MemadviseForward(module, action, keep, restore)
        module._memadvise_plan = ":".join([action, *name])
    import os  # `memadvise apply --verify` asks which units this run wrapped

    if os.environ.get("MEMADVISE_APPLIED_OUT"):
        with open(os.environ["MEMADVISE_APPLIED_OUT"], "a", encoding="utf-8") as out:
            out.writelines(f"{a[0]}\n" for a in actions)
    return model


class MemadviseAutocast:
    """`module.forward` under torch.autocast; like MemadviseForward, it holds its module."""

    def __init__(self, module, device_type, dtype):
        self.module, self.device_type, self.dtype = module, device_type, dtype
        self.inner = module.__dict__.get("forward")  # an instance forward set before ours

    def __call__(self, *args, **kwargs):
        import torch

        forward = self.inner or type(self.module).forward.__get__(self.module)
        with torch.autocast(device_type=self.device_type, dtype=getattr(torch, self.dtype)):
            return forward(*args, **kwargs)


def memadvise_rebuild_optimizer(optimizer, **flags):
    """`optimizer` built again by its constructor, which checks `flags` (fused=True, ...):
    for an optimizer the script builds where no constructor call can be edited. Call it
    before the first step: the parameter groups and hyperparameters are kept, no state."""
    drop = ("foreach", "fused")
    groups = [{k: v for k, v in g.items() if k not in drop} for g in optimizer.param_groups]
    return type(optimizer)(groups, **flags)


class MemadviseFreeGrads:
    """A forward pre-hook: the previous step's gradients are dropped as a training forward
    starts (what a zero_grad() placed after the forward did later). An object, so that the
    model still deep-copies and pickles."""

    def __call__(self, module, args):
        import torch

        if torch.is_grad_enabled():
            for p in module.parameters():
                p.grad = None
