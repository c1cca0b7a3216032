"""Where stderr is not a terminal (CI logs), progress is one line per step or stage with
its elapsed time, never a spinner that prints nothing."""

import io
import re

from rich.console import Console

from memadvise.cli.common import progress_bar, stages


def test_steps_are_lines_when_not_a_terminal():
    out = io.StringIO()
    with progress_bar(Console(file=out, force_terminal=False), enabled=True) as update:
        update(1, 3)
        update(2, 3)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and re.fullmatch(r"profiling: step 2 of 3 done \(\d+\.\d s\)", lines[1])


def test_stages_are_lines_with_elapsed_time():
    out = io.StringIO()
    with stages(Console(file=out, force_terminal=False), "verifying") as progress:
        progress("profiling the original script (1/3)")
    lines = out.getvalue().splitlines()
    assert re.fullmatch(r"verifying: profiling the original script \(1/3\) \(\d+\.\d s\)", lines[0])
    assert lines[-1].startswith("verifying: done (")


def test_nothing_when_disabled():
    out = io.StringIO()
    with progress_bar(Console(file=out, force_terminal=False), enabled=False) as update:
        assert update is None
    assert out.getvalue() == ""
