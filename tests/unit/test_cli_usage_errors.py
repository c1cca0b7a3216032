"""A mistyped command line (unknown command or option, a missing or extra argument) is
one ``memadvise: error:`` line naming the command's help, exit 2: no usage box."""

import pytest

from helpers import cli, one_line_error


@pytest.mark.parametrize("args, message, helps", [
    (["frobnicate"], "no such command 'frobnicate'", "memadvise -h"),
    (["show", "--bogus"], "no such option: --bogus", "memadvise show -h"),
    (["show", "profile.json"], "got unexpected extra argument(s) (profile.json)", "memadvise show -h"),
    (["profile"], "missing argument 'script'", "memadvise profile -h"),
    (["check", "--tolerance"], "option '--tolerance' requires an argument", "memadvise check -h"),
])
def test_a_usage_mistake_is_one_line(args, message, helps):
    r = cli(*args)
    assert r.exit_code == 2
    line = one_line_error(r.stderr)
    assert message in line and f"(see `{helps}`)" in line, line
    assert "Usage:" not in r.stderr and "╭" not in r.stderr


def test_a_bare_command_still_shows_its_help():
    r = cli()
    assert "Usage" in r.stdout + r.stderr and "memadvise: error" not in r.stderr
