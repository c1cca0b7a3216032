"""Bad input to `profile` and `show`: one clear line on stderr, exit 2, no traceback, and
no profile file left behind."""

import json
import os

import pytest

from helpers import ROOT, cli, cli_subprocess, one_line_error

SCRIPTS = ROOT / "tests" / "scripts"


@pytest.mark.parametrize(
    "script, extra, message",
    [
        ("missing.py", [], "does not exist"),
        ("syntax_error.py", [], "syntax error"),
        ("raises.py", [], "the script raised ValueError: bad batch at step 1 (raises.py:9)"),
        ("never_steps.py", [], "without completing a training step"),
        ("exits_early.py", [], "sys.exit(0)"),
        ("sleeps.py", ["--timeout", "3"], "timed out after 3 s"),
    ],
)
def test_bad_scripts_fail_cleanly(tmp_path, script, extra, message):
    out = tmp_path / "p.json"
    result = cli("profile", SCRIPTS / script, "--out", out, "--warmup", "1", "--steps", "2", *extra)
    assert result.exit_code == 2, result.output
    assert message in one_line_error(result.stderr)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir()], "no partial or temporary file"


def test_unwritable_output_fails_before_running(tmp_path):
    if os.geteuid() == 0:
        target = "/proc/memadvise-test/p.json"  # not writable even for root
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "p.json"
    result = cli("profile", SCRIPTS / "sleeps.py", "--out", target)  # would take 60 s if it ran
    assert result.exit_code == 2
    assert "not writable" in one_line_error(result.stderr)


def test_output_path_that_is_a_folder(tmp_path):
    result = cli("profile", SCRIPTS / "grad_accum.py", "--out", tmp_path)
    assert result.exit_code == 2
    assert "is a folder" in one_line_error(result.stderr)


@pytest.mark.parametrize("option, value", [("--steps", "0"), ("--warmup", "-1"), ("--timeout", "0")])
def test_bad_options(tmp_path, option, value):
    result = cli("profile", SCRIPTS / "grad_accum.py", "--out", tmp_path / "p.json", option, value)
    assert result.exit_code == 2
    one_line_error(result.stderr)


def test_the_scripts_error_keeps_its_traceback_without_memadvise_frames(tmp_path):
    proc = cli_subprocess("profile", SCRIPTS / "raises.py", "--out", tmp_path / "p.json")
    assert proc.returncode == 2
    assert "ValueError: bad batch at step 1" in one_line_error(proc.stderr)
    trace = proc.stderr[:proc.stderr.index("memadvise: error:")]
    assert "raises.py\", line 9, in <module>" in trace and 'raise ValueError("bad batch at step 1")' in trace
    assert "memadvise" not in trace.replace("memadvise's frames left out", "") and "runpy" not in trace
    assert not (tmp_path / "p.json").exists()


def test_an_error_in_execd_configuration_names_its_line(tmp_path):
    (tmp_path / "config.py").write_text("x = 1\nassert batch > 10, 'batch too small'\n")
    script = tmp_path / "train.py"
    script.write_text("import os\nbatch = 4\nexec(open(os.path.join(os.path.dirname(__file__), 'config.py')).read())\n")
    result = cli("profile", script, "--out", tmp_path / "p.json")
    assert result.exit_code == 2
    assert ("AssertionError: batch too small (train.py:3, failing at line 2 of the code it exec'd)"
            in one_line_error(result.stderr))


def test_a_script_option_before_the_double_dash_gets_a_hint(tmp_path):
    result = cli("profile", SCRIPTS / "raises.py", "--device=cpu")
    assert result.exit_code == 2
    assert "options after SCRIPT belong to the script: put them after `--`" in one_line_error(result.stderr)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "corrupt"),
        (json.dumps({"format": "memadvise-profile", "schema_version": 999}), "newer than this memadvise"),
        (json.dumps({"format": "memadvise-profile", "schema_version": 0}), "older than this memadvise"),
        (json.dumps({"format": "something-else"}), "not a memadvise profile"),
        (json.dumps({"format": "memadvise-profile", "schema_version": 1}), "incomplete"),
        ("\xff\xfe garbage", "not UTF-8"),
    ],
)
@pytest.mark.parametrize("command", [["show"], ["suggest"]])
def test_unreadable_profiles(tmp_path, content, message, command):
    path = tmp_path / "profile.json"
    if content.startswith("\xff"):
        path.write_bytes(b"\xff\xfe garbage")
    else:
        path.write_text(content)
    result = cli(*command, "--profile", path, *(["--out", tmp_path / "plan.json"] if command == ["suggest"] else []))
    assert result.exit_code == 2
    assert message in one_line_error(result.stderr)
    assert not (tmp_path / "plan.json").exists()


def test_missing_profile_for_show(tmp_path):
    result = cli("show", "--profile", tmp_path / "nope.json")
    assert result.exit_code == 2
    assert "does not exist" in one_line_error(result.stderr)


def test_an_error_in_a_configurator_execd_by_name_names_that_file(tmp_path, monkeypatch):
    # nanoGPT: exec(open('configurator.py').read()) at train.py:77
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configurator.py").write_text("x = 1\nraise ValueError('Unknown config key: foo')\n")
    (tmp_path / "train.py").write_text("batch = 4\nexec(open('configurator.py').read())\n")
    result = cli("profile", "train.py", "--out", tmp_path / "p.json")
    assert result.exit_code == 2
    assert ("ValueError: Unknown config key: foo (train.py:2, failing at configurator.py:2, which it exec'd)"
            in one_line_error(result.stderr))
