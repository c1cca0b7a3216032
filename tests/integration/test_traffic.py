"""Traffic strategies: predictions produced from the profile's measurements, patches at
the optimizer's site that run and are verified, and no change of numerics unless asked
for. Whether a predicted speed-up has the measured sign is a timing: benchmarks/traffic.py
measures it (and benchmarks/probe_checks.py the probes' timings), never a test."""

import json
import math
import platform
import shutil
import subprocess
import sys

import pytest

from helpers import ROOT, cli, json_out
from memadvise.analysis.traffic import traffic_report
from memadvise.schema.profile import read_profile

SCRIPTS = ROOT / "tests" / "scripts"


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("traffic")
    shutil.copy(SCRIPTS / "many_params.py", root / "train.py")
    r = cli("profile", root / "train.py", "--out", root / "profile.json", "--steps", "2", "--timing-steps", "3")
    assert r.exit_code == 0, r.output
    return root


def suggest(ws, *extra):
    r = cli("suggest", "--profile", ws / "profile.json", "--out", ws / "plan.json", "--json", *extra)
    assert r.exit_code == 0, r.output
    return json_out(r)


def test_traffic_plans_are_predicted(ws):
    doc = suggest(ws)
    plans = {p["strategy"]: p for p in doc["traffic"]["plans"]}
    assert {"optimizer-fused", "optimizer-foreach", "set-to-none", "compile"} <= set(plans)
    for p in plans.values():
        assert p["predicted"]["step_time_s"] > 0 and p["predicted"]["peak_bytes"] > 0 and p["caveat"]
    # the for-loop AdamW over 300 small tensors: foreach's whole-model temporaries raise
    # the optimizer step's memory (measured on copies: bytes, not a timing)
    assert plans["optimizer-foreach"]["predicted"]["peak_bytes"] > doc["baseline"]["peak_bytes"]
    unavailable = {u["strategy"]: u["reason"] for u in doc["traffic"]["unavailable"]}
    assert "no convolution" in unavailable["channels-last"]
    assert "--allow-precision" in unavailable["autocast-bfloat16"]
    assert not any(p["changes_numerics"] for p in plans.values())


def test_a_step_recompute_cannot_help_says_so(ws):
    # 75 KiB of activations under a 2.5 MiB peak of parameters, gradients and AdamW state:
    # every recompute plan is predicted at or above the baseline's peak
    doc = suggest(ws)
    assert doc["recommendation"] is None
    assert all(p["predicted"]["peak_bytes"] >= doc["baseline"]["peak_bytes"] for p in doc["plans"])
    note = next(n for n in doc["notes"] if n.startswith("no plan lowers the peak"))
    assert "optimizer state" in note and "recompute cannot help" in note


def test_mixed_precision_only_when_asked(ws):
    doc = suggest(ws, "--allow-precision")
    plans = {p["strategy"]: p for p in doc["traffic"]["plans"]}
    assert plans["autocast-bfloat16"]["changes_numerics"] is True
    assert "numerics" in plans["autocast-bfloat16"]["caveat"]
    r = cli("apply", "--plan", ws / "plan.json", "--traffic", "autocast-bfloat16", "--patch", ws / "amp.patch")
    assert r.exit_code == 0, r.output
    diff = (ws / "amp.patch").read_text()
    assert "changes numerics" in diff and "torch.autocast" in diff


