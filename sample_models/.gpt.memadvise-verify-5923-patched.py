"""A nanoGPT-style decoder-only transformer trained on random tokens.

Run:  python sample_models/gpt.py [--n-layer 4 --n-head 4 --width 128 ...]

Random tokens keep the loss near ln(vocab) = ln(256) ~ 5.55: the point is the
memory of a training step, not learning. Attention is written out by hand (no
scaled_dot_product_attention) so the (batch, n_head, seq, seq) scores, softmax
and dropout mask are ordinary tensors that autograd saves and a profiler sees.
"""

import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, seq_len, dropout):
        super().__init__()
        assert n_embd % n_head == 0, "width must be divisible by n_head"
        self.n_head = n_head
        # One matmul produces q, k and v together (3 * n_embd outputs), as in nanoGPT.
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.attn_dropout = nn.Dropout(dropout)
        self.resid_dropout = nn.Dropout(dropout)
        # True above the diagonal = "may not attend to the future". Stored as a bool
        # buffer of the positions to mask, so masked_fill can use a slice (a view) of
        # it directly: no per-step `mask == 0` tensor for autograd to save.
        future = torch.ones(seq_len, seq_len, dtype=torch.bool).triu(diagonal=1)
        self.register_buffer("causal_mask", future, persistent=False)

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.n_head  # head size
        # (B, T, 3C) -> three (B, n_head, T, hs) views of the one c_attn output.
        q, k, v = (t.view(B, T, self.n_head, hs).transpose(1, 2)
                   for t in self.c_attn(x).split(C, dim=2))
        # 1/sqrt(hs) keeps the score variance ~1 so softmax does not saturate.
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.causal_mask[:T, :T], float("-inf"))
        att = F.softmax(att, dim=-1)
        att = self.attn_dropout(att)
        y = att @ v  # (B, n_head, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, n_embd, dropout):
        super().__init__()
        # 4x expansion is the GPT-2 convention.
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * n_embd, n_embd)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, n_embd, n_head, seq_len, dropout):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, seq_len, dropout)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd, dropout)

    def forward(self, x):
        # Pre-norm residual block (GPT-2 / nanoGPT ordering).
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, vocab, seq_len, n_layer, n_head, n_embd, dropout):
        super().__init__()
        self.wte = nn.Embedding(vocab, n_embd)
        self.wpe = nn.Embedding(seq_len, n_embd)  # learned positions, as in GPT-2
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            [Block(n_embd, n_head, seq_len, dropout) for _ in range(n_layer)]
        )
        self.ln_f = nn.LayerNorm(n_embd)
        # Not weight-tied to wte (nanoGPT ties them): untied, every parameter belongs
        # to exactly one module, which keeps per-module accounting unambiguous.
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)

    def forward(self, idx, targets):
        T = idx.size(1)
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        # Only the scalar loss leaves forward(): the caller never holds the
        # (batch, seq, vocab) logits, so they are freed as soon as backward is done.
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--width", type=int, default=128, help="n_embd")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--vocab", type=int, default=256, help="byte-level, like char nanoGPT")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--lr", type=float, default=3e-4)  # nanoGPT's small-model AdamW lr
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--foreach", action="store_true", help="AdamW(foreach=True)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    model = GPT(args.vocab, args.seq_len, args.n_layer, args.n_head, args.width,
                args.dropout).to(device)
    # --- memadvise plan: begin (rank 3, strategy optimal-63%) ---
    # Generated by memadvise 0.1.0 from /tmp/t/gpt.plan.json. Public PyTorch APIs only:
    # torch.utils.checkpoint (non-reentrant, preserve_rng_state=True, so dropout
    # replays the same masks); gradients are unchanged, memory is traded for recompute.
    # checkpoint (recompute the whole unit in backward): blocks.0.attn,
    #     blocks.1.attn, blocks.1.mlp, blocks.2.attn, blocks.2.mlp
    # selective (keep matmul/conv/attention outputs, recompute the rest): blocks
    #     .0.mlp
    # predicted: peak 22.5 MiB (-37.9% vs 36.2 MiB), activations 11.5 MiB (-54.4%), step time +33.6%
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
            with inner:
                yield
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

        for unit, action, save_ops, restore_buffers in actions:
            wrap(model.get_submodule(unit) if unit else model, action, save_ops, restore_buffers)
        return model
    memadvise_apply(model, [
        ('blocks.0.attn', 'checkpoint', None, False),
        ('blocks.0.mlp', 'selective', ['_addmm_activation', '_convolution', '_efficient_attention_forward', '_flash_attention_forward', '_scaled_dot_product_cudnn_attention', '_scaled_dot_product_efficient_attention', '_scaled_dot_product_flash_attention', '_scaled_dot_product_flash_attention_for_cpu', 'addmm', 'baddbmm', 'bmm', 'convolution', 'cudnn_convolution', 'mkldnn_convolution', 'mm'], False),
        ('blocks.1.attn', 'checkpoint', None, False),
        ('blocks.1.mlp', 'checkpoint', None, False),
        ('blocks.2.attn', 'checkpoint', None, False),
        ('blocks.2.mlp', 'checkpoint', None, False),
    ])
    # --- memadvise plan: end ---
    # foreach=False (not None, which means "foreach on CUDA") so the flag alone picks
    # per-parameter updates or the multi-tensor path with whole-model temporaries.
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, foreach=args.foreach)
    print(f"gpt: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")

    for step in range(args.steps):
        opt.zero_grad(set_to_none=True)
        idx = torch.randint(0, args.vocab, (args.batch, args.seq_len), device=device)
        # Next-token targets: random too, so there is nothing to learn but the unigram.
        targets = torch.randint(0, args.vocab, (args.batch, args.seq_len), device=device)
        loss = model(idx, targets)
        loss.backward()
        opt.step()
        if step % 5 == 0 or step == args.steps - 1:
            print(f"step {step:3d}  loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
