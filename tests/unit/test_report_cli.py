"""``memadvise report`` and ``memadvise show --plot/--trace`` through the CLI, in
process, on the golden profile: files written, JSON output, and one stderr line with
exit 2 for every mistake a user can make."""

import json
import shutil
import sys

import pytest

import memadvise.cli.report  # noqa: F401  (registers the command when app.py does not yet)
from helpers import ROOT, cli, json_out, one_line_error

GOLDEN = ROOT / "tests" / "data" / "profile_v1.json"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder with .memadvise/profile.json (the golden profile) and its plan file."""
    (tmp_path / ".memadvise").mkdir()
    shutil.copy(GOLDEN, tmp_path / ".memadvise" / "profile.json")
    monkeypatch.chdir(tmp_path)
    result = cli("suggest", "--json")
    assert result.exit_code == 0, result.output
    return tmp_path


def test_report_with_default_paths(workdir):
    result = cli("report", "--json")
    assert result.exit_code == 0, result.output
    doc = json_out(result)
    plan = json.loads((workdir / ".memadvise" / "plan.json").read_text())
    assert doc["report"] == ".memadvise/report.html"
    assert doc["sections"] == ["timeline", "modules", "plans"]
    assert doc["plan"]["rank"] == (plan["recommendation"] or {"rank": 1})["rank"]  # else rank 1
    page = (workdir / ".memadvise" / "report.html").read_text()
    assert doc["bytes"] == len(page.encode()) and page.startswith("<!DOCTYPE html>")


def test_report_text_output_says_where_to_look(workdir):
    result = cli("report", "--out", "r.html", "--rank", "2")
    assert result.exit_code == 0, result.output
    assert "report with plan #2" in result.stdout and "written to r.html" in result.stdout
    assert f"file://{workdir}/r.html" in result.stdout.replace("\n", "")


def test_report_without_a_plan_file(workdir):
    (workdir / ".memadvise" / "plan.json").unlink()
    doc = json_out(cli("report", "--json"))
    assert doc["sections"] == ["timeline", "modules"] and doc["plan"] is None


def test_report_with_a_verify_result(workdir):
    verify = {"plan": {"rank": 1, "strategy": "x"}, "baseline_step_time_s": 0.002, "patched_step_time_s": 0.0021,
              "tolerance": 0.05, "passed": True,
              "rows": {"peak_bytes": {"predicted": 5000, "measured": 5010, "baseline_measured": 5204, "error": 0.002},
                       "activation_bytes": {"predicted": 200, "measured": 200, "baseline_measured": 544, "error": 0.0},
                       "overhead": {"predicted": 0.04, "measured": 0.05, "error": 0.01}}}
    (workdir / "verify.json").write_text(json.dumps({"plan": {}, "verify": verify}))
    doc = json_out(cli("report", "--verify", "verify.json", "--json"))
    assert doc["sections"][-1] == "verify" and doc["verify"] == {"rank": 1, "passed": True}


def test_a_default_plan_of_another_profile_is_left_out(workdir):
    profile = json.loads(GOLDEN.read_text())
    profile["created_at"] = "2030-01-01T00:00:00+00:00"
    (workdir / "other.json").write_text(json.dumps(profile))
    result = cli("report", "--profile", "other.json", "--json")
    assert result.exit_code == 0, result.output
    doc = json_out(result)
    assert doc["plan"] is None and "suggested from another profile" in doc["notes"][0]


@pytest.mark.parametrize("args, message", [
    (["--profile", "missing.json"], "does not exist"),
    (["--plan", "missing.json"], "does not exist"),
    (["--rank", "99"], "no plan ranked 99"),
    (["--strategy", "nope"], "no plan with strategy 'nope'"),
    (["--rank", "1", "--strategy", "full"], "not both"),
    (["--verify", "missing.json"], "does not exist"),
    (["--verify", ".memadvise/profile.json"], "holds no verify result"),
    (["--plan", ".memadvise/profile.json"], "is not a memadvise plan file"),
    (["--profile", "other.json", "--plan", ".memadvise/plan.json"], "suggested from another profile"),
    (["--out", ".memadvise/profile.json/x.html"], "cannot"),
])
def test_report_mistakes_are_one_line_and_exit_2(workdir, args, message):
    profile = json.loads(GOLDEN.read_text())
    profile["created_at"] = "2030-01-01T00:00:00+00:00"
    (workdir / "other.json").write_text(json.dumps(profile))
    result = cli("report", *args)
    assert result.exit_code == 2, result.output
    assert message in one_line_error(result.stderr)


def test_rank_without_any_plan_file(workdir):
    (workdir / ".memadvise" / "plan.json").unlink()
    result = cli("report", "--rank", "1")
    assert result.exit_code == 2 and "need a plan file" in one_line_error(result.stderr)


def test_show_plot_and_trace(workdir):
    result = cli("show", "--plot", "t.png", "--trace", "t.json", "--json")
    assert result.exit_code == 0, result.output
    doc = json_out(result)
    assert doc["written"] == {"plot": "t.png", "trace": "t.json"}
    assert (workdir / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((workdir / "t.json").read_text())["traceEvents"]
    text = cli("show", "--plot", "u.png")
    assert "timeline plot written to u.png" in text.stdout and "peak" in text.stdout


def test_show_plot_without_matplotlib(workdir, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib → ImportError
    result = cli("show", "--plot", "t.png")
    assert result.exit_code == 2
    assert "needs matplotlib" in one_line_error(result.stderr)
    assert not (workdir / "t.png").exists()


def test_show_trace_to_an_unwritable_place(workdir):
    result = cli("show", "--trace", ".memadvise/profile.json/t.json")
    assert result.exit_code == 2 and "cannot" in one_line_error(result.stderr)


@pytest.mark.parametrize("faults, shown", [(None, False), (10, False), (200_000, True)])
def test_show_warns_of_page_faults_only_when_they_weigh(workdir, faults, shown):
    """A step that faults in fresh pages worth ≥5% of its peak (and ≥1 MiB) gets one warning; the golden
    profile predates the field (None) and a handful of faults is not worth a line."""
    path = workdir / ".memadvise" / "profile.json"
    doc = json.loads(path.read_text())
    doc["summary"]["minor_faults_per_step"] = faults
    path.write_text(json.dumps(doc))
    result = cli("show")
    assert result.exit_code == 0, result.output
    assert ("page faults" in result.output) == shown
    if shown:
        assert "200,000 per step" in result.output
    assert json_out(cli("show", "--json"))["minor_faults_per_step"] == faults
