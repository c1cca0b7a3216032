"""The device allocator as the source of truth, exercised on CPU with a fake allocator
that injects a workspace (held from the first op on, as cuBLAS holds its own) and
scratch inside every ``relu``: both must reach the profile's peak, its categories and the
peak a plan predicts, recomputed ops included."""

import pytest
from conftest import SAMPLES
import torch

from memadvise.analysis.simulator import Simulator
from memadvise.collect.allocator import CUDA_BLOCK_BYTES, CudaAllocatorStats, FakeAllocatorStats
from memadvise.collect.api import profile_script
from memadvise.schema.actions import Action

WORKSPACE = 3_000_000
SCRATCH = 50_000_000  # far above the tiny model's tensors: the peak sits in a relu
ARGS = ["--depth", "4", "--width", "64", "--batch", "16"]


@pytest.fixture(scope="module")
def profiles():
    script = SAMPLES / "mlp.py"
    kw = dict(warmup=1, timing_steps=1, steps=2, calibrate_overheads=False)
    plain = profile_script(script, ARGS, **kw)
    fake = profile_script(script, ARGS, allocator=FakeAllocatorStats(workspace_bytes=WORKSPACE,
                                                                       scratch_bytes={"relu": SCRATCH}), **kw)
    return plain, fake


def test_injected_bytes_are_in_the_profile_peak(profiles):
    plain, fake = profiles
    s = fake.summary
    assert s["by_category_at_peak"]["untracked"] == WORKSPACE
    assert s["by_category_at_peak"]["temporary"] >= SCRATCH
    assert s["peak_op"] == "relu"
    assert WORKSPACE + SCRATCH <= s["peak_bytes"] <= plain.summary["peak_bytes"] + WORKSPACE + SCRATCH
    # the profile's peak is the allocator's peak over the recorded step, to the byte
    for step in fake.doc["steps"]:
        assert step["peak_bytes"] == step["allocator"]["max_allocated_bytes"]
    assert not fake.notes
    # every op of the step saw the workspace, and only relu had scratch
    ops = fake.trace["ops"]
    assert set(ops["untracked"]) == {WORKSPACE}
    names = [fake.trace["strings"][i] for i in ops["name"]]
    assert {n for n, b in zip(names, ops["scratch"]) if b} == {"relu"}
    assert set(b for b in ops["scratch"] if b) == {SCRATCH}
    # without an allocator (CPU) nothing is added
    assert plain.summary["by_category_at_peak"].get("untracked", 0) == 0
    assert "untracked" not in plain.trace["ops"]


def test_injected_bytes_are_in_a_plans_predicted_peak(profiles):
    plain, fake = profiles
    base = Simulator(fake).baseline()
    assert base.peak_bytes == fake.summary["peak_bytes"]
    plan = [Action("blocks.3", "checkpoint")]
    pred = Simulator(fake).simulate(plan)
    assert pred.by_category_at_peak["untracked"] == WORKSPACE
    # relu is recomputed in backward, with its scratch, where more is live than in forward
    assert pred.peak_in_recompute
    assert pred.peak_bytes > base.peak_bytes
    assert pred.peak_bytes >= Simulator(plain).simulate(plan).peak_bytes + WORKSPACE


def test_cuda_blocks_are_rounded_as_the_caching_allocator_rounds():
    stats = CudaAllocatorStats(torch.device("cuda", 0))  # no CUDA call is made
    assert CUDA_BLOCK_BYTES == 512
    assert [stats.block_bytes(n) for n in (0, 1, 512, 513, 3072)] == [0, 512, 512, 1024, 3072]


def test_fake_counts_scratch_only_inside_its_op():
    live = [1000]
    fake = FakeAllocatorStats(workspace_bytes=10, workspace_op="mm", scratch_bytes={"relu": 7})
    fake.bind(lambda: live[0])
    fake.op_begin("add")
    assert fake.op_end() == (1000, 1000)
    fake.op_begin("mm")
    live[0] = 1200
    assert fake.op_end() == (1210, 1210)
    fake.op_begin("relu")
    assert fake.op_end() == (1210, 1217)


def test_cuda_stats_are_read_from_one_nested_dict(monkeypatch):
    """The CUDA source reads torch's C counters twice per op, before and after, and resets
    the peak once (no GPU needed: faked)."""
    state = {"current": 100, "peak": 100, "reserved_peak": 2048, "resets": 0, "reads": 0}

    def stats(index):
        assert index == 3
        state["reads"] += 1
        return {"allocated_bytes": {"all": {"current": state["current"], "peak": state["peak"]}},
                "reserved_bytes": {"all": {"peak": state["reserved_peak"]}}}

    def reset(index):
        state["resets"] += 1
        state["peak"] = state["current"]

    monkeypatch.setattr(torch._C, "_cuda_memoryStats", stats, raising=False)
    monkeypatch.setattr(torch._C, "_cuda_resetPeakMemoryStats", reset, raising=False)
    cuda = CudaAllocatorStats(torch.device("cuda", 3))
    assert cuda.op_begin("mm") == 100
    state.update(current=612, peak=4708, reserved_peak=8192)  # the op: 512 B out, 4 KiB scratch
    assert cuda.op_end() == (612, 4708)
    assert state == {**state, "resets": 1, "reads": 2} and cuda.reserved_max == 8192
    cuda.reset_window()
    assert cuda.reserved_max == 0


def test_a_cached_block_handed_out_whole_belongs_to_the_op_s_largest_new_storage():
    import numpy as np

    from memadvise.collect.build import _Arrays

    arr = _Arrays.__new__(_Arrays)
    # op 0 makes storages 0 (1024 B) and 1 (4096 B) and grew by 4096 B more (a cached block
    # given whole); op 1 makes storage 2 and kept a 2 MiB workspace; storage 3 is on another device
    arr.st_alloc_op = np.asarray([0, 0, 1, 1])
    arr.st_bytes = np.asarray([1024, 4096, 512, 512])
    on_dev = np.asarray([True, True, True, False])
    before = np.asarray([0, 9216])
    after = np.asarray([9216, 9216 + 512 + 2**21])
    arr._block_slack(before, after, on_dev)
    assert arr.st_bytes.tolist() == [1024, 8192, 512, 512]


def test_every_suggested_plan_carries_the_workspace(profiles):
    from memadvise.planning.suggest import suggest

    _plain, fake = profiles
    doc = suggest(fake)
    assert doc["plans"]
    for plan in doc["plans"]:
        predicted = plan["predicted"]
        assert predicted["by_category_at_peak"]["untracked"] == WORKSPACE, plan["strategy"]
        assert predicted["peak_bytes"] >= WORKSPACE + SCRATCH
