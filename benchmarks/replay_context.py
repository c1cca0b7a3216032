"""Why memadvise replays a step's matmuls from memory: one op timed alone with its data in
cache, with its data out of cache, and inside a training step.

* ``addmm`` of the MLP sample (64x256 by 256x256): replayed on the same tensors; after
  a 16 MiB copy evicts the caches before each call; inside the MLP sample's training
  loop (perf_counter around each ``F.linear``);
* ``gelu`` of the GPT sample ([8, 64, 512]): one input and output reused; inputs and
  outputs cycled through 64 copies each (128 MiB: what `probe.time_signatures` does);
* with ``--compile``: the GPT sample's step, eager and ``torch.compile``d, with dropout
  0.1 and without (tens of seconds: it compiles).

    python benchmarks/replay_context.py [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sample_models"))


def _median_us(fn, pre=lambda: None, n: int = 300) -> float:
    times = []
    for _ in range(n):
        pre()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[n // 10:]) * 1e6


def addmm_context() -> dict:
    from mlp import MLP

    x, w, b = torch.randn(64, 256), torch.randn(256, 256), torch.randn(256)
    big = torch.randn(4 * 2**20)
    dst = torch.empty_like(big)
    with torch.no_grad():
        hot = _median_us(lambda: torch.addmm(b, x, w))
        evicted = _median_us(lambda: torch.addmm(b, x, w), pre=lambda: dst.copy_(big))
    torch.manual_seed(0)
    model = MLP(256, 8, 16)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    in_step: list[float] = []
    for it in range(300):
        opt.zero_grad(set_to_none=True)
        h = torch.randn(64, 256)
        for blk in model.blocks:
            t0 = time.perf_counter()
            h = F.linear(h, blk.fc.weight, blk.fc.bias)
            if it >= 50:
                in_step.append(time.perf_counter() - t0)
            h = torch.relu(h)
        F.mse_loss(model.head(h), torch.randn(64, 16)).backward()
        opt.step()
    return {"hot_us": hot, "evicted_us": evicted, "in_step_us": statistics.median(in_step) * 1e6}


def gelu_context(k: int = 64) -> dict:
    xs = [torch.randn(8, 64, 512) for _ in range(k)]
    outs = [torch.empty(8, 64, 512) for _ in range(k)]
    i = [0]

    def cycled() -> None:
        i[0] += 1
        torch.ops.aten.gelu.out(xs[i[0] % k], out=outs[(i[0] * 7) % k])

    return {"hot_us": _median_us(lambda: torch.ops.aten.gelu.out(xs[0], out=outs[0])),
            "cycled_us": _median_us(cycled)}


def compile_context() -> dict:
    from gpt import GPT

    out = {}
    for dropout in (0.1, 0.0):
        for compiled in (False, True):
            torch.manual_seed(0)
            model = GPT(256, 64, 4, 4, 128, dropout)
            if compiled:
                model = torch.compile(model)
            opt = torch.optim.AdamW(model.parameters(), lr=3e-4, foreach=False)

            def step(model=model, opt=opt) -> None:
                opt.zero_grad(set_to_none=True)
                idx, tgt = torch.randint(0, 256, (8, 64)), torch.randint(0, 256, (8, 64))
                model(idx, tgt).backward()
                opt.step()

            for _ in range(3):
                step()
            out[f"dropout {dropout}, {'compiled' if compiled else 'eager'} ms"] = _median_us(step, n=30) / 1000
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--compile", action="store_true", help="also time the GPT sample compiled (compiles)")
    args = p.parse_args()
    a = addmm_context()
    print(f"addmm 64x256x256: {a['hot_us']:.0f} us in cache, {a['in_step_us']:.0f} us in the MLP's step, "
          f"{a['evicted_us']:.0f} us after evicting the cache")
    g = gelu_context()
    print(f"gelu [8, 64, 512]: {g['hot_us']:.0f} us in cache, {g['cycled_us']:.0f} us cycled through 128 MiB of copies")
    if args.compile:
        for k, v in compile_context().items():
            print(f"GPT sample step, {k}: {v:.1f}")


if __name__ == "__main__":
    main()
