"""`apply --verify` reports the independent measurement (an instrument that is not
memadvise's recorder, in its own process) as "measured", keeps memadvise's own reading
beside it, and says in words when the independent measurement failed."""

import io
import json
import sys
from types import SimpleNamespace

from rich.console import Console

import memadvise.apply.verify as verify_mod
from memadvise.report.apply_report import render_verify
from memadvise.schema.plan import AppliedPlan, Prediction
from memadvise.schema.profile import Settings
from memadvise.schema.verify import VerifyResult


def fake_inputs(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("print('original')\n")
    plan = AppliedPlan(rank=1, strategy="full", actions=(),
                       predicted=Prediction(peak_bytes=1000, activation_bytes=400, step_time_s=1.0, overhead=0.25))
    prepared = SimpleNamespace(script=script, source=script.read_text(), plan=plan,
                               patch=SimpleNamespace(new_source="print('patched')\n"))
    plan_file = SimpleNamespace(doc={}, settings=Settings(), world_size=1, script={"args": [], "cwd": str(tmp_path)})
    return plan_file, prepared


def _own(script, *a, env=None):
    peak = 990 if script.name.endswith("patched.py") else 2000
    return {"step_time_s": 1.0, "peak_bytes": peak, "activation_bytes": 400}


def _render(result) -> str:
    out = io.StringIO()
    render_verify(Console(file=out, width=100, force_terminal=False), VerifyResult.from_json(result))
    return out.getvalue()


def test_the_independent_peak_is_the_measured_one(tmp_path, monkeypatch):
    seen = []

    def independent(script, args, cwd, warmup, timeout, nproc=1):
        seen.append((script.name.rsplit("-", 1)[1], warmup))
        peak = 1040 if script.name.endswith("patched.py") else 2100
        return {"peak_bytes": peak, "method": "torch.cuda.max_memory_allocated"}

    monkeypatch.setattr(verify_mod, "_profile_subprocess", _own)
    monkeypatch.setattr(verify_mod, "_independent_subprocess", independent)
    plan_file, prepared = fake_inputs(tmp_path)
    result = verify_mod.verify(plan_file, prepared, tolerance=0.05)
    peak = result["rows"]["peak_bytes"]
    assert seen == [("orig.py", 2), ("patched.py", 2)]
    assert (peak["measured"], peak["baseline_measured"]) == (1040, 2100)
    assert (peak["memadvise"], peak["memadvise_baseline"]) == (990, 2000)
    assert abs(peak["error"] - 40 / 1040) < 1e-12 and result["passed"]
    text = _render(result)
    assert "torch.cuda.max_memory_allocated" in text
    assert "memadvise's own reading of the patched run: 990 B (-4.8% against the measurement)" in text


def test_a_failed_independent_measurement_is_said(tmp_path, monkeypatch):
    def fails(script, *a, **k):
        raise verify_mod.ScriptError(f"the independent measurement of {script.name} failed: boom")

    monkeypatch.setattr(verify_mod, "_profile_subprocess", _own)
    monkeypatch.setattr(verify_mod, "_independent_subprocess", fails)
    plan_file, prepared = fake_inputs(tmp_path)
    result = verify_mod.verify(plan_file, prepared, tolerance=0.05)
    peak = result["rows"]["peak_bytes"]
    assert peak["measured"] == 990 and peak["instrument"] == "memadvise" and "boom" in peak["independent_error"]
    assert "not an independent measurement" in _render(result)


def test_the_subprocess_takes_the_highest_rank(tmp_path, monkeypatch):
    calls = []

    def run(cmd, **kw):
        calls.append(cmd)
        lines = [json.dumps({"rank": r, "peak_bytes": 100 + r}) for r in range(2)]
        return SimpleNamespace(returncode=0, stdout="noise\n" + "\n".join(lines) + "\n", stderr="")

    monkeypatch.setattr(verify_mod.subprocess, "run", run)
    got = verify_mod._independent_subprocess(tmp_path / "s.py", ["--x"], str(tmp_path), 3, None, nproc=2)
    assert got["peak_bytes"] == 101
    assert calls[0][:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert calls[0][-5:] == ["memadvise.collect.independent", "--warmup", "3", str(tmp_path / "s.py"), "--x"]


def test_a_compile_plans_activations_are_said_unmeasured(tmp_path, monkeypatch):
    """memadvise's recorder sees a compiled model as eager: its activation reading is not the
    plan's, so verify says so instead of reporting a miss."""
    from dataclasses import replace

    from memadvise.schema.plan import CompileChoice

    def independent(script, *a, **k):
        return {"peak_bytes": 1000 if script.name.endswith("patched.py") else 2000, "method": "profiler"}

    monkeypatch.setattr(verify_mod, "_profile_subprocess", _own)
    monkeypatch.setattr(verify_mod, "_independent_subprocess", independent)
    plan_file, prepared = fake_inputs(tmp_path)
    prepared.plan = replace(prepared.plan, strategy="compile-budget-0.5", compile=CompileChoice(budget=0.5, saved_bytes=1))
    result = verify_mod.verify(plan_file, prepared, tolerance=0.05)
    act = result["rows"]["activation_bytes"]
    assert act["error"] is None and "cannot see inside torch.compile" in act["unmeasured"]
    assert result["passed"]
    text = _render(result)
    assert "activations: not measured: memadvise's recorder cannot see inside torch.compile's graphs" in text
