"""Helpers shared by the commands: consoles, JSON output, default paths."""

from __future__ import annotations

import json
import sys
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
    """A rich progress bar over the script's steps (on stderr), or nothing."""

    def __init__(self, console, enabled: bool) -> None:
        self.console = console
        self.enabled = enabled and console.is_terminal
        self._progress = None
        self._task = None

    def __enter__(self):
        if not self.enabled:
            return None
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
