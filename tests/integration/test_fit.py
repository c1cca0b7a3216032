"""Capacity planning: peaks predicted at larger sizes from two small profiles, checked
against PyTorch's profiler at those sizes; the largest size said to fit does fit."""

import json

import pytest

from conftest import SAMPLES
from helpers import ROOT, cli, one_line_error
from memadvise.collect.api import profile_varied
from memadvise.planning.fit import fit, predict_peak
from oracle import measure_scripts

SCRIPTS = ROOT / "tests" / "scripts"

CASES = [
    # (name, script, args with the placeholder, vary, sizes to predict)
    ("gpt-batch", SAMPLES / "gpt.py", ["--n-layer", "2", "--width", "32", "--seq-len", "16", "--batch", "{batch}"], "batch=2,4", [8, 16]),
    ("gpt-seq", SAMPLES / "gpt.py", ["--n-layer", "2", "--width", "32", "--seq-len", "{seq}", "--batch", "2"], "seq=16,32", [64]),
    ("mlp-batch", SAMPLES / "mlp.py", ["--depth", "3", "--width", "64", "--batch", "{batch}"], "batch=8,16", [32, 64]),
    # oneDNN picks other convolution algorithms below batch 4, and Hugging Face squeezes
    # batch 1: profile from sizes in the regime of the targets
    ("resnet-batch", SAMPLES / "resnet.py", ["--width", "4", "--blocks", "1", "--stages", "2", "--image-size", "16", "--batch", "{batch}"], "batch=4,8", [16, 32]),
    ("hf-llama-batch", SCRIPTS / "hf_llama.py", ["--batch", "{batch}", "--seq", "16"], "batch=2,4", [8, 16]),
    ("hf-llama-seq", SCRIPTS / "hf_llama.py", ["--batch", "1", "--seq", "{seq}"], "seq=8,16", [32]),
]


@pytest.mark.parametrize("name, script, args, vary, targets", CASES, ids=[c[0] for c in CASES])
def test_predicted_peak_at_larger_sizes(tmp_path, name, script, args, vary, targets):
    profiles = profile_varied(script, [*args, "--steps", "8"], vary, out_dir=tmp_path, warmup=1, timing_steps=1,
                              steps=1, calibrate_overheads=False)
    dim = vary.split("=")[0]
    jobs = [(script, [a.replace("{" + dim + "}", str(t)) for a in args] + ["--steps", "4"]) for t in targets]
    measured = measure_scripts(jobs, warmup=2)
    for t, m in zip(targets, measured):
        assert "error" not in m, m
        pred = predict_peak(profiles, t)
        assert abs(pred - m["peak_bytes"]) <= 0.03 * m["peak_bytes"], (t, pred, m["peak_bytes"])


def test_fit_reads_the_keyword_inputs_of_a_hugging_face_model(tmp_path):
    # hf_llama.py calls model(input_ids=ids, labels=ids): no positional tensor at all
    args = ["--batch", "1", "--seq", "{seq}"]
    profiles = profile_varied(SCRIPTS / "hf_llama.py", [*args, "--steps", "8"], "seq=8,16", out_dir=tmp_path,
                              warmup=1, timing_steps=1, steps=1, calibrate_overheads=False)
    assert [p.doc["model"]["input_shapes"] for p in profiles] == [[["int64", [1, 8]], ["int64", [1, 8]]],
                                                                  [["int64", [1, 16]], ["int64", [1, 16]]]]
    doc = fit(profiles, device_memory="1GiB", target="seq=32")
    assert doc["dimension"] == "seq" and doc["target"]["value"] == 32
    measured = measure_scripts([(SCRIPTS / "hf_llama.py", ["--batch", "1", "--seq", "32", "--steps", "4"])], warmup=2)[0]
    pred = doc["target"]["peak_bytes_without_plan"]
    assert abs(pred - measured["peak_bytes"]) <= 0.03 * measured["peak_bytes"], (pred, measured["peak_bytes"])


