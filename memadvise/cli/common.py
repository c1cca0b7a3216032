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
