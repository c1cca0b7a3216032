"""Run training scripts for ONE optimizer step each and record, at that step, every
parameter's gradient and every buffer of the model (BatchNorm running statistics):
the reference for "applying a plan never changes the math".

    python tests/grad_dump.py JOBS.json OUT_DIR

JOBS.json lists [script, args]; OUT_DIR/<i>.pt gets {"grads": [...], "buffers": {...}}.
Under torchrun (one file per rank, <i>.rank<R>.pt) give one job per launch: a process
group cannot be initialised twice in one process.
Imports nothing of memadvise.
"""

import json
import os
import runpy
import sys

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook


class _Stop(BaseException):
    pass


def run_one(script, args, out_path):
    state = {"root": None}

    def first_module(module, inputs):
        if state["root"] is None:
            state["root"] = module

    def dump(optimizer, a, k):
        def plain(t):  # a DTensor (FSDP2) compares by its local shard
            return t.to_local() if hasattr(t, "to_local") else t

        grads = [None if p.grad is None else plain(p.grad).detach().clone() for g in optimizer.param_groups for p in g["params"]]
        root = state["root"]
        buffers = {n: plain(b).detach().clone() for n, b in root.named_buffers()} if root is not None else {}
        torch.save({"grads": grads, "buffers": buffers}, out_path)
        raise _Stop

    h1 = torch.nn.modules.module.register_module_forward_pre_hook(first_module)
    h2 = register_optimizer_step_pre_hook(dump)
    saved = sys.argv[:], sys.path[0]
    sys.argv = [script, *args]
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    try:
        runpy.run_path(script, run_name="__main__")
    except _Stop:
        pass
    finally:
        h1.remove()
        h2.remove()
        sys.argv, sys.path[0] = saved


def main():
    jobs = json.load(open(sys.argv[1]))
    rank = os.environ.get("RANK")  # under torchrun: one file per rank
    first = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    for i, (script, args) in enumerate(jobs, start=first):
        name = f"{i}.pt" if rank is None else f"{i}.rank{rank}.pt"
        run_one(script, args, os.path.join(sys.argv[2], name))
    # the script was stopped mid-run with its process group alive, and a gloo group alive
    # at interpreter teardown can abort the process (SIGABRT): wait for every rank, then
    # leave without teardown (the files are written)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
