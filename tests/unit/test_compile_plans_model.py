"""The compile-plan replay on the hand-built chain (memadvise/testing/synthetic.py):
every save of the compiled root dropped, the partition's saved storages placed by the
graphs' op fractions, the backward graph's buffers instead of the eager backward's."""

import copy

import pytest

from memadvise.analysis.compile_plans import eager_units, predict, replacement
from memadvise.analysis.simulator import Simulator
from memadvise.schema.profile import Profile, validate_profile
from memadvise.testing.synthetic import chain_profile

N, A, B, S = 6, 4096, 1024, 4


def _profile(rows, **extra):
    doc = chain_profile(N, A, B, S)
    doc["compile_plans"] = {"available": True, "graphs": 1, "graph_breaks": [], "compiled_modules": [],
                            "budgets": rows, **extra}
    validate_profile(doc, "synthetic")
    return Profile(doc)


def _row(budget, saved, work=(), flops=0):
    return {"budget": budget, "saved_bytes": sum(b for *_x, b in saved), "saved_count": len(saved),
            "recomputed_count": 0, "recomputed_flops": flops,
            "graphs": [{"forward_nodes": 10, "backward_nodes": 10, "saved_lifetimes": [list(s) for s in saved],
                        "backward_work": [list(w) for w in work]}]}


def test_saved_bytes_replace_the_eager_activations():
    big = 10 * N * (A + B)
    profile = _profile([_row(1.0, [(0.0, 1.0, big)]), _row(0.5, [])])
    sim = Simulator(profile)
    plans = {p.budget: p.result for p in predict(profile, sim, compile_delta_s=0.0)}
    # one storage held from the forward's start to the backward's end: the whole of it is in
    # the peak and held when backward starts; the eager saves are gone in both plans
    assert plans[1.0].peak_bytes - plans[0.5].peak_bytes == big
    assert plans[1.0].activation_bytes - plans[0.5].activation_bytes == big
    assert plans[0.5].peak_bytes < sim.baseline().peak_bytes


def test_backward_buffers_count_where_they_live():
    w = 50 * (A + B)
    profile = _profile([_row(1.0, []), _row(0.9, [], work=[(0.2, 0.3, w)]), _row(0.8, [], work=[(0.2, 0.3, w),
                                                                                              (0.6, 0.7, w)])])
    sim = Simulator(profile)
    peaks = {p.budget: p.result.peak_bytes for p in predict(profile, sim, compile_delta_s=0.0)}
    # a buffer larger than the rest of the step sets the peak, on top of what is live then
    assert w < peaks[0.9] <= w + peaks[1.0]
    assert peaks[0.8] < 2 * w  # two buffers that never overlap: one at a time


def test_non_monotonic_budgets_are_flagged():
    w = 50 * (A + B)
    profile = _profile([_row(1.0, []), _row(0.5, [], work=[(0.1, 0.9, w)]), _row(0.3, [])])
    plans = {p.budget: p for p in predict(profile, Simulator(profile), compile_delta_s=0.0)}
    assert [plans[b].non_monotonic for b in (1.0, 0.5, 0.3)] == [False, True, False]


def test_recomputed_flops_are_priced_at_the_profile_rate():
    profile = _profile([_row(1.0, []), _row(0.5, [], flops=10**9)])
    ops = profile.doc["trace"]["ops"]
    ops["flops"] = [10**6 if name == 0 else 0 for name in ops["name"]]  # the addmm ops: 1 MFLOP each
    sim = Simulator(profile)
    plans = {p.budget: p.result for p in predict(profile, sim, compile_delta_s=-0.001)}
    t = sim.trace
    has = t.op_flops > 0
    rate = t.op_flops[has].sum() / (t.op_dur_us[has].sum() * sim.time_scale / 1e6)
    assert plans[1.0].step_time_s == pytest.approx(sim.base_step_s - 0.001)
    assert plans[0.5].step_time_s - plans[1.0].step_time_s == pytest.approx(10**9 / rate)


def test_graph_breaks_leave_uncovered_modules_eager():
    profile = _profile([_row(1.0, [])], graph_breaks=[{"reason": "x", "where": "m.py:1"}],
                       compiled_modules=["blocks.0", "blocks.1"])
    assert eager_units(profile) == [f"blocks.{i}" for i in range(2, N)]
    sim = Simulator(profile)
    kept = replacement(profile, sim, profile.doc["compile_plans"]["budgets"][0])
    every = replacement(_profile([_row(1.0, [])]), sim, profile.doc["compile_plans"]["budgets"][0])
    assert 0 < len(kept.saves) < len(every.saves)  # the eager modules keep their saves


def test_profile_without_compile_plans_is_unchanged():
    doc = chain_profile(N, A, B, S)
    before = copy.deepcopy(doc)
    assert predict(Profile(doc), Simulator(Profile(doc)), compile_delta_s=None) == []
    assert doc == before


@pytest.mark.parametrize("bad", [{"available": "yes"}, {"available": False}, {"available": True, "budgets": [{}]},
                                 {"available": True, "budgets": [{"budget": 0.5, "saved_bytes": -1}]}])
def test_malformed_compile_plans_are_refused(bad):
    from memadvise._errors import InputFileError

    doc = chain_profile(N, A, B, S)
    doc["compile_plans"] = bad
    with pytest.raises(InputFileError, match="compile_plans is malformed"):
        validate_profile(doc, "p.json")


def test_a_compile_plans_recompute_line_says_what_the_partition_recomputes():
    """Not "nothing": a compile plan recomputes ops; suggest says how many, not by kind."""
    from memadvise.report.suggest_report import recompute_line
    from memadvise.schema.plan import CompileChoice, PlanEntry, Prediction

    plan = PlanEntry(rank=1, strategy="compile-budget-0.5", actions=(),
                     predicted=Prediction(peak_bytes=10, activation_bytes=5, step_time_s=1.0, overhead=0.1),
                     recompute=(), compile=CompileChoice(budget=0.5, saved_bytes=5, recomputed_count=14,
                                                         recomputed_flops=2_500_000))
    line = recompute_line(plan)
    assert line.startswith("14 op(s) in the compiled backward, 2.5 MFLOP") and "nothing" not in line


def test_an_activation_budget_says_when_a_plan_over_it_peaks_lower_for_no_more_time():
    """Budget 0.3 alone meets the activation budget, but its backward buffer peaks above
    budget 1.0, which costs no more time: suggest recommends 0.3 and says so."""
    from memadvise.planning.suggest import suggest
    from memadvise.sizes import Budget

    w = 60 * (A + B)
    profile = _profile([_row(1.0, [(0.5, 0.5, 2 * A)]), _row(0.3, [(0.5, 0.5, A // 4)], work=[(0.1, 0.9, w)])])
    base = Simulator(profile).baseline()
    doc = suggest(profile, budget=Budget(bytes=A // 2, text="tiny"), budget_metric="activation")
    assert doc["recommendation"]["strategy"] == "compile-budget-0.3"
    assert any(n.startswith("compile-budget-1 is predicted to peak lower") and "--budget-metric peak" in n
               for n in doc["notes"]), doc["notes"]
    # with the peak budgeted instead, nothing is said: the recommendation is the lower peak
    peak = suggest(profile, budget=Budget(bytes=base.peak_bytes - 1, text="peak"), budget_metric="peak")
    assert not any("--budget-metric peak" in n for n in peak["notes"])
