"""What a plan does to a live model, with public PyTorch APIs only.

The source of ``memadvise_apply`` below is copied verbatim into the patches that
``memadvise apply`` writes, so a patched script runs where memadvise is not installed,
and ``memadvise.apply_plan`` runs the very same code. Keep it self-contained: it imports
what it needs (``contextlib``, ``functools``, ``torch``) inside its body.
"""

def memadvise_apply(model, actions):
    """Checkpoint, selectively recompute or offload submodules of `model`, in place.

    actions: (submodule path, "checkpoint" | "selective" | "offload", ops whose outputs
    selective recompute keeps, whether to restore buffers after a recompute).
    """
    import contextlib
    import functools

    import torch
    from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

    @contextlib.contextmanager
    def restored_buffers(module, inner):
        # BatchNorm running stats must not update twice: snapshot, recompute, restore
        buffers = list(module.buffers())
        with torch.no_grad():
            saved = [b.clone() for b in buffers]
        try:
            with inner:
                yield
        finally:  # a recompute ends with an exception when it stops early
            with torch.no_grad():
                for b, s in zip(buffers, saved):
                    b.copy_(s)

    def wrap(module, action, save_ops, restore):
        forward = module.forward

        def policy(ctx, op, *args, **kwargs):
            keep = getattr(op, "_overloadpacket", op).__name__ in save_ops
            return CheckpointPolicy.MUST_SAVE if keep else CheckpointPolicy.PREFER_RECOMPUTE

        def contexts():
            if action == "selective":
                fwd, rec = create_selective_checkpoint_contexts(policy)
            else:
                fwd, rec = contextlib.nullcontext(), contextlib.nullcontext()
            return fwd, (restored_buffers(module, rec) if restore else rec)

        @functools.wraps(forward)
        def planned_forward(*args, **kwargs):
            if action == "offload":
                with torch.autograd.graph.save_on_cpu(pin_memory=True):
                    return forward(*args, **kwargs)
            # preserve_rng_state: dropout replays the same masks when recomputed
            return checkpoint(forward, *args, use_reentrant=False, preserve_rng_state=True,
                              context_fn=contexts, **kwargs)

        module.forward = planned_forward

    if getattr(getattr(model, "config", None), "use_cache", False):
        model.config.use_cache = False  # Hugging Face: a KV cache would grow twice under recompute
    for unit, action, save_ops, restore in actions:
        wrap(model.get_submodule(unit), action, save_ops, restore)
    import os  # `memadvise apply --verify` asks which units this run wrapped

    if os.environ.get("MEMADVISE_APPLIED_OUT"):
        with open(os.environ["MEMADVISE_APPLIED_OUT"], "a", encoding="utf-8") as out:
            out.writelines(f"{a[0]}\n" for a in actions)
    return model


def memadvise_tune(model, optimizer, changes):
    """Traffic changes: ("autocast", dtype name, device type), ("channels_last",),
    ("compile",), ("free_grads",) on `model`; ("optimizer", "foreach" | "fused" | "for-loop"),
    ("set_to_none",) on `optimizer`."""
    import torch

    for change in changes:
        kind = change[0]
        if kind == "autocast":
            model.forward = torch.autocast(device_type=change[2], dtype=getattr(torch, change[1]))(model.forward)
        elif kind == "channels_last":
            model.to(memory_format=torch.channels_last)
        elif kind == "compile":
            model.compile()
        elif kind == "optimizer":
            for group in [optimizer.defaults, *optimizer.param_groups]:
                group["foreach"] = change[1] == "foreach"
                if "fused" in group:
                    group["fused"] = True if change[1] == "fused" else None
        elif kind == "free_grads":
            def free_grads(module, args):  # the previous step's gradients, dropped as the forward starts
                if torch.is_grad_enabled():
                    for p in module.parameters():
                        p.grad = None

            model.register_forward_pre_hook(free_grads)
        elif kind == "set_to_none":
            optimizer.zero_grad = lambda set_to_none=True, zero_grad=optimizer.zero_grad: zero_grad(set_to_none=True)
    return model
