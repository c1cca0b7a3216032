"""What a plan does to a live model, with public PyTorch APIs only.

The source of ``memadvise_apply`` below is copied verbatim into the patches that
``memadvise apply`` writes, so a patched script runs where memadvise is not installed,
and ``memadvise.apply_plan`` runs the very same code. Keep it self-contained: it imports
what it needs (``contextlib``, ``functools``, ``torch``) inside its body.
"""

def memadvise_apply(model, actions):
    """Apply plan actions to ``model`` in place; returns ``model``.

    ``actions``: ``(unit, action, save_ops, restore_buffers)`` tuples, where ``unit`` is a
    submodule path ("" for the model itself), ``action`` is "checkpoint", "selective" or
    "offload", ``save_ops`` the aten op names whose outputs selective recompute keeps,
    and ``restore_buffers`` whether the unit updates buffers in forward (BatchNorm
    running statistics), which a recompute would update a second time.
    """
    import contextlib
    import functools

    import torch
    from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

    norm_types = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d, torch.nn.SyncBatchNorm)

    @contextlib.contextmanager
    def restored_buffers(module, inner):
        # Recompute must not update running statistics twice: snapshot, recompute, restore.
        buffers = [b for m in module.modules() for b in m.buffers(recurse=False)]
        with torch.no_grad():
            saved = [b.clone() for b in buffers]
        try:
            with inner:
                yield
        finally:  # recompute ends with an exception when it stops early
            with torch.no_grad():
                for b, s in zip(buffers, saved):
                    b.copy_(s)

    def keep_policy(save_ops):
        def policy(ctx, op, *args, **kwargs):
            name = getattr(getattr(op, "_overloadpacket", op), "__name__", "")
            return CheckpointPolicy.MUST_SAVE if name in save_ops else CheckpointPolicy.PREFER_RECOMPUTE
        return policy

    def wrap(module, action, save_ops, restore_buffers):
        if getattr(module, "_memadvise_action", None) is not None:
            raise RuntimeError(f"memadvise: {type(module).__name__} already has a plan applied")
        forward = module.forward
        restore = restore_buffers or any(
            isinstance(m, norm_types) and m.track_running_stats for m in module.modules()
        )

        def context_fn():
            if action == "selective":
                fwd_ctx, recompute_ctx = create_selective_checkpoint_contexts(keep_policy(frozenset(save_ops)))
            else:
                fwd_ctx, recompute_ctx = contextlib.nullcontext(), contextlib.nullcontext()
            if restore:
                recompute_ctx = restored_buffers(module, recompute_ctx)
            return fwd_ctx, recompute_ctx

        if action == "offload":
            @functools.wraps(forward)
            def planned_forward(*args, **kwargs):
                with torch.autograd.graph.save_on_cpu(pin_memory=True):
                    return forward(*args, **kwargs)
        else:
            @functools.wraps(forward)
            def planned_forward(*args, **kwargs):
                # preserve_rng_state: dropout draws the same mask when recomputed
                return checkpoint(forward, *args, use_reentrant=False, preserve_rng_state=True,
                                  context_fn=context_fn, **kwargs)
        module.forward = planned_forward
        module._memadvise_action = action

    config = getattr(model, "config", None)
    if getattr(config, "use_cache", False):
        # Hugging Face models append to a KV cache in forward, which a recompute would
        # append to twice; training does not use it (as gradient_checkpointing_enable does)
        config.use_cache = False
    for unit, action, save_ops, restore_buffers in actions:
        wrap(model.get_submodule(unit) if unit else model, action, save_ops, restore_buffers)
    return model
