"""Atomic file and folder writes: a reader never sees half a file, and a failed write loses nothing."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_text", "atomic_write_json", "atomic_directory"]


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    Args:
        path: destination file; parent folders are created.
        text: the content (UTF-8).

    Returns:
        The destination path.

    Example:
        >>> atomic_write_text("/tmp/x.txt", "hello")  # doctest: +SKIP
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def atomic_write_json(path: str | os.PathLike, data: Any, indent: int = 2) -> Path:
    """Serialise ``data`` as JSON (NaN written as ``null``-free ``NaN`` is refused) and write it atomically."""
    return atomic_write_text(path, json.dumps(data, indent=indent, allow_nan=False) + "\n")


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``path`` as a whole.

    An existing folder at ``path`` stays untouched until the new one is complete, then is swapped out
    and removed. If the body raises, the temporary folder is removed and ``path`` is unchanged.

    Example:
        >>> with atomic_directory("/tmp/eval") as tmp:  # doctest: +SKIP
        ...     (tmp / "metrics.json").write_text("{}")
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
        os.replace(dest, old / dest.name)
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
