"""Typed records: what the readers of schema/ hand the stages, built from the documents
of tests/data (the sample models' profiles and their golden plan files)."""

import json
from pathlib import Path

import pytest

from memadvise._errors import InputFileError
from memadvise.schema.actions import Action
from memadvise.schema.plan import AppliedPlan, PlanEntry, PlanFile, Prediction, read_plan, select_entry, select_plan
from memadvise.schema.profile import Profile, UnitRecord, read_profile
from memadvise.schema.verify import VerifyResult, read_verify

DATA = Path(__file__).resolve().parents[1] / "data"
PROFILES = [DATA / "profile_v1.json", DATA / "profile_gpt.json", DATA / "profile_resnet.json"]
PLANS = sorted((DATA / "golden").glob("*/plan.json"))


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_profile_records_hold_the_documents_figures(path):
    profile = read_profile(path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    s = profile.records.summary
    assert (s.peak_bytes, s.activation_bytes, s.step_time_s) == (
        doc["summary"]["peak_bytes"], doc["summary"]["activation_bytes"], doc["summary"]["step_time_s"])
    assert dict(s.by_category_at_peak) == doc["summary"]["by_category_at_peak"]
    assert sum(s.by_category_at_peak.values()) == s.peak_bytes
    assert s.peak_phase == doc["summary"]["peak_phase"]
    env = profile.records.environment
    assert (env.torch, env.device.type, env.device.name) == (
        doc["environment"]["torch"], doc["environment"]["device"]["type"], doc["environment"]["device"]["name"])
    assert profile.device_type == env.device.type
    script = profile.records.script
    assert (script.path, script.args, script.sha256) == (
        doc["script"]["path"], tuple(doc["script"]["args"]), doc["script"]["sha256"])
    assert script.file_name == Path(doc["script"]["path"]).name
    units = profile.records.units
    assert [u.name for u in units] == [u["name"] for u in doc["units"]]
    assert all(isinstance(u, UnitRecord) for u in units)
    assert [u.activation_bytes for u in units] == [u["activation_bytes"] for u in doc["units"]]
    assert profile.unit_index() == {u["name"]: i for i, u in enumerate(doc["units"])}
    steps = profile.records.steps
    assert [(st.index, st.peak_bytes, st.activation_bytes) for st in steps] == [
        (st["index"], st["peak_bytes"], st["activation_bytes"]) for st in doc["steps"]]
    assert max(st.peak_bytes for st in steps) == s.peak_bytes
    settings = profile.records.settings
    assert (settings.warmup, settings.steps, settings.vary) == (doc["settings"]["warmup"], doc["settings"]["steps"], None)


def test_records_are_read_only_snapshots():
    profile = read_profile(PROFILES[0])
    with pytest.raises(AttributeError):
        profile.records.summary.peak_bytes = 0  # type: ignore[misc]
    doc = json.loads(PROFILES[0].read_text(encoding="utf-8"))
    doc["summary"]["peak_bytes"] += 1
    assert Profile(doc=doc).records.summary.peak_bytes == profile.records.summary.peak_bytes + 1


def test_a_malformed_section_is_refused_at_read_time(tmp_path):
    doc = json.loads(PROFILES[0].read_text(encoding="utf-8"))
    del doc["environment"]["device"]
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(InputFileError, match="is corrupt"):
        read_profile(bad)


@pytest.mark.parametrize("path", PLANS, ids=lambda p: p.parent.name)
def test_plan_entries_hold_the_documents_plans(path):
    plan_file = read_plan(path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert len(plan_file.entries) == len(doc["plans"])
    for entry, raw in zip(plan_file.entries, doc["plans"]):
        assert isinstance(entry, PlanEntry)
        assert (entry.rank, entry.strategy, entry.pareto) == (raw["rank"], raw["strategy"], raw["pareto"])
        assert entry.actions == tuple(Action.from_json(a) for a in raw["actions"])
        assert entry.restore_buffers == {a["unit"] for a in raw["actions"] if a["restore_buffers"]}
        assert entry.predicted.to_json() == raw["predicted"]  # the record loses nothing of the prediction
        assert [r.op for r in entry.recompute or ()] == [r["op"] for r in raw.get("recompute") or []]
    assert plan_file.baseline_figures == Prediction.from_json(doc["baseline"])
    assert [e.strategy for e in plan_file.traffic_entries] == [e["strategy"] for e in doc["traffic"]["plans"]]


def test_select_entry_is_the_plan_select_plan_chooses():
    plan_file = read_plan(PLANS[0])
    last = plan_file.entries[-1]
    assert select_entry(plan_file).rank == 1
    assert select_entry(plan_file, strategy=last.strategy) == last
    assert select_entry(plan_file, rank=last.rank).strategy == select_plan(plan_file, rank=last.rank)["strategy"]


def test_verify_result_reads_the_apply_output(tmp_path):
    result = {
        "plan": {"rank": 2, "strategy": "full"},
        "rows": {
            "peak_bytes": {"predicted": 17412, "measured": 17500, "baseline_measured": 46084, "error": 0.005,
                           "instrument": "torch.cuda.max_memory_allocated", "memadvise": 17480},
            "activation_bytes": {"predicted": 4096, "measured": 4096, "baseline_measured": 39936, "error": 0.0},
            "overhead": {"predicted": 0.3, "measured": 0.1, "error": 0.2, "measured_pairs": [0.6, 0.1, -0.05],
                         "pairs_range": [-0.05, 0.6], "resolved": False},
        },
        "baseline_step_time_s": 0.002, "patched_step_time_s": 0.0022, "tolerance": 0.05, "passed": True,
    }
    path = tmp_path / "verify.json"
    path.write_text(json.dumps({"verify": result}), encoding="utf-8")
    got = read_verify(path)
    assert isinstance(got, VerifyResult)
    assert (got.plan_rank, got.plan_strategy, got.passed, got.tolerance) == (2, "full", True, 0.05)
    assert (got.peak.measured, got.peak.memadvise, got.peak.memadvise_baseline) == (17500, 17480, None)
    assert got.overhead.measured_pairs == (0.6, 0.1, -0.05) and got.overhead.pairs_range == (-0.05, 0.6)
    assert got.overhead.resolved is False


def test_a_plans_relative_profile_path_is_found_from_where_suggest_ran(tmp_path, monkeypatch):
    """A plan copied to another directory still finds its profile: a relative path is
    looked up here first, then in the directory the plan was made in (``script.cwd``)."""
    made_in = tmp_path / "project"
    (made_in / ".memadvise").mkdir(parents=True)
    (made_in / ".memadvise" / "profile.json").write_text("{}")
    doc = json.loads(PLANS[0].read_text(encoding="utf-8"))
    doc["profile"] = {"path": ".memadvise/profile.json"}
    doc["script"]["cwd"] = str(made_in)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    plan_file = PlanFile.from_doc(doc, elsewhere / "plan.json")
    assert plan_file.profile_path == str(made_in / ".memadvise" / "profile.json")
    (elsewhere / ".memadvise").mkdir()
    (elsewhere / ".memadvise" / "profile.json").write_text("{}")  # one here is taken first
    assert plan_file.profile_path == ".memadvise/profile.json"


def test_an_applied_plan_writes_the_plan_files_action_form():
    plan_file = read_plan(PLANS[0])
    entry = plan_file.entries[0]
    applied = AppliedPlan(rank=entry.rank, strategy=entry.strategy, actions=entry.actions, predicted=entry.predicted,
                          restore_buffers=entry.restore_buffers, exact=True)
    doc = applied.to_json()
    assert doc["actions"] == [{k: a.get(k) for k in ("unit", "action", "policy", "keep", "restore_buffers")}
                              for a in plan_file.plans[0]["actions"]]
    assert doc["predicted"]["exact"] is True and doc["predicted"]["peak_bytes"] == entry.predicted.peak_bytes
