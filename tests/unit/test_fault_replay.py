"""Page faults under a traffic change, from the step's allocations replayed on the heap
(collect/fault_replay.py)."""

import platform
import textwrap

import pytest

from memadvise.collect.fault_replay import (ALLOC, CARRY, FREE, FREE_CARRIED, StepAllocations, change_allocations,
                                            replay_faults, step_allocations)

linux = pytest.mark.skipif(platform.system() != "Linux", reason="getrusage minor faults: Linux")
MiB = 2**20


@linux
def test_a_block_above_every_mmap_threshold_faults_in_each_step_a_small_one_does_not():
    # glibc maps anything over 32 MiB (its largest threshold) afresh: every page faults
    big = StepAllocations(events=[(ALLOC, 0, 64 * MiB), (FREE, 0, 64 * MiB)])
    small = StepAllocations(events=[(ALLOC, k, 16 * 1024) for k in range(8)] + [(FREE, k, 16 * 1024) for k in range(8)])
    got = replay_faults({"big": big, "small": small}, rounds=2, steps=2)
    assert got["big"] >= 0.95 * 64 * MiB / 4096, got
    assert got["small"] <= 40, got  # 128 KiB in all, reused from the heap


@linux
def test_carried_storages_are_freed_by_the_next_step():
    # a step that makes a 1 MiB block it keeps (a gradient) and frees last step's: one
    # such block alive between steps, not one more per step
    plan = StepAllocations(carried=[MiB], events=[(FREE_CARRIED, 1, MiB), (ALLOC, 2, MiB), (CARRY, 2, MiB)])
    from memadvise.collect.fault_replay import _Replayer

    r = _Replayer(plan)
    for _ in range(5):
        r.step()
        assert sum(len(v) for v in r.carried.values()) == 1
    r.close()


SCRIPT = textwrap.dedent("""
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.act, self.fc2 = torch.nn.Linear(256, 512), torch.nn.GELU(), torch.nn.Linear(512, 256)

        def forward(self, x):
            return (self.fc2(self.act(self.fc1(x))) * 2 + 1).relu().square()

    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(64, 256)
    for _ in range(6):
        opt.zero_grad(set_to_none=False)
        model(x).mean().backward()
        opt.step()
""")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    from memadvise.collect.api import profile_script

    path = tmp_path_factory.mktemp("replay") / "train.py"
    path.write_text(SCRIPT)
    return profile_script(path, [], warmup=1, steps=1, timing_steps=2, calibrate_overheads=False)


def allocated(plan: StepAllocations) -> int:
    return sum(b for kind, _, b in plan.events if kind == ALLOC)


def test_the_recorded_step_allocates_what_its_trace_holds(recorded):
    from memadvise.schema.trace import Trace

    t = Trace(recorded)
    plan = step_allocations(t)
    made = t.on_device & (t.st_alloc >= 0)
    assert allocated(plan) == int(t.st_bytes[made].sum() + t.op_scratch.sum())
    # parameters, and the gradients zeroed in place, live across steps
    param_bytes = (256 * 512 + 512 + 512 * 256 + 256) * 4
    assert sum(plan.persistent) >= 2 * param_bytes
    assert len(plan.clocks) == len(plan.events) and plan.clocks == sorted(plan.clocks)


def test_changes_reshape_the_recorded_allocations(recorded):
    from memadvise.schema.trace import Trace
    from memadvise.schema.categories import Category

    t = Trace(recorded)
    plans = change_allocations(recorded, t)
    base = plans["recorded"]
    # autocast: float32 outputs at half their bytes, a low-precision copy per parameter
    copies = [b for kind, key, b in plans["autocast"].events if kind == ALLOC and key <= -(10**9)]
    params = t.on_device & (t.st_category == int(Category.PARAMETER)) & (t.st_alloc < 0)
    assert sorted(copies) == sorted(int(b) // 2 for b in t.st_bytes[params])
    assert allocated(plans["autocast"]) - sum(copies) < 0.75 * allocated(base)
    # compile: the chain *2 → +1 → relu → square in the model fuses; its inner outputs are never made
    assert allocated(plans["compile"]) < allocated(base)
    assert len([e for e in plans["compile"].events if e[0] == ALLOC]) < len([e for e in base.events if e[0] == ALLOC])
    # set_to_none: each zeroed gradient freed at zero_grad and made again in backward
    moved = plans["set_to_none"]
    n_grads = int((t.on_device & (t.st_category == int(Category.GRADIENT))).sum())
    assert n_grads == 4
    assert len(moved.carried) - len(base.carried) == n_grads
    assert sum(moved.persistent) == sum(base.persistent) - int(t.st_bytes[t.on_device & (t.st_category == int(Category.GRADIENT))].sum())


@linux
def test_replay_counts_every_change(recorded):
    got = replay_faults(change_allocations(recorded), rounds=2, steps=2)
    assert set(got) == {"recorded", "autocast", "compile", "set_to_none"}
