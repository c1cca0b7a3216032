"""Shared helpers: run the CLI in-process or in a subprocess, read JSON output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, env: dict | None = None):
    """Run ``memadvise ARGS`` in this process; returns the click Result."""
    from memadvise.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def cli_subprocess(*args: str, cwd: str | os.PathLike | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m memadvise ARGS`` in a fresh process (a separate measurement)."""
    return subprocess.run([sys.executable, "-m", "memadvise", *map(str, args)], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout)


def json_out(result) -> dict:
    text = result.stdout if hasattr(result, "stdout") else result
    return json.loads(text)


def one_line_error(stderr: str) -> str:
    """The memadvise error line; asserts there is exactly one and no traceback."""
    lines = [line for line in stderr.strip().splitlines() if line.startswith("memadvise: error:")]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    return lines[0]
