"""Rank 0 merges the ranks' profiles it reads through the schema: a rank file that is
missing, of another run or not a valid profile is waited for, never merged."""

import json

import pytest

from helpers import ROOT
from memadvise._errors import ScriptError
from memadvise.collect.distributed import merge_when_ready, rank_path

GOLDEN = json.loads((ROOT / "tests" / "data" / "profile_v1.json").read_text())


def rank_doc(rank: int, run: str, peak: int) -> dict:
    doc = json.loads(json.dumps(GOLDEN))
    doc["distributed"] = {"rank": rank, "world_size": 2, "backend": "gloo", "ranks": [], "run_id": run}
    doc["summary"]["peak_bytes"] = peak
    return doc


def test_the_worst_rank_is_merged(tmp_path):
    out = tmp_path / "profile.json"
    for rank, peak in ((0, 1000), (1, 2000)):
        rank_path(out, rank).write_text(json.dumps(rank_doc(rank, "run", peak)))
    merged = merge_when_ready(out, 2, "run", timeout=5)
    assert merged["distributed"]["worst_rank"] == 1 and merged["summary"]["peak_bytes"] == 2000
    assert [r["peak_bytes"] for r in merged["distributed"]["ranks"]] == [1000, 2000]


def incomplete(rank: int, run: str, peak: int) -> str:
    doc = rank_doc(rank, run, peak)
    del doc["trace"]
    return json.dumps(doc)


@pytest.mark.parametrize("rank1", ["{not json", incomplete(1, "run", 2000), None, "other run"],
                         ids=["corrupt", "incomplete", "missing", "other-run"])
def test_a_rank_file_that_is_not_this_runs_profile_is_not_merged(tmp_path, rank1):
    out = tmp_path / "profile.json"
    rank_path(out, 0).write_text(json.dumps(rank_doc(0, "run", 1000)))
    if rank1 == "other run":
        rank_path(out, 1).write_text(json.dumps(rank_doc(1, "an earlier run", 2000)))
    elif rank1 is not None:
        rank_path(out, 1).write_text(rank1)
    with pytest.raises(ScriptError, match="rank 1 wrote no profile"):
        merge_when_ready(out, 2, "run", timeout=0.3)
