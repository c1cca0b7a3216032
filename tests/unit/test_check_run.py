"""``check/run.py``: the gate's steps between the command's options and its output, on
the golden profile (no script runs)."""

import copy

import pytest

from helpers import ROOT
from memadvise._errors import InputFileError, UsageError
from memadvise.check.run import CheckRequest, append_step_summary, run_check
from memadvise.schema.profile import Profile, read_profile

GOLDEN = ROOT / "tests" / "data" / "profile_v1.json"


def request(tmp_path, **options):
    return CheckRequest.parse(profile_path=GOLDEN, baseline=tmp_path / "baseline.json", **options)


def test_the_baseline_is_read_before_the_profile_is_made(tmp_path):
    made = []
    with pytest.raises(InputFileError, match="does not exist"):
        run_check(request(tmp_path), lambda: made.append(1) or read_profile(GOLDEN))
    assert made == []  # a missing baseline fails before any script would run


def test_update_then_check_then_a_regression(tmp_path):
    profile = read_profile(GOLDEN)
    result, context = run_check(request(tmp_path, update_baseline=True), lambda: profile)
    assert context.updated and result.verdict.endswith("updated:") and (tmp_path / "baseline.json").exists()
    result, context = run_check(request(tmp_path, tolerance="0%"), lambda: profile)
    assert result.passed and context.update_command.endswith("--update-baseline")
    assert f"--profile {GOLDEN}" in context.update_command
    doc = copy.deepcopy(profile.doc)
    doc["summary"]["peak_bytes"] += 1  # records are read-only: a changed document is a new Profile
    grown = Profile(doc=doc, path=profile.path)
    result, _ = run_check(request(tmp_path, tolerance="0%"), lambda: grown)
    assert not result.passed and result.verdict.startswith("peak ") and "exceeds baseline" in result.verdict


@pytest.mark.parametrize("options, message", [
    ({"script": ROOT / "train.py"}, "not both"),
    ({"junit": None, "baseline": None, "profile_path": None}, "give the SCRIPT"),
    ({"metric": "time"}, "--metric"),
])
def test_option_mistakes_are_one_line(tmp_path, options, message):
    args = {"profile_path": GOLDEN, "baseline": tmp_path / "b.json", **options}
    with pytest.raises(UsageError, match=message):
        CheckRequest.parse(**args)


def test_a_step_summary_that_cannot_be_written_is_a_warning(tmp_path):
    assert append_step_summary(str(tmp_path / "summary.md"), "### ok\n") is None
    assert (tmp_path / "summary.md").read_text() == "### ok\n"
    warning = append_step_summary(str(tmp_path / "missing" / "summary.md"), "### ok\n")
    assert warning.startswith("$GITHUB_STEP_SUMMARY: cannot append to") and "No such file" in warning