def test_largest_batch_fits_and_one_more_does_not(tmp_path):
    args = ["--depth", "3", "--width", "64", "--batch", "{batch}"]
    profiles = profile_varied(SAMPLES / "mlp.py", [*args, "--steps", "6"], "batch=8,16", out_dir=tmp_path, warmup=1,
                              timing_steps=1, steps=1, calibrate_overheads=False)
    cap = 400 * 1024
    doc = fit(profiles, device_memory=f"{cap}B")
    none = next(r for r in doc["strategies"] if r["strategy"] == "none")
    best = none["largest"]
    assert best > 16
    runs = measure_scripts([(SAMPLES / "mlp.py", [a.replace("{batch}", str(b)) for a in args] + ["--steps", "4"])
                            for b in (best, best + 1)])
    assert runs[0]["peak_bytes"] <= cap < runs[1]["peak_bytes"], (best, runs[0]["peak_bytes"], runs[1]["peak_bytes"])
    optimal = next(r for r in doc["strategies"] if r["strategy"] == "budget-optimal")
    assert optimal["largest"] >= best


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    out = tmp_path_factory.mktemp("varied")
    args = ["--depth", "2", "--width", "32", "--batch", "{batch}", "--steps", "5"]
    profile_varied(SAMPLES / "mlp.py", args, "batch=4,8", out_dir=out, warmup=1, timing_steps=1, steps=1,
                   calibrate_overheads=False)
    return out


def test_fit_cli_json_and_target(varied):
    r = cli("fit", "--profile", varied / "profile.batch-4.json", "--profile", varied / "profile.batch-8.json",
            "--device-memory", "L4", "--target", "batch=4096", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["dimension"] == "batch" and doc["profiled"] == [4, 8]
    assert "L4" in doc["device"]["description"] and doc["device"]["usable_bytes"] < 23_034 * 2**20
    assert doc["target"]["value"] == 4096
    assert {r["strategy"] for r in doc["strategies"]} >= {"none", "full", "budget-optimal"}


@pytest.mark.parametrize("args, message", [
    (["--device-memory", "H900-1TB"], "unknown device 'H900-1TB'; give a size (24GiB) or one of: H200, H100-80GB"),
    (["--device-memory", "-3GB"], "unknown device"),
    (["--device-memory", "24GiB", "--target", "seq=128"], "the profiles vary 'batch'"),
    (["--device-memory", "24GiB", "--target", "batch"], "not NAME=VALUE"),
])
def test_fit_bad_input(varied, args, message):
    r = cli("fit", "--profile", varied / "profile.batch-4.json", "--profile", varied / "profile.batch-8.json", *args)
    assert r.exit_code == 2
    assert message in one_line_error(r.stderr)


def test_fit_refuses_mixed_scripts_and_unused_dimension(varied, tmp_path):
    r = cli("profile", "--vary", "batch=1,2", SCRIPTS / "grad_accum.py", "--out", tmp_path / "p.json", "--steps", "1",
            "--timing-steps", "0", "--", "{batch}")
    # grad_accum.py ignores its arguments: the inputs do not change with "batch"
    assert r.exit_code == 0, r.output
    r = cli("fit", "--profile", tmp_path / "profile.batch-1.json", "--profile", tmp_path / "profile.batch-2.json",
            "--device-memory", "1GiB")
    assert r.exit_code == 2 and "same shapes" in one_line_error(r.stderr)
    r = cli("fit", "--profile", varied / "profile.batch-4.json", "--profile", tmp_path / "profile.batch-2.json",
            "--device-memory", "1GiB")
    assert r.exit_code == 2 and "different scripts" in one_line_error(r.stderr)


def test_profile_vary_needs_the_placeholder(tmp_path):
    r = cli("profile", "--vary", "batch=1,2", SAMPLES / "mlp.py", "--out", tmp_path / "p.json", "--", "--batch", "8")
    assert r.exit_code == 2 and "{batch}" in one_line_error(r.stderr)
    r = cli("profile", "--vary", "batch=8", SAMPLES / "mlp.py", "--out", tmp_path / "p.json")
    assert r.exit_code == 2 and "two or more" in one_line_error(r.stderr)
