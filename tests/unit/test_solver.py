"""The budget-optimal solver against an independent brute force (same objective, same
simulator): exact on every instance with at most 16 candidate units."""

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memadvise.analysis.simulator import Simulator
from memadvise.analysis.units import UnitTree
from memadvise.planning.solver import EXACT_LIMIT, candidate_units, solve
from memadvise.schema.actions import Action
from memadvise.schema.profile import Profile
from memadvise.testing.synthetic import chain_profile


def brute_force(sim, tree, units, budget, kinds):
    """Every set of disjoint units, every action on each: the cheapest that fits."""
    best = None
    names = [tree.units[u].name for u in units]
    for r in range(len(units) + 1):
        for subset in itertools.combinations(range(len(units)), r):
            if any(tree.nested(units[a], units[b]) for a, b in itertools.combinations(subset, 2)):
                continue
            for choice in itertools.product(kinds, repeat=len(subset)):
                actions = [Action(names[i], k, "save-matmul" if k == "selective" else None) for i, k in zip(subset, choice)]
                if sim.simulate(actions).peak_bytes <= budget:
                    cost = sim.cost_us(actions)
                    if best is None or cost < best:
                        best = cost
    return best


def instance(n, inner, boundary, fwd):
    doc = chain_profile(n, inner[:n], boundary[: n + 1], 4, device_type="cpu", fwd_us=fwd[:n], checkpoint_call_ms=0.01)
    sim = Simulator(Profile(doc))
    return sim, UnitTree(sim.profile, sim.trace)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 5),
    inner=st.lists(st.integers(1, 64).map(lambda k: k * 512), min_size=5, max_size=5),
    boundary=st.lists(st.integers(1, 16).map(lambda k: k * 256), min_size=6, max_size=6),
    fwd=st.lists(st.floats(10, 500), min_size=5, max_size=5),
    frac=st.floats(0.0, 1.0),
)
def test_solver_matches_brute_force(n, inner, boundary, fwd, frac):
    sim, tree = instance(n, inner, boundary, fwd)
    units = candidate_units(tree, sim)
    assert len(units) <= EXACT_LIMIT
    base = sim.baseline().peak_bytes
    budget = int(base - frac * 0.8 * (base - 0.2 * base))
    expected = brute_force(sim, tree, units, budget, ("checkpoint", "selective"))
    sol = solve(sim, tree, budget, device_type="cpu", units=units, per_op=False)
    if expected is None:
        assert sol is None
    else:
        assert sol is not None and sol.method == "exact"
        assert sol.result.peak_bytes <= budget
        assert abs(sol.cost_us - expected) <= 1e-6 * max(1.0, expected)


@pytest.mark.slow  # 2^15 plans brute-forced: seconds
def test_solver_exact_with_sixteen_candidate_units():
    n = 15  # 15 blocks and the root: 16 candidate units
    # tensors of tens of KiB: the 5 KiB RNG state a CPU checkpoint stashes stays small
    sim, tree = instance(n, [65536 * (1 + (7 * i) % 11) for i in range(n)], [16384 * (1 + (3 * i) % 5) for i in range(n + 1)],
                         [50.0 + 37 * ((5 * i) % 9) for i in range(n)])
    units = candidate_units(tree, sim)
    assert len(units) == EXACT_LIMIT == 16
    base = sim.baseline().peak_bytes
    budget = int(base * 0.72)
    expected = brute_force(sim, tree, units, budget, ("checkpoint",))
    sol = solve(sim, tree, budget, device_type="cpu", units=units, selective=False)
    assert sol is not None and sol.method == "exact"
    assert abs(sol.cost_us - expected) <= 1e-6 * expected


def test_infeasible_budget_returns_none():
    sim, tree = instance(3, [4096] * 3, [1024] * 4, [100.0] * 3)
    assert solve(sim, tree, 10, device_type="cpu") is None


def test_heuristic_on_large_chain_meets_the_budget():
    n = 40
    sim, tree = instance(n, [262144] * n, [65536] * (n + 1), [100.0] * n)
    base = sim.baseline().peak_bytes
    sol = solve(sim, tree, int(base * 0.6), device_type="cpu")
    assert sol is not None and sol.method == "heuristic"
    assert sol.result.peak_bytes <= base * 0.6
