"""Atomic JSON writes and validated reads, for every file memadvise owns."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from memadvise._errors import InputFileError, UsageError


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The temporary file lives in the destination folder (``os.replace`` is atomic only
    within one file system) and is removed if anything fails. ``mode``: the new file's
    permissions (default: a normal file's, under the umask).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputFileError(f"cannot create folder {str(path.parent)!r}: {exc.strerror}") from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise InputFileError(f"cannot write {str(path)!r}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is None:  # mkstemp makes 0600; a normal file honours the umask
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise InputFileError(f"cannot write {str(path)!r}: {exc.strerror}") from None
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, *, mode: int | None = None) -> Path:
    """``atomic_write_bytes`` of ``text`` in UTF-8, line endings as given."""
    return atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def append_text(path: str | os.PathLike, text: str) -> None:
    """Append ``text`` to a file another program collects (``$GITHUB_STEP_SUMMARY``): not
    atomic, as appending is that file's contract."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise InputFileError(f"cannot append to {str(path)!r}: {exc.strerror}") from None


def check_writable(path: str | os.PathLike) -> None:
    """Fail before a long run, not after, when ``path`` cannot be written: create its folder
    and a scratch file in it, then remove the scratch file. A bad path is a usage error."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"output path {str(path)!r} is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"output path {str(path)!r} is not writable ({exc.strerror})") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"output path {str(path)!r} is not writable")


def atomic_write_json(path: str | os.PathLike, document: Any, *, indent: int | None = None) -> Path:
    text = json.dumps(document, indent=indent, separators=(",", ":") if indent is None else None)
    return atomic_write_text(path, text + "\n")


def read_json(path: str | os.PathLike, *, what: str) -> Any:
    """Read a JSON document, turning every failure into one sentence."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{what} {str(path)!r} does not exist")
    if path.is_dir():
        raise InputFileError(f"{what} {str(path)!r} is a folder, not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputFileError(f"{what} {str(path)!r} is not a memadvise {what} (not UTF-8 JSON)") from None
    except OSError as exc:
        raise InputFileError(f"cannot read {what} {str(path)!r}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(
            f"{what} {str(path)!r} is corrupt (invalid JSON at line {exc.lineno}); "
            "re-create it"
        ) from None


def check_header(doc: Any, *, path: str | os.PathLike, fmt: str, version: int, what: str, hint: str) -> None:
    """Refuse a document of another format or an unknown schema version, with one sentence."""
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise InputFileError(f"{str(path)!r} is not a memadvise {what} file")
    found = doc.get("schema_version")
    if not isinstance(found, int):
        raise InputFileError(f"{what} {str(path)!r} has no valid schema_version; {hint}")
    if found > version:
        raise InputFileError(
            f"{what} {str(path)!r} has schema version {found}, newer than this memadvise "
            f"understands ({version}); upgrade memadvise"
        )
    if found < version:
        raise InputFileError(
            f"{what} {str(path)!r} has schema version {found}, older than this memadvise "
            f"writes ({version}); {hint}"
        )
