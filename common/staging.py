"""Replace several entries of one folder together: a dataset's ``images/`` and the ``datalist.json`` naming them.

:func:`common.io.atomic_directory` replaces one folder. A prepared dataset is two or more entries inside a
folder the user chose (which may hold other files, the source ``.npz`` for one), and a new ``images/`` next
to the old ``datalist.json`` would pair new pixels with old labels. So the new entries are written into a
hidden staging folder inside it; a failure there leaves the folder as it was. When the staging folder is
complete it is renamed to ``.commit`` (the commit point), and its entries are moved onto their namesakes,
the old ones set aside in it. A crash after the commit point is finished by the next
:func:`common.io.recover_directory` (or :func:`atomic_entries`) of the folder: every entry moves forward.

Names: ``.medxfer.<host>-<pid>-<random>.staging`` / ``.commit``; only those of ended processes are touched.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common.errors import OutputError
from common.io import _fsync_path, _token, make_directory, recover_directory, temporary_folder, writer_alive

__all__ = ["atomic_entries", "recover_entries"]

logger = logging.getLogger(__name__)

_PATTERN = re.compile(r"^\.medxfer\.(?P<host>[A-Za-z0-9]*)-(?P<pid>\d+)-[a-z0-9_]+\.(?P<kind>staging|commit)$")
#: Inside a commit folder: the entries it replaced (removed with it).
_REPLACED = ".medxfer-replaced"


def _move_forward(commit: Path, folder: Path, name: str) -> None:
    """Put ``commit/name`` at ``folder/name``, the entry there kept in ``commit/.medxfer-replaced/`` first.

    A file is kept as a hard link, so the new one replaces it in one step; a folder (rename cannot replace a
    non-empty one) or a file on a file system without links is moved aside. Safe to repeat after a crash.
    """
    new, target, aside = commit / name, folder / name, commit / _REPLACED / name
    if (target.exists() or target.is_symlink()) and not (aside.exists() or aside.is_symlink()):
        aside.parent.mkdir(exist_ok=True)
        try:
            if not target.is_file() or target.is_symlink() or new.is_dir():
                raise IsADirectoryError(target)
            os.link(target, aside)
        except OSError:
            os.replace(target, aside)
    os.replace(new, target)


def _roll_forward(commit: Path, folder: Path, moved: list[str]) -> None:
    """Move every entry of ``commit`` into ``folder`` (appending each name to ``moved``), then drop ``commit``.

    Entries already moved are no longer in ``commit``, so finishing after a crash is the same call.
    """
    for name in sorted(os.listdir(commit)):
        if name != _REPLACED:
            _move_forward(commit, folder, name)
            moved.append(name)
    _fsync_path(folder, directory=True)
    shutil.rmtree(commit, ignore_errors=True)


def _roll_back(commit: Path, folder: Path, moved: list[str]) -> None:
    """Undo a commit that failed in this process: take out the entries ``moved`` in, put back those set aside."""
    for name in reversed(moved):
        os.replace(folder / name, commit / name)
    replaced = commit / _REPLACED
    for name in os.listdir(replaced) if replaced.is_dir() else []:
        os.replace(replaced / name, folder / name)
    shutil.rmtree(commit, ignore_errors=True)


def recover_entries(folder: str | os.PathLike) -> None:
    """Finish the committed replacements in ``folder`` of processes that died, drop their unfinished staging.

    Called by :func:`common.io.recover_directory`, which readers call.
    """
    root = Path(folder)
    for entry in sorted(os.listdir(root)):
        match = _PATTERN.match(entry)
        if match is None or writer_alive(match["host"], match["pid"]) or not (root / entry).is_dir():
            continue
        if match["kind"] == "commit":
            moved: list[str] = []
            _roll_forward(root / entry, root, moved)
            logger.warning("finished an interrupted replacement in %s: %s", root, ", ".join(moved))
        else:
            logger.warning("removing %s, left by an interrupted write", root / entry)
            shutil.rmtree(root / entry, ignore_errors=True)


@contextmanager
def atomic_entries(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield a staging folder inside ``folder``; on success its entries replace their namesakes in ``folder``.

    Whatever the body writes at the top of the staging folder (``images/``, ``datalist.json``) replaces the
    entry of the same name as one change: if the body raises, nothing in ``folder`` changes; after a crash
    once the body finished, :func:`common.io.recover_directory` completes the change. Other entries of
    ``folder`` are left alone. Entries get the permissions they were created with.

    Raises:
        OutputError: ``folder`` cannot be written, or the entries cannot be moved in (those already moved are
            moved back); an ``OSError`` of the body writing into the staging folder is raised as one too.

    Example:
        >>> with atomic_entries("/data/chestmnist") as staging:  # doctest: +SKIP
        ...     write_images(staging / "images")
        ...     atomic_write_json(staging / "datalist.json", datalist)
    """
    root = make_directory(folder)
    recover_directory(root)
    with temporary_folder(root, f".medxfer.{_token()}-", ".staging", root) as staging:
        yield staging
    commit = staging.with_name(staging.name[: -len(".staging")] + ".commit")
    try:
        for name in os.listdir(staging):  # flush the folder entries; files written by atomic_save are already
            if (staging / name).is_dir():
                _fsync_path(staging / name, directory=True)
        _fsync_path(staging, directory=True)
        os.replace(staging, commit)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputError("write", root, err) from err
    _commit(commit, root)


def _commit(commit: Path, root: Path) -> None:
    moved: list[str] = []
    try:
        _roll_forward(commit, root, moved)
    except OSError as err:
        try:
            _roll_back(commit, root, moved)
        except OSError:
            logger.exception("could not move back %s; the next write or recover_directory(%s) finishes the "
                             "replacement from %s", moved, root, commit)  # fmt: skip
        raise OutputError(f"replace {', '.join(moved) or 'entries'} in", root, err) from err
