"""``memadvise check`` end to end on the mlp sample model, through the real CLI.

In-process (typer's CliRunner) for speed; one subprocess test checks the exit codes of
the installed entry point. The model is tiny: a check takes well under a second.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memadvise.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "sample_models" / "mlp.py"
TINY = ["--depth", "2", "--width", "64", "--steps", "10"]
FAST = ["--warmup", "1", "--steps", "1", "--timing-steps", "0"]
# mlp.py's closed form (batch 64, out 16 by default): depth*batch*width*4 + batch*out*4
ACTIVATION = 2 * 64 * 64 * 4 + 64 * 16 * 4  # 36864 bytes
# --out 19 adds 64 * 3 * 4 = 768 bytes of activations: +2.08%
WIDER_ACTIVATION = ACTIVATION + 64 * 3 * 4

runner = CliRunner()


def check(*args: str, env: dict | None = None):
    return runner.invoke(app, ["check", *map(str, args)], env=env)


def run_json(*args: str) -> tuple[int, dict]:
    result = check("--json", *args)
    assert result.exit_code in (0, 1), result.stderr
    return result.exit_code, json.loads(result.stdout)


def memory_figures(doc: dict) -> dict:
    return {(r["metric"], r["check"]): r["current"] for r in doc["rows"] if r["metric"] != "step_time"}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def profiles(tmp_path_factory):
    """Two profiles of the tiny mlp: as is, and with a wider head (+2% activation memory)."""
    from memadvise.collect.api import profile_script

    folder = tmp_path_factory.mktemp("profiles")
    paths = {}
    for name, extra in (("base", []), ("wider", ["--out", "19"])):
        gc.collect()
        paths[name] = folder / f"{name}.json"
        profile_script(SCRIPT, TINY + extra, warmup=1, steps=1, timing_steps=0, out=paths[name],
                       calibrate_overheads=False)
    return paths


def make_baseline(profile: Path, baseline: str = "memadvise-baseline.json") -> Path:
    result = check("--profile", profile, "--baseline", baseline, "--update-baseline")
    assert result.exit_code == 0, result.stderr
    return Path(baseline)


# ---------------------------------------------------------------- gate


def test_update_then_check_a_script(workdir):
    result = check(SCRIPT, "--update-baseline", *FAST, "--", *TINY)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == "baseline memadvise-baseline.json (cpu) updated:"
    assert "new entry: peak" in result.stdout
    doc = json.loads((workdir / "memadvise-baseline.json").read_text())
    cpu = doc["entries"]["cpu"]
    assert cpu["activation_bytes"] == ACTIVATION
    assert cpu["script"]["path"].endswith("sample_models/mlp.py") and cpu["script"]["args"] == TINY
    assert (workdir / ".memadvise" / "check-profile.json").exists()

    result = check(SCRIPT, *FAST, "--", *TINY)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("PASS peak ") and lines[0].endswith("within 5% of baseline")
    assert "step   0" not in result.stdout  # the script's prints go to stderr: the verdict comes first


def test_ten_consecutive_checks_give_identical_figures_and_no_false_failure(workdir):
    assert check(SCRIPT, "--update-baseline", *FAST, "--", *TINY).exit_code == 0
    figures = []
    for _ in range(10):
        # no tolerance at all: CPU figures come from a deterministic storage tracker
        code, doc = run_json(SCRIPT, "--tolerance", "0%", *FAST, "--", *TINY)
        assert code == 0 and doc["passed"], doc["verdict"]
        figures.append(memory_figures(doc))
    assert all(f == figures[0] for f in figures)
    assert figures[0][("activation", "baseline")] == ACTIVATION


def test_two_percent_more_activation_fails_at_1_percent_and_passes_at_5(workdir):
    assert check(SCRIPT, "--update-baseline", *FAST, "--", *TINY).exit_code == 0
    result = check(SCRIPT, "--tolerance", "1%", *FAST, "--", *TINY, "--out", "19")
    assert result.exit_code == 1
    assert "activation 36.8 KiB exceeds baseline 36.0 KiB by 2.1% (tolerance 1%)" in result.stdout.splitlines()[0]
    # the same figures, read back from the profile that run wrote
    code, doc = run_json("--profile", ".memadvise/check-profile.json", "--tolerance", "5%")
    assert code == 0 and doc["passed"]
    activation = next(r for r in doc["rows"] if r["metric"] == "activation")
    assert (activation["baseline"], activation["current"]) == (ACTIVATION, WIDER_ACTIVATION)
    assert activation["change"] == pytest.approx(768 / 36864)


def test_metric_restricts_the_gate(workdir, profiles):
    make_baseline(profiles["base"])
    code, doc = run_json("--profile", profiles["wider"], "--tolerance", "1%", "--metric", "activation")
    assert code == 1
    assert [(r["metric"], r["status"]) for r in doc["rows"] if r["status"] != "info"] == [("activation", "fail")]


def test_max_peak_needs_no_baseline(workdir, profiles):
    code, doc = run_json("--profile", profiles["base"], "--max-peak", "1GiB")
    assert code == 0 and doc["passed"] and doc["warnings"] == []
    code, doc = run_json("--profile", profiles["base"], "--max-peak", "10KiB")
    assert code == 1
    assert doc["verdict"].startswith("peak ") and doc["verdict"].endswith(" exceeds --max-peak 10.0 KiB")
    assert not (workdir / "memadvise-baseline.json").exists()


def test_update_baseline_says_what_changed_and_writes_only_changes(workdir, profiles):
    path = make_baseline(profiles["base"])
    result = check("--profile", profiles["wider"], "--update-baseline")
    assert result.exit_code == 0, result.stderr
    assert "activation 36.0 KiB → 36.8 KiB (+2.1%)" in result.stdout
    assert "script `" in result.stdout  # the arguments changed too
    assert json.loads(path.read_text())["entries"]["cpu"]["activation_bytes"] == WIDER_ACTIVATION
    before = path.read_text()
    result = check("--profile", profiles["wider"], "--update-baseline")
    assert result.stdout.splitlines()[0] == "baseline memadvise-baseline.json (cpu) is up to date (no memory change)"
    assert path.read_text() == before  # not even updated_at: diffs stay meaningful
    code, doc = run_json("--profile", profiles["wider"], "--update-baseline")
    assert code == 0 and doc["baseline_updated"] is False and doc["baseline_changes"] == []
    assert doc["verdict"] == "baseline memadvise-baseline.json (cpu) is up to date (no memory change)"
    assert sorted(p.name for p in workdir.iterdir()) == ["memadvise-baseline.json"]  # atomic: no temp files


def test_junit_and_github_step_summary(workdir, profiles):
    make_baseline(profiles["base"])
    summary = workdir / "summary.md"
    summary.write_text("# earlier step\n")
    result = check("--profile", profiles["wider"], "--tolerance", "1%", "--junit", "out/junit.xml",
                   env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.exit_code == 1
    suite = ET.parse(workdir / "out" / "junit.xml").getroot().find("testsuite")
    assert (suite.get("name"), suite.get("tests"), suite.get("failures")) == ("memadvise.check", "2", "2")
    messages = [c.find("failure").get("message") for c in suite.findall("testcase")]
    assert messages[1] == "activation 36.8 KiB exceeds baseline 36.0 KiB by 2.1% (tolerance 1%)"
    text = summary.read_text()
    assert text.startswith("# earlier step\n### memadvise check: ❌ FAIL")  # appended, not replaced
    assert "| activation | 36.0 KiB | 36.8 KiB | +2.1% | 36.4 KiB (+1%) | ❌ fail |" in text


def test_warns_when_the_baseline_was_taken_elsewhere(workdir, profiles):
    path = make_baseline(profiles["base"])
    doc = json.loads(path.read_text())
    doc["entries"]["cpu"]["environment"].update(torch="2.4.0", device_name="arm64")
    path.write_text(json.dumps(doc))
    code, out = run_json("--profile", profiles["base"])
    assert code == 0
    assert out["warnings"][0].startswith("baseline was taken on cpu (arm64), this run is on cpu (")
    assert out["warnings"][1].startswith("baseline was taken with torch 2.4.0, this run uses torch ")


def test_one_baseline_file_keeps_an_entry_per_device(workdir, profiles):
    path = make_baseline(profiles["base"])
    doc = json.loads(path.read_text())
    gpu = dict(doc["entries"].pop("cpu"), peak_bytes=123)
    doc["entries"]["cuda:Fake GPU"] = gpu
    path.write_text(json.dumps(doc))

    result = check("--profile", profiles["base"])
    assert result.exit_code == 2
    assert result.stderr == (
        "memadvise: error: baseline 'memadvise-baseline.json' has no entry for device 'cpu' "
        "(it has: cuda:Fake GPU); add one with `memadvise check SCRIPT --update-baseline` on this device\n"
    )
    code, out = run_json("--profile", profiles["base"], "--max-peak", "1GiB")
    assert code == 0
    assert out["warnings"] == ["baseline 'memadvise-baseline.json' has no entry for device 'cpu'; only --max-peak is checked"]

    assert check("--profile", profiles["base"], "--update-baseline").exit_code == 0
    entries = json.loads(path.read_text())["entries"]
    assert set(entries) == {"cpu", "cuda:Fake GPU"} and entries["cuda:Fake GPU"]["peak_bytes"] == 123
    assert check("--profile", profiles["base"]).exit_code == 0


def test_update_replaces_a_corrupt_baseline(workdir, profiles):
    (workdir / "memadvise-baseline.json").write_text("{ half a file")
    result = check("--profile", profiles["base"], "--update-baseline")
    assert result.exit_code == 0, result.stderr
    assert "warning: replacing an unreadable baseline: " in result.stdout
    assert check("--profile", profiles["base"]).exit_code == 0


# ---------------------------------------------------------------- bad input: one line, exit 2

NEWER = '{"format": "memadvise-baseline", "schema_version": 2, "entries": {}}'


@pytest.mark.parametrize(
    "baseline_text, args, message",
    [
        (None, ["--profile", "{base}"],
         "baseline 'memadvise-baseline.json' does not exist; create it with `memadvise check SCRIPT --update-baseline`"),
        ("{not json", ["--profile", "{base}"],
         "baseline 'memadvise-baseline.json' is corrupt (invalid JSON at line 1); "
         "re-create it with `memadvise check SCRIPT --update-baseline`"),
        (NEWER, ["--profile", "{base}"],
         "baseline 'memadvise-baseline.json' has schema version 2, newer than this memadvise understands (1); "
         "upgrade memadvise"),
        (NEWER, ["--profile", "{base}", "--update-baseline"], "newer than this memadvise understands"),
        (None, ["--profile", "{base}", "--baseline", "nope.json", "--max-peak", "1GiB"],
         "baseline 'nope.json' does not exist"),
        (None, ["--profile", "{base}", "--tolerance", "5 percent"], "--tolerance '5 percent' is not a percentage"),
        (None, ["--profile", "{base}", "--max-peak", "300 parsecs"], "--max-peak '300 parsecs' has an unknown unit"),
        (None, ["--profile", "{base}", "--metric", "time"], "--metric 'time' is not one of peak, activation, all"),
        (None, [], "give the SCRIPT to profile, or --profile PATH to read an existing profile"),
        (None, ["{script}", "--profile", "{base}"], "give SCRIPT to profile or --profile to read, not both"),
        (None, ["--profile", "missing.json", "--max-peak", "1GiB"], "profile 'missing.json' does not exist"),
        (None, ["--profile", "{script}", "--max-peak", "1GiB"], "mlp.py' is corrupt (invalid JSON at line"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(workdir, profiles, baseline_text, args, message):
    path = workdir / "memadvise-baseline.json"
    if baseline_text is not None:
        path.write_text(baseline_text)
    args = [a.format(base=profiles["base"], script=SCRIPT) for a in args]
    result = check(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("memadvise: error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr
    if baseline_text is not None:
        assert path.read_text() == baseline_text  # refused files are never overwritten


def test_missing_baseline_fails_before_running_the_script(workdir):
    result = check(SCRIPT, "--", *TINY)
    assert result.exit_code == 2 and "--update-baseline" in result.stderr
    assert not (workdir / ".memadvise").exists()


def test_exit_codes_of_the_installed_command(workdir, profiles):
    base = [sys.executable, "-m", "memadvise", "check", "--profile", str(profiles["base"])]
    missing = subprocess.run(base, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2
    assert missing.stderr.startswith("memadvise: error: baseline ") and "Traceback" not in missing.stderr
    over = subprocess.run(base + ["--max-peak", "1KiB"], capture_output=True, text=True, timeout=120)
    assert over.returncode == 1 and over.stdout.startswith("FAIL peak ")
    ok = subprocess.run(base + ["--max-peak", "1GiB"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and ok.stdout.startswith("PASS peak ")
