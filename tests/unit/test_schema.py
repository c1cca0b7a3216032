"""File formats: the golden profile of schema version 1, and validation on read."""

import json
from pathlib import Path

import pytest

from memadvise._errors import InputFileError
from memadvise.analysis.simulator import Simulator
from memadvise.schema.plan import read_plan
from memadvise.schema.profile import SCHEMA_VERSION, read_profile

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "profile_v1.json"


def _shape(doc):
    """The structure a reader relies on: keys of the document and of its tables."""
    return {
        "top": sorted(doc),
        "summary": sorted(doc["summary"]),
        "unit": sorted(doc["units"][0]),
        "step": sorted(doc["steps"][0]),
        **{f"trace.{t}": sorted(doc["trace"][t]) for t in ("ops", "storages", "saves", "calls")},
        "trace": sorted(doc["trace"]),
    }


def test_golden_profile_reads_and_replays():
    profile = read_profile(GOLDEN)
    assert profile.doc["schema_version"] == SCHEMA_VERSION == 1
    base = Simulator(profile).baseline()
    assert base.peak_bytes == profile.summary["peak_bytes"]
    assert base.activation_bytes == profile.summary["activation_bytes"] == 2 * 4 * 16 * 4 + 4 * 2 * 4


def test_a_new_profile_has_the_golden_structure(tmp_path):
    """Removing or renaming what `profile` writes means bumping SCHEMA_VERSION and the
    golden file in the same commit; optional fields may be added within a version."""
    from memadvise.collect.api import profile_script

    root = Path(__file__).resolve().parents[2]
    fresh = profile_script(root / "sample_models" / "mlp.py", ["--depth", "2", "--width", "16", "--batch", "4", "--out", "2", "--steps", "4"],
                           warmup=1, steps=1, timing_steps=1, calibrate_overheads=False)
    new, golden = _shape(fresh.doc), _shape(json.loads(GOLDEN.read_text()))
    assert new.keys() == golden.keys()
    for table, keys in golden.items():
        assert set(keys) <= set(new[table]), (table, set(keys) - set(new[table]))


def test_corrupt_trace_is_refused(tmp_path):
    doc = json.loads(GOLDEN.read_text())
    doc["trace"]["saves"]["storage"][0] = 10**9
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputFileError, match="corrupt"):
        read_profile(path)


@pytest.mark.parametrize("replay", [["bad"], "short"])
def test_malformed_replay_times_are_refused(tmp_path, replay):
    doc = json.loads(GOLDEN.read_text())
    n = len(doc["trace"]["ops"]["name"])
    doc["trace"]["ops"]["replay_us"] = [1.5] * (n - 1) if replay == "short" else replay * n
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputFileError, match="replay_us"):
        read_profile(path)
    doc["trace"]["ops"]["replay_us"] = [None] * (n - 1) + [2.0]  # null where an op was not replayed
    path.write_text(json.dumps(doc))
    read_profile(path)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(schema_version=3), "newer"),
    (lambda d: d.update(format="memadvise-profile"), "not a memadvise plan"),
    (lambda d: d["plans"][0].update(rank="x"), "corrupt"),
    (lambda d: d["plans"][0]["actions"].append({"unit": "a b", "action": "checkpoint"}), "module path"),
])
def test_plan_validation(tmp_path, mutate, message):
    plan = {"format": "memadvise-plan", "schema_version": 1,
            "baseline": {"peak_bytes": 1, "activation_bytes": 1, "step_time_s": 1.0},
            "script": {"path": "/x.py", "sha256": "0"},
            "plans": [{"rank": 1, "strategy": "full", "actions": [{"unit": "blocks.0", "action": "checkpoint", "policy": None}],
                       "predicted": {"peak_bytes": 1, "activation_bytes": 1, "step_time_s": 1.0, "overhead": 0.0}}]}
    mutate(plan)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    with pytest.raises(InputFileError, match=message):
        read_plan(path)
