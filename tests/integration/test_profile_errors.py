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


def test_subprocess_error_has_no_traceback(tmp_path):
    proc = cli_subprocess("profile", SCRIPTS / "raises.py", "--out", tmp_path / "p.json")
    assert proc.returncode == 2
    assert "ValueError: bad batch at step 1" in one_line_error(proc.stderr)
    assert not (tmp_path / "p.json").exists()


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
