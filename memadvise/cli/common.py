"""Helpers shared by the commands: consoles, JSON output, default paths."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

DEFAULT_DIR = Path(".memadvise")


def out_console() -> Console:
    # built per call: tests swap sys.stdout, and Rich binds the stream at construction
    return Console(file=sys.stdout, highlight=False, soft_wrap=False)


def err_console() -> Console:
    return Console(file=sys.stderr, highlight=False)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


class progress_bar:
    """A rich progress bar over the script's steps (on stderr); where stderr is not a
    terminal (CI logs), one line per step with the elapsed time; or nothing."""

    def __init__(self, console, enabled: bool) -> None:
        self.console = console
        self.enabled = enabled
        self._progress = None
        self._task = None

    def __enter__(self):
        if not self.enabled:
            return None
        if not self.console.is_terminal:
            start = time.monotonic()

            def line(done: int, total: int) -> None:
                self.console.file.write(f"profiling: step {done} of {total} done ({time.monotonic() - start:.1f} s)\n")
                self.console.file.flush()

            return line
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("profiling"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
            TimeElapsedColumn(), console=self.console, transient=True,
        )
        self._progress.__enter__()
        self._task = self._progress.add_task("steps", total=None)

        def update(done: int, total: int) -> None:
            self._progress.update(self._task, completed=done, total=total)

        return update

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


@contextlib.contextmanager
def stages(console, label: str):
    """``update(message)`` for a command's stages: a spinner on a terminal; elsewhere (CI
    logs) one line per stage with the time since the start, so a long run is never silent."""
    if console.is_terminal:
        with console.status(label, spinner="dots") as status:
            yield lambda msg: status.update(f"{label}: {msg}")
        return
    start = time.monotonic()

    def line(msg: str) -> None:
        console.file.write(f"{label}: {msg} ({time.monotonic() - start:.1f} s)\n")
        console.file.flush()

    yield line
    console.file.write(f"{label}: done ({time.monotonic() - start:.1f} s)\n")
    console.file.flush()
