"""Atomic file and folder writes: a reader never sees half a file, and a failed write loses nothing."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_save", "atomic_write_text", "atomic_write_json", "atomic_directory"]


def atomic_save(path: str | os.PathLike, save: Callable[[Path], None]) -> Path:
    """Let ``save`` write a temporary sibling (same extension), then move it onto ``path`` with ``os.replace``.

    The extension is kept (``.nii.gz`` included) so writers that pick a format from the name still work.
    If ``save`` raises, the temporary file is removed and ``path`` is unchanged.

    Example:
        >>> atomic_save("/tmp/mask.png", lambda tmp: PIL.Image.fromarray(mask).save(tmp))  # doctest: +SKIP
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    extension = ".nii.gz" if dest.name.lower().endswith(".nii.gz") else dest.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{extension}", dir=dest.parent)
    os.close(fd)
    try:
        save(Path(tmp))
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, flushed to disk before the rename.

    Example:
        >>> atomic_write_text("/tmp/x.txt", "hello")  # doctest: +SKIP
    """

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    return atomic_save(path, write)


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
