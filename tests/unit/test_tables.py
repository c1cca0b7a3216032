"""The notebook tables (``memadvise.load_profile``, ``memadvise.load_plan``) on the sample
GPT's profile and plan file, and ``show --csv``."""

import json

import pandas as pd
import pytest

import memadvise
from helpers import ROOT, cli, json_out
from memadvise.report.tables import (
    ACTION_COLUMNS, CATEGORY_COLUMNS, OP_COLUMNS, PLAN_COLUMNS, TRAFFIC_COLUMNS, UNIT_COLUMNS,
)
from memadvise.schema.categories import CATEGORY_NAMES

GPT = ROOT / "tests" / "data" / "profile_gpt.json"
GPT_PLAN = ROOT / "tests" / "data" / "golden" / "gpt" / "plan.json"


@pytest.fixture(scope="module")
def gpt():
    return memadvise.load_profile(GPT)


def test_the_op_table_has_one_row_per_recorded_op(gpt):
    doc = json.loads(GPT.read_text())
    ops = doc["trace"]["ops"]
    assert len(gpt.ops) == len(ops["name"]) == 689
    assert list(gpt.ops.columns) == list(OP_COLUMNS) and gpt.ops.index.name == "op"
    assert gpt.ops["name"].tolist() == [doc["trace"]["strings"][i] for i in ops["name"]]
    assert gpt.ops["flops"].tolist() == ops["flops"] and gpt.ops["out_bytes"].tolist() == ops["out_bytes"]
    assert gpt.ops["time_us"].sum() == pytest.approx(sum(ops["dur_us"]) * doc["trace"]["time_scale"])
    # every op of a GPT block's MLP, forward and backward, is attributed to it
    mlp = gpt.ops[gpt.ops["module"].str.startswith("blocks.0.mlp")]
    assert {"forward", "backward"} <= set(mlp["phase"]) and "addmm" in set(mlp["name"])


def test_the_category_table_at_the_peak_sums_to_the_profiles_peak_exactly(gpt):
    summary = json.loads(GPT.read_text())["summary"]
    at_peak = gpt.categories_at_peak()
    assert int(at_peak.sum()) == summary["peak_bytes"] == 584_828
    # profiles recorded before the untracked category (CUDA allocator readings) lack it
    assert at_peak.to_dict() == {"untracked": 0, **summary["by_category_at_peak"]}
    cats = gpt.categories
    assert list(cats.columns) == list(CATEGORY_COLUMNS) and len(cats) == len(gpt.ops)
    assert int(cats["peak"].sum()) == 1 and int(cats["total"].max()) == summary["peak_bytes"]
    assert (cats[CATEGORY_NAMES].sum(axis=1) == cats["total"]).all()
    assert (cats["total"] == gpt.ops["live_bytes"]).all()
    assert cats.loc[cats["peak"], "phase"].item() == summary["peak_phase"]


def test_the_unit_table_has_one_row_per_unit(gpt):
    doc = json.loads(GPT.read_text())
    units = gpt.units
    assert len(units) == len(doc["units"]) and units.index.name == "unit"
    assert list(units.columns) == [c for c in UNIT_COLUMNS if c != "unit"]
    assert units.loc["(root)", "activation_bytes"] == doc["summary"]["activation_bytes"]
    assert units.loc["blocks.0", "parent"] == "blocks" and units.loc["wte", "parent"] == "(root)"


def test_the_plan_tables(gpt):
    plans = memadvise.load_plan(GPT_PLAN)
    doc = json.loads(GPT_PLAN.read_text())
    assert list(plans.plans.columns) == list(PLAN_COLUMNS) and plans.plans.index.name == "rank"
    assert plans.plans.index.tolist() == [p["rank"] for p in doc["plans"]]
    first = doc["plans"][0]
    assert plans.plans.loc[1, "peak_bytes"] == first["predicted"]["peak_bytes"]
    assert plans.plans.loc[1, "step_time_ms"] == pytest.approx(first["predicted"]["step_time_s"] * 1000)
    assert plans.plans["recommended"].sum() == 1 and plans.plans.loc[doc["recommendation"]["rank"], "recommended"]
    assert len(plans.actions) == sum(len(p["actions"]) for p in doc["plans"])
    assert list(plans.actions.columns) == list(ACTION_COLUMNS)
    assert list(plans.traffic.columns) == list(TRAFFIC_COLUMNS) and len(plans.traffic) == len(doc["traffic"]["plans"])


def test_show_csv_writes_the_tables(tmp_path, gpt):
    result = cli("show", "--profile", GPT, "--csv", tmp_path / "tables", "--json")
    assert result.exit_code == 0, result.output
    written = json_out(result)["written"]["csv"]
    assert [p.rsplit("/", 1)[-1] for p in written] == ["ops.csv", "units.csv", "categories.csv"]
    ops = pd.read_csv(tmp_path / "tables" / "ops.csv", index_col="op", keep_default_na=False)
    assert len(ops) == len(gpt.ops) and ops["name"].tolist() == gpt.ops["name"].tolist()
    cats = pd.read_csv(tmp_path / "tables" / "categories.csv", index_col="op")
    assert int(cats.loc[cats["peak"], CATEGORY_NAMES].sum(axis=1).item()) == 584_828
    text = cli("show", "--profile", GPT, "--csv", tmp_path / "t2")
    assert text.exit_code == 0 and "tables written to" in text.stdout and "categories.csv" in text.stdout


def test_a_csv_folder_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    result = cli("show", "--profile", GPT, "--csv", tmp_path / "file" / "sub")
    assert result.exit_code == 2 and result.stderr.startswith("memadvise: error: cannot create folder")
