"""The profile's sections are schema records: ``Record.from_json(section).to_json()`` gives
the section back key for key, in the same order and with the same values (nulls
included), for the sample profiles of tests/data and for a profile made now."""

import json
import textwrap
from pathlib import Path

import pytest

from memadvise.schema.profile import (DistributedInfo, Environment, ModelInfo, OptimizerInfo, Script, Settings,
                                      StepRecord, Summary, Vary)

DATA = Path(__file__).resolve().parents[1] / "data"
SECTIONS = {
    "summary": Summary,
    "script": Script,
    "settings": Settings,
    "environment": Environment,
    "model": ModelInfo,
    "optimizer": OptimizerInfo,
    "distributed": DistributedInfo,
}


def same(section, record_type) -> bool:
    return json.dumps(record_type.from_json(section).to_json()) == json.dumps(section)


def assert_sections_round_trip(doc: dict) -> None:
    for key, record_type in SECTIONS.items():
        if key == "optimizer" and doc[key] is None:
            continue
        assert same(doc[key], record_type), key
    for step in doc["steps"]:
        assert same(step, StepRecord), step["index"]


@pytest.mark.parametrize("name", ["gpt", "resnet"])
def test_every_section_of_a_sample_profile_round_trips(name):
    doc = json.loads((DATA / f"profile_{name}.json").read_text(encoding="utf-8"))
    assert_sections_round_trip(doc)
    assert "probe" in doc["optimizer"] and "run_id" in doc["distributed"]  # added after build, kept


def test_sections_other_stages_fill_round_trip():
    # on CUDA, with the allocator read, in a merged multi-rank profile, after --vary
    step = {"index": 3, "peak_bytes": 10, "by_category_at_peak": {"parameter": 10}, "peak_op": "mm",
            "peak_phase": "forward", "peak_call": 0, "peak_op_index": 5, "activation_bytes": 4, "start_bytes": 2,
            "n_ops": 9, "wall_time_s": 0.5, "instrumentation_s": 0.25,
            "cuda": {"max_memory_allocated": 12, "max_memory_reserved": 16, "allocated_at_start": 2},
            "untracked_bytes": 0, "allocator": {"source": "cuda", "max_allocated_bytes": 12,
                                                 "allocated_at_start_bytes": 2},
            "nvml": {"peak_used_bytes": 99}}
    assert same(step, StepRecord)
    env = {"torch": "2.13.0", "torch_build": "2.13.0+cu126", "python": "3.11.7", "platform": "p", "hostname": "h",
           "cpu_count": 16, "device": {"type": "cuda", "index": 0, "name": "H100", "total_memory_bytes": 80},
           "cuda": {"version": "12.6", "capability": [9, 0]}}
    assert same(env, Environment)
    dist = {"rank": 0, "world_size": 2, "backend": "gloo", "ranks": [{"rank": 0, "peak_bytes": 1}],
            "run_id": "r", "local_rank": 0, "worst_rank": 1, "merged": True}
    assert same(dist, DistributedInfo)
    assert same({"found": False}, ModelInfo)
    for vary in ({"name": "batch", "value": 8}, {"name": "batch", "value": 8, "predicted": True}):
        settings = {"warmup": 1, "steps": 2, "timing_steps": 3, "vary": vary}
        assert same(settings, Settings)
    assert Settings.from_json(settings).vary == Vary(name="batch", value=8, predicted=True)


def test_minor_faults_are_kept_as_recorded():
    doc = json.loads((DATA / "profile_gpt.json").read_text(encoding="utf-8"))
    for faults in (2, 2.5, None):
        summary = dict(doc["summary"], minor_faults_per_step=faults)
        assert Summary.from_json(summary).to_json()["minor_faults_per_step"] == faults
        assert same(summary, Summary)


SCRIPT = textwrap.dedent("""
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(4, 8)
    for _ in range(4):
        opt.zero_grad()
        model(x).mean().backward()
        opt.step()
""")


@pytest.mark.slow
def test_a_fresh_profile_round_trips(tmp_path):
    from memadvise.collect.api import profile_script

    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    doc = profile_script(path, [], warmup=1, steps=1, timing_steps=1, calibrate_overheads=False).doc
    assert doc["model"]["found"] and doc["model"]["frames"] and doc["optimizer"]["class"] == "SGD"
    assert_sections_round_trip(doc)
