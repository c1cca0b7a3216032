"""The simulator on a hand-built chain whose memory follows closed formulas
(see memadvise/testing/synthetic.py for the derivation)."""

import pytest

from memadvise.analysis.simulator import PlanError, Simulator
from memadvise.schema.actions import Action
from memadvise.schema.profile import Profile, validate_profile
from memadvise.testing.synthetic import chain_activation_formula, chain_peak_formula, chain_profile

N, A, B, S = 8, 4096, 1024, 4


@pytest.fixture(scope="module")
def sim():
    doc = chain_profile(N, A, B, S, fwd_us=100.0, checkpoint_call_ms=0.05)
    validate_profile(doc, "synthetic")
    return Simulator(Profile(doc))


def ckpt(units):
    return [Action(f"blocks.{i}", "checkpoint") for i in sorted(units)]


def test_baseline_reproduces_the_recorded_step(sim):
    base = sim.baseline()
    assert base.peak_bytes == chain_peak_formula(N, A, B, S, set()) == (N + 1) * (A + B) + S
    assert base.activation_bytes == chain_activation_formula(N, A, B, set())
    assert base.overhead == 0


@pytest.mark.parametrize(
    "name, units",
    [
        ("none", set()),
        ("full", set(range(N))),
        ("every-2", set(range(0, N, 2))),
        ("every-3", set(range(0, N, 3))),
        ("every-2-odd", set(range(1, N, 2))),
        ("last", {N - 1}),
        ("first", {0}),
    ],
)
def test_peak_and_activation_follow_closed_formulas(sim, name, units):
    r = sim.simulate(ckpt(units))
    assert r.peak_bytes == chain_peak_formula(N, A, B, S, units), name
    assert r.activation_bytes == chain_activation_formula(N, A, B, units), name


def test_sqrt_strategy_formula(sim):
    from memadvise.analysis.units import UnitTree
    from memadvise.planning.strategies import candidates

    tree = UnitTree(sim.profile, sim.trace)
    plans = {c.strategy: c for c in candidates(tree, device_type="cuda")[0]}
    chosen = {int(a.unit.split(".")[1]) for a in plans["sqrt"].actions}
    assert len(chosen) == N - 2  # keeps isqrt(8) = 2 blocks stored
    assert sim.simulate(plans["sqrt"].actions).peak_bytes == chain_peak_formula(N, A, B, S, chosen)
    assert {int(a.unit.split(".")[1]) for a in plans["full"].actions} == set(range(N))
    assert {int(a.unit.split(".")[1]) for a in plans["every-2"].actions} == set(range(0, N, 2))


def test_time_is_recompute_plus_fixed_cost_per_call(sim):
    # each checkpointed block re-runs its addmm (100 us) and pays the calibrated 0.05 ms
    r = sim.simulate(ckpt({0, 1, 2}))
    assert r.recompute_ms == pytest.approx(3 * (0.100 * sim.time_scale + 0.05))
    assert sim.cost_us(ckpt({0, 1, 2})) == pytest.approx(r.recompute_ms * 1000)


def test_costs_add_up_over_units(sim):
    total = sum(sim.cost_us(ckpt({i})) for i in range(N))
    assert sim.cost_us(ckpt(range(N))) == pytest.approx(total)


def test_nested_actions_are_refused(sim):
    with pytest.raises(PlanError, match="nested"):
        sim.simulate([Action("", "checkpoint"), Action("blocks.1", "checkpoint")])


def test_unknown_unit_and_duplicate_actions_are_refused(sim):
    with pytest.raises(PlanError, match="not in the profile"):
        sim.simulate([Action("blocks.99", "checkpoint")])
    with pytest.raises(PlanError, match="more than one action"):
        sim.simulate([Action("blocks.1", "checkpoint"), Action("blocks.1", "selective", "save-matmul")])


def test_offload_needs_cuda():
    sim = Simulator(Profile(chain_profile(3, device_type="cpu")))
    with pytest.raises(PlanError, match="CUDA"):
        sim.simulate([Action("blocks.0", "offload")])


def test_cpu_profiles_count_the_rng_state_of_each_frame():
    cpu = Simulator(Profile(chain_profile(N, A, B, S, device_type="cpu")))
    cuda = Simulator(Profile(chain_profile(N, A, B, S, device_type="cuda")))
    acts = ckpt({N - 1})
    # the frame's stashed CPU RNG state (5056 B, live until the frame dies) and the copy
    # fork_rng makes during recompute are device memory only on CPU; the peak is either
    # at gelu_backward (h' and its gradient: 2A + one state) or during recompute (A + two)
    rng = 5056
    before = chain_peak_formula(N, A, B, S, {N - 1}) - 2 * A
    assert cuda.simulate(acts).peak_bytes == before + 2 * A
    assert cpu.simulate(acts).peak_bytes == max(before + 2 * A + rng, before + A + 2 * rng)


def test_offload_moves_saved_tensors_off_the_device():
    sim = Simulator(Profile(chain_profile(N, A, B, S, device_type="cuda")))
    r = sim.simulate([Action(f"blocks.{i}", "offload") for i in range(N)])
    assert r.activation_bytes < sim.baseline().activation_bytes
    assert r.overhead > 0
