"""The solver's per-op choices against an independent brute force: every unit acted on
or not, checkpointed or selective with every subset of its ops kept, on instances of at
most 16 binary choices (the same objective and simulator: exact)."""

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memadvise.analysis.simulator import Simulator
from memadvise.analysis.units import UnitTree
from memadvise.planning.solver import EXACT_CHOICES, binary_choices, candidate_units, solve
from memadvise.schema.actions import Action
from memadvise.schema.profile import Profile
from memadvise.testing.synthetic import op_chain_profile

NAMES = ("addmm", "gelu", "mul", "softmax")


def instance(ms, sizes, durs, selective_op_us=0.0):
    names = [[NAMES[(i + j) % 3 if j else 0] for j in range(m)] for i, m in enumerate(ms)]
    out = [[sizes[(7 * i + j) % len(sizes)] for j in range(m)] for i, m in enumerate(ms)]
    us = [[durs[(5 * i + j) % len(durs)] for j in range(m)] for i, m in enumerate(ms)]
    doc = op_chain_profile(len(ms), names, out, us, 2048, device_type="cuda", checkpoint_call_ms=0.002,
                           selective_op_us=selective_op_us)
    sim = Simulator(Profile(doc))
    return sim, UnitTree(sim.profile, sim.trace)


def brute_force(sim, tree, units, budget):
    """The cheapest fitting plan over every valid assignment, built without the solver."""
    per_unit = []
    for u in units:
        name = tree.units[u].name
        keepable = tree.keepable(u)
        opts = [Action(name, "checkpoint")]
        for r in range(1, len(keepable) + 1):
            for keep in itertools.combinations(keepable, r):
                if tree.selective_problem(u, keep) is None:
                    opts.append(Action(name, "selective", keep=keep))
        per_unit.append(opts)
    best = None
    for choice in itertools.product(*[[None] + opts for opts in per_unit]):
        chosen = [(u, a) for u, a in zip(units, choice) if a is not None]
        if any(tree.nested(u1, u2) for (u1, _), (u2, _) in itertools.combinations(chosen, 2)):
            continue
        actions = [a for _, a in chosen]
        if sim.simulate(actions).peak_bytes <= budget:
            cost = sim.cost_us(actions)
            if best is None or cost < best:
                best = cost
    return best


def check(sim, tree, frac):
    units = candidate_units(tree, sim)
    assert binary_choices(tree, units) <= EXACT_CHOICES
    base = sim.baseline().peak_bytes
    budget = int(base * (1 - 0.6 * frac))
    expected = brute_force(sim, tree, units, budget)
    sol = solve(sim, tree, budget, device_type="cuda", units=units, offload=False)
    if expected is None:
        assert sol is None
    else:
        assert sol is not None and sol.method == "exact"
        assert sol.result.peak_bytes <= budget
        assert abs(sol.cost_us - expected) <= 1e-6 * max(1.0, expected)
    return sol


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ms=st.lists(st.integers(1, 3), min_size=1, max_size=2),
    sizes=st.lists(st.integers(1, 32).map(lambda k: k * 512), min_size=4, max_size=4),
    durs=st.lists(st.floats(1, 100), min_size=4, max_size=4),
    frac=st.floats(0.0, 1.0),
    caching=st.sampled_from([0.0, 0.5]),
)
def test_per_op_solver_matches_brute_force(ms, sizes, durs, frac, caching):
    sim, tree = instance(ms, sizes, durs, caching)
    check(sim, tree, frac)


def test_sixteen_binary_choices_exact():
    # three blocks of two ops and the root (the six ops): 4 units + 12 ops = 16 choices
    sim, tree = instance([2, 2, 2], [4096, 1024, 8192, 2048], [5.0, 60.0, 20.0, 2.0])
    assert binary_choices(tree, candidate_units(tree, sim)) == 16
    for frac in (0.2, 0.5, 0.8):
        check(sim, tree, frac)


def test_a_per_op_keep_set_beats_checkpoint_when_it_fits():
    # a block of a slow small op and a fast large one: recomputing only the fast one
    # frees most of the bytes for a fraction of the time
    doc = op_chain_profile(2, ["addmm", "gelu", "addmm"], [[512, 65536, 512]] * 2, [[200.0, 1.0, 1.0]] * 2, 512)
    sim = Simulator(Profile(doc))
    tree = UnitTree(sim.profile, sim.trace)
    units = candidate_units(tree, sim)
    base = sim.baseline()
    sol = solve(sim, tree, base.peak_bytes - 1, device_type="cuda", units=units, offload=False)
    assert sol is not None and sol.method == "exact"
    assert [a.kept() for a in sol.actions] == [(("addmm", 0),)]  # gelu recomputed, 1 µs instead of 201 µs


def test_heuristic_with_per_op_options_meets_the_budget():
    n = 40
    ms = [4] * n
    sim, tree = instance(ms, [65536, 4096, 131072, 8192, 1024], [50.0, 2.0, 5.0, 80.0, 1.0])
    base = sim.baseline().peak_bytes
    sol = solve(sim, tree, int(base * 0.6), device_type="cuda")
    assert sol is not None and sol.method == "heuristic"
    assert sol.result.peak_bytes <= base * 0.6
    assert sol.cost_us == sim.cost_us(sol.actions)
