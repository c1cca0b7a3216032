"""`apply --verify --verify-repeats N`: a discarded warm-up run, then pairs whose order
alternates; the overhead is the median of the per-pair ratios, resolved only where the
pairs' spread is smaller than it; memory comes from the first pair; a plan whose code did
not run is said so."""

from dataclasses import replace
from types import SimpleNamespace

import pytest

import memadvise.apply.verify as verify_mod
from memadvise.schema.actions import Action
from memadvise.schema.plan import AppliedPlan, Prediction
from memadvise.schema.profile import Settings


@pytest.fixture(autouse=True)
def _no_independent_run(monkeypatch):
    """These tests are about timing: the independent peak measurement (a subprocess per
    script, tests/unit/test_verify_independent.py) is said to be unavailable."""
    def unavailable(script, *a, **k):
        raise verify_mod.ScriptError("not measured in this test")
    monkeypatch.setattr(verify_mod, "_independent_subprocess", unavailable)


def fake_inputs(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("print('original')\n")
    plan = AppliedPlan(rank=1, strategy="full", actions=(),
                       predicted=Prediction(peak_bytes=1000, activation_bytes=400, step_time_s=1.0, overhead=0.25))
    prepared = SimpleNamespace(script=script, source=script.read_text(), plan=plan,
                               patch=SimpleNamespace(new_source="print('patched')\n"))
    plan_file = SimpleNamespace(doc={}, settings=Settings(), world_size=1, script={"args": [], "cwd": str(tmp_path)})
    return plan_file, prepared


def test_pairs_alternate_and_the_median_ratio_is_reported(tmp_path, monkeypatch):
    # the machine slows down run after run: a single pair would say +60% or +0%
    steps = iter([(1.0, 1.6), (2.0, 2.5), (1.6, 1.6)])
    calls = []

    def fake_profile(script, args, settings, cwd, timing_steps, timeout, nproc, env=None):
        calls.append(script.name.rsplit("-", 1)[1])
        if len(calls) == 1:  # the warm-up
            return {"step_time_s": 9.0, "peak_bytes": 0, "activation_bytes": 0}
        if len(calls) % 2 == 0:
            fake_profile.pair = next(steps)
        t = fake_profile.pair[0] if calls[-1] == "orig.py" else fake_profile.pair[1]
        peak = 1000 + len(calls)  # so "memory of the first pair" is visible
        return {"step_time_s": t, "peak_bytes": peak, "activation_bytes": 400}

    monkeypatch.setattr(verify_mod, "_profile_subprocess", fake_profile)
    plan_file, prepared = fake_inputs(tmp_path)
    result = verify_mod.verify(plan_file, prepared, tolerance=0.05, repeats=3)
    # a discarded warm-up, then the order within pairs alternates
    assert calls == ["orig.py", "orig.py", "patched.py", "patched.py", "orig.py", "orig.py", "patched.py"]
    over = result["rows"]["overhead"]
    assert over["measured_pairs"] == pytest.approx([0.6, 0.25, 0.0])
    assert over["measured"] == pytest.approx(0.25) and over["error"] == pytest.approx(0.0)
    assert result["rows"]["peak_bytes"]["measured"] == 1003 and result["rows"]["peak_bytes"]["baseline_measured"] == 1002
    assert not list(tmp_path.glob(".*memadvise-verify*"))  # the temporary scripts are gone


def test_one_pair_by_default(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(verify_mod, "_profile_subprocess",
                        lambda script, *a, env=None: calls.append(script) or {"step_time_s": 1.0, "peak_bytes": 1000,
                                                                    "activation_bytes": 400})
    plan_file, prepared = fake_inputs(tmp_path)
    result = verify_mod.verify(plan_file, prepared, tolerance=0.05)
    assert len(calls) == 2 and result["rows"]["overhead"]["measured"] == 0.0 and result["passed"]


def _verify_with_pairs(tmp_path, monkeypatch, pairs):
    steps = iter(pairs)

    def fake_profile(script, *a, env=None):
        fake_profile.n = getattr(fake_profile, "n", 0) + 1
        if len(pairs) > 1 and fake_profile.n == 1:  # the warm-up
            return {"step_time_s": 5.0, "peak_bytes": 1000, "activation_bytes": 400}
        if fake_profile.n % 2 == (0 if len(pairs) > 1 else 1):
            fake_profile.pair = next(steps)
        t = fake_profile.pair[0] if script.name.endswith("orig.py") else fake_profile.pair[1]
        return {"step_time_s": t, "peak_bytes": 1000, "activation_bytes": 400}

    monkeypatch.setattr(verify_mod, "_profile_subprocess", fake_profile)
    plan_file, prepared = fake_inputs(tmp_path)
    return verify_mod.verify(plan_file, prepared, tolerance=0.05, repeats=len(pairs))


def render(result) -> str:
    from rich.console import Console

    from memadvise.report.apply_report import render_verify
    from memadvise.schema.verify import VerifyResult

    console = Console(record=True, width=200)
    render_verify(console, VerifyResult.from_json(result))
    return console.export_text()


def test_pairs_of_both_signs_say_the_sign_is_not_measured(tmp_path, monkeypatch):
    result = _verify_with_pairs(tmp_path, monkeypatch, [(1.0, 1.03), (1.0, 0.98), (1.0, 1.01)])
    over = result["rows"]["overhead"]
    assert over["resolved"] is False and over["pairs_range"] == pytest.approx([-0.02, 0.03])
    assert "not resolved: the machine's run-to-run noise (±2.5%" in render(result)


def test_a_spread_larger_than_the_effect_is_not_resolved_though_every_pair_has_one_sign(tmp_path, monkeypatch):
    # every pair positive (+5/+40/+20%), but the pairs range over 35 points, more than
    # the +20% effect: not a measurement
    result = _verify_with_pairs(tmp_path, monkeypatch, [(1.0, 1.05), (1.0, 1.40), (1.0, 1.20)])
    over = result["rows"]["overhead"]
    assert over["resolved"] is False and over["noise"] == pytest.approx(0.175)
    assert over["verdict"].startswith("not resolved: the machine's run-to-run noise (±17.5%")
    assert "exceeds the effect (+20.0%)" in over["verdict"]
    assert "not resolved: the machine's run-to-run noise (±17.5%" in render(result)


def test_pairs_of_one_sign_resolve_the_change(tmp_path, monkeypatch):
    result = _verify_with_pairs(tmp_path, monkeypatch, [(1.0, 1.20), (1.0, 1.25), (1.0, 1.22)])
    over = result["rows"]["overhead"]
    assert over["resolved"] is True and over["measured"] == pytest.approx(0.22)
    text = render(result)
    assert "step time: resolved: +22.0%, larger than the run-to-run noise (±2.5%" in text and "too few" not in text


@pytest.mark.parametrize("pairs, said", [([(1.0, 1.2)], "one run each"), ([(1.0, 1.2), (1.0, 1.3)], "2 runs each")])
def test_fewer_than_three_pairs_are_not_a_verdict_on_noise(tmp_path, monkeypatch, pairs, said):
    result = _verify_with_pairs(tmp_path, monkeypatch, pairs)
    assert result["rows"]["overhead"]["resolved"] is None
    text = render(result)
    assert f"{said}, too few to tell a change" in text and "--verify-repeats 5" in text


def test_timing_verdict_from_synthetic_pairs():
    spread = verify_mod.timing_spread([0.10, -0.05, 0.30])
    assert spread["resolved"] is False and spread["noise"] == pytest.approx(0.175)
    assert spread["verdict"] == ("not resolved: the machine's run-to-run noise (±17.5%, pairs -5.0% to +30.0%) "
                                 "exceeds the effect (+10.0%)")
    assert verify_mod.timing_spread([0.30, 0.31, 0.29])["resolved"] is True
    assert verify_mod.timing_spread([0.3])["resolved"] is None


def test_a_plan_whose_code_did_not_run_is_not_an_accuracy_miss(tmp_path, monkeypatch):
    monkeypatch.setattr(verify_mod, "_profile_subprocess",
                        lambda script, *a, env=None: {"step_time_s": 1.0, "peak_bytes": 1418, "activation_bytes": 400})
    plan_file, prepared = fake_inputs(tmp_path)
    prepared.plan = replace(prepared.plan, actions=tuple(Action(f"h.{i}", "checkpoint") for i in range(5)))
    result = verify_mod.verify(plan_file, prepared, tolerance=0.05)
    assert result["applied"]["wrapped"] == 0 and not result["passed"]
    text = render(result)
    assert "0 of 5 units were checkpointed: the inserted code did not run" in text
    assert "peak off by" not in text


def test_the_units_the_patched_run_wrapped_are_read_back(tmp_path, monkeypatch):
    def fake_profile(script, *a, env=None):
        if env:  # the runtime's hook, as the patched script would run it
            with open(env["MEMADVISE_APPLIED_OUT"], "a") as f:
                f.write("h.0\nh.1\n")
        return {"step_time_s": 1.0, "peak_bytes": 1000, "activation_bytes": 400}

    monkeypatch.setattr(verify_mod, "_profile_subprocess", fake_profile)
    plan_file, prepared = fake_inputs(tmp_path)
    prepared.plan = replace(prepared.plan, actions=tuple(Action(f"h.{i}", "checkpoint") for i in range(2)))
    result = verify_mod.verify(plan_file, prepared, tolerance=0.05)
    assert result["applied"]["took_effect"] and result["passed"]