def test_fused_optimizer_plan_is_applied_and_runs(ws):
    """The plan is produced, written as a patch at the optimizer's site, and the patched
    script runs (its speed-up's sign, measured by apply --verify: benchmarks/traffic.py)."""
    suggest(ws)
    r = cli("apply", "--plan", ws / "plan.json", "--traffic", "optimizer-fused", "--patch", ws / "fused.patch")
    assert r.exit_code == 0, r.output
    diff = (ws / "fused.patch").read_text()
    # the constructor call itself takes the flag (its checks run), and the header says so
    constructor = "opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=False, fused=True)"
    assert f"\n+{constructor}\n" in diff
    assert "the AdamW(...) call above now passes fused=True" in diff
    script, backup = ws / "train.py", ws / "train.py.orig"
    r = cli("apply", "--plan", ws / "plan.json", "--traffic", "optimizer-fused", "--write")
    try:
        assert r.exit_code == 0, r.output
        assert constructor in script.read_text()
        run = subprocess.run([sys.executable, str(script), "3"], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
    finally:
        backup.replace(script)


def test_profile_carries_what_the_step_time_model_needs(ws):
    """Replays of the matmuls' own signatures, the autograd node count, the optimizer
    measured on copies: the model's step time uses them, not the step's measured ops."""
    from memadvise.analysis.traffic import predict_step_time

    profile = read_profile(ws / "profile.json")
    ops = profile.trace["ops"]
    names = [profile.trace["strings"][k] for k in ops["name"]]
    replayed = [n for n, r in zip(names, ops["replay_us"]) if r is not None]
    # many_params: 150 Linear layers, each an addmm forward and two mm backward (one for
    # the first layer, whose input needs no gradient)
    assert replayed and set(replayed) <= {"addmm", "mm"} and names.count("addmm") == replayed.count("addmm")
    assert all(r > 0 for r in ops["replay_us"] if r is not None)
    assert profile.trace["backward_nodes"] >= 150  # an AddmmBackward per Linear, at least
    assert "autograd_record_us" in profile.doc["calibration"]
    # the step's allocations replayed for each change that reshapes them (gradients zeroed
    # in place: set_to_none applies)
    if platform.system() == "Linux":
        assert set(profile.doc["calibration"]["fault_replay"]) == {"recorded", "autocast", "compile", "set_to_none"}
    model = predict_step_time(profile)
    assert model["optimizer_from_probe"] and model["replayed_ops"] == len(replayed)
    probe = profile.doc["optimizer"]["probe"]
    assert model["optimizer_s"] == probe["variants"][probe["current"]]["time_s"]  # the copies' time, not the ops'


def test_roofline_report():
    profile = read_profile(ROOT / "tests" / "data" / "profile_v1.json")
    doc = traffic_report(profile)
    assert 0 <= doc["memory_bound_share"] <= 1
    assert doc["bytes_moved"] > 0 and doc["chains"]
    assert all(c["time_at_bandwidth_s"] >= 0 for c in doc["chains"])


def test_plan_with_unknown_traffic_change_is_refused(ws, tmp_path):
    doc = suggest(ws)
    doc["traffic"]["plans"][0]["change"] = {"optimizer": "os.system('x')"}
    (tmp_path / "evil.json").write_text(json.dumps(doc))
    r = cli("apply", "--plan", tmp_path / "evil.json", "--traffic", doc["traffic"]["plans"][0]["strategy"])
    assert r.exit_code == 2 and "not one memadvise makes" in r.stderr


def test_show_traffic(ws):
    r = cli("show", "--profile", ws / "profile.json", "--traffic", "--json")
    assert r.exit_code == 0, r.output
    doc = json_out(r)
    assert doc["chains"] and doc["bytes_moved"] > 0 and doc["model_step_time_s"] > 0
    assert doc["step_time_s"] > 0 and 0 <= doc["memory_bound_share"] <= 1
    r = cli("show", "--profile", ws / "profile.json", "--traffic")
    assert r.exit_code == 0 and "memory-bound ops" in r.output and "traffic model" in r.output, r.output


def test_probe_compile_measures_what_fusion_does_not_price(tmp_path):
    """`profile --probe-compile` compiles a tiny model and a dropout on this device; the
    compile plan adds the compiled graph's fixed cost and the random numbers' difference."""
    shutil.copy(SCRIPTS / "many_params.py", tmp_path / "train.py")
    r = cli("profile", tmp_path / "train.py", "--out", tmp_path / "p.json", "--steps", "1", "--timing-steps", "2",
            "--probe-compile", "--", "6")
    assert r.exit_code == 0, r.output
    probe = read_profile(tmp_path / "p.json").doc["calibration"]["compile_probe"]
    assert "error" not in probe, probe
    # every figure measured (their sizes are timings: benchmarks/probe_checks.py)
    assert all(isinstance(probe[k], float) and math.isfinite(probe[k]) for k in (
        "graph_overhead_us", "rng_extra_ns_per_element", "eager_tiny_us", "compiled_tiny_us"))
    plans = {p["strategy"]: p for p in json_out(cli("suggest", "--profile", tmp_path / "p.json", "--out",
                                                    tmp_path / "plan.json", "--json"))["traffic"]["plans"]}
    assert any("--probe-compile" in n and "µs per compiled" in n for n in plans["compile"]["notes"])
