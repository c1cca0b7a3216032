"""The profile's peak and activation memory against an independent measurement of the
same steady-state step: PyTorch's own profiler memory timeline (tests/oracle.py, run in
another process)."""

import pytest

from conftest import SAMPLES, SMALL
from memadvise.collect.api import profile_script
from oracle import measure_script

ROOT = SAMPLES.parent
SCRIPTS = ROOT / "tests" / "scripts"

CASES = [
    ("mlp", SAMPLES / "mlp.py", SMALL["mlp"], 0.02),
    ("gpt", SAMPLES / "gpt.py", SMALL["gpt"], 0.02),
    ("resnet", SAMPLES / "resnet.py", SMALL["resnet"], 0.02),
    ("grad_accum", SCRIPTS / "grad_accum.py", [], 0.02),
    ("autocast", SCRIPTS / "autocast_bf16.py", [], 0.02),
    ("shared_module", SCRIPTS / "shared_module.py", [], 0.02),
    ("custom_function", SCRIPTS / "custom_function.py", [], 0.03),  # oracle counts the loss buffer
    ("hf_llama", SCRIPTS / "hf_llama.py", [], 0.02),
]


@pytest.mark.parametrize("name, script, args, act_tol", CASES, ids=[c[0] for c in CASES])
def test_peak_and_activation_match_the_profiler_timeline(name, script, args, act_tol, tmp_path):
    # memory only: the time probes after the run (calibration) change no byte of it
    profile = profile_script(script, args, warmup=1, timing_steps=1, steps=2, out=tmp_path / "p.json",
                             calibrate_overheads=False)
    oracle = measure_script(str(script), args, warmup=2)
    s = profile.summary
    assert abs(s["peak_bytes"] - oracle["peak_bytes"]) <= 0.02 * oracle["peak_bytes"], (s["peak_bytes"], oracle)
    expected_act = oracle["activation_forward_made_bytes"]
    assert abs(s["activation_bytes"] - expected_act) <= act_tol * expected_act, (s["activation_bytes"], oracle)
    assert (tmp_path / "p.json").exists()


@pytest.mark.parametrize("depth, width, batch, out", [(4, 128, 32, 16), (3, 96, 24, 5)])
def test_mlp_activation_equals_the_closed_formula(depth, width, batch, out):
    args = ["--depth", depth, "--width", width, "--batch", batch, "--out", out, "--steps", 8]
    profile = profile_script(SAMPLES / "mlp.py", [str(a) for a in args], warmup=1, timing_steps=0, steps=2,
                             calibrate_overheads=False)
    assert profile.summary["activation_bytes"] == depth * batch * width * 4 + batch * out * 4
    by_unit = {u["name"]: u for u in profile.units}
    for i in range(depth):  # each block saves its ReLU output
        assert by_unit[f"blocks.{i}"]["activation_bytes"] >= batch * width * 4


def test_script_without_optimizer_marks_steps():
    profile = profile_script(SCRIPTS / "manual_step.py", [], warmup=1, timing_steps=1, steps=2, calibrate_overheads=False)
    assert len(profile.doc["steps"]) == 2
    assert profile.summary["activation_bytes"] > 0


def test_profile_records_units_model_site_and_environment():
    profile = profile_script(SAMPLES / "gpt.py", SMALL["gpt"], warmup=1, timing_steps=1, steps=2, calibrate_overheads=False)
    doc = profile.doc
    assert doc["model"]["expression"] == "model" and doc["model"]["function"] == "main"
    assert doc["environment"]["torch"] and doc["environment"]["device"]["type"] == "cpu"
    assert doc["nvml"]["available"] is False and doc["nvml"]["reason"]
    units = {u["name"]: u for u in profile.units}
    assert units["blocks.0"]["uses_rng"] and units["blocks.0.attn.attn_dropout"]["uses_rng"]
    assert units["blocks.0"]["calls"] == 1 and units["blocks.0"]["fwd_time_ms"] > 0
    ops = doc["trace"]["ops"]
    names = doc["trace"]["strings"]
    assert {"mm", "addmm", "bmm", "_softmax"} & {names[i] for i in ops["name"]}
    assert sum(ops["flops"]) > 0
    assert len(doc["trace"]["saves"]["storage"]) > 0


def test_batchnorm_is_flagged():
    profile = profile_script(SAMPLES / "resnet.py", SMALL["resnet"], warmup=1, timing_steps=0, steps=1, calibrate_overheads=False)
    flagged = [u["name"] for u in profile.units if u["batchnorm_training"]]
    assert any(n.endswith("bn1") for n in flagged)
    assert all(u["mutates_state"] for u in profile.units if u["type"].startswith("BatchNorm"))
