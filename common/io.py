"""Atomic file and folder writes: a reader never sees half a file, and a failed write loses nothing.

* Files (:func:`atomic_save`, :func:`atomic_write_text`, :func:`atomic_write_json`) are written to a hidden
  sibling, flushed to disk (``fsync``) and renamed onto the target; the parent folder is flushed after the rename.
* Folders (:func:`atomic_directory`) are written as a hidden sibling and swapped in with two renames; a crash
  between them is repaired by :func:`recover_directory` (called by the next write, and by readers).
* Several entries of one folder that must change together (images and the datalist naming them) are written
  with :func:`common.staging.atomic_entries`.

Final files and folders get the permissions a plain ``open()`` / ``mkdir()`` would give them
(``0o666`` / ``0o777`` less the umask), not the owner-only ones of :mod:`tempfile`. An ``OSError`` while
writing (read-only or full file system, a path below a regular file) is raised as
:class:`~common.errors.OutputError` naming the path and the operation.

Hidden siblings are named ``.<name>.<host>-<pid>-<random>.tmp`` (``.old`` for a swapped-out folder), so
recovery only ever touches leftovers of this module whose writing process has ended.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common.errors import MedxferError, OutputError

__all__ = ["atomic_save", "atomic_torch_save", "atomic_write_text", "atomic_write_json", "atomic_directory",
           "recover_directory", "make_directory", "current_umask", "writer_alive", "output_error",
           "temporary_folder", "file_sha256"]  # fmt: skip

logger = logging.getLogger(__name__)

_UMASK_LOCK = threading.Lock()
#: This process's part of a hidden sibling's name: which machine and process may still be writing it.
_HOST = re.sub(r"[^A-Za-z0-9]", "", os.uname().nodename if hasattr(os, "uname") else "")[:20]
#: Error numbers that only writing gives (an OSError with one of these is never about reading an input).
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG})


def _token() -> str:
    return f"{_HOST}-{os.getpid()}"  # read each time: a forked child is another writer


def current_umask() -> int:
    """The process umask, read without changing it (``/proc/self/status`` on Linux).

    Elsewhere it is set and restored under a lock, which is safe against other users of this function only.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _give_plain_mode(path: Path, directory: bool) -> None:
    """Give ``path`` the mode ``open()`` / ``mkdir()`` would have (a folder keeps an inherited set-group-id bit).

    File systems without Unix permissions (FAT, some network shares) refuse chmod: the mode is theirs anyway.
    """
    mode = (0o777 if directory else 0o666) & ~current_umask()
    try:
        if directory:
            mode |= os.stat(path).st_mode & stat.S_ISGID
        os.chmod(path, mode)
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EINVAL):
            raise


def _fsync_path(path: Path, directory: bool = False) -> None:
    """Flush ``path`` to disk; a folder only where the OS and file system allow (Windows cannot open one, some
    file systems cannot sync one: its rename is then as durable as they make it)."""
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        if directory:
            return
        raise
    try:
        os.fsync(fd)
    except OSError as err:
        if not directory or err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _inside(name: object, base: Path) -> str | None:
    """``name`` relative to ``base`` when it is ``base`` or below it ("." for ``base`` itself), else None."""
    if not isinstance(name, str | os.PathLike):
        return None
    target, root = os.path.abspath(name), os.path.abspath(base)
    return os.path.relpath(target, root) if target == root or target.startswith(root + os.sep) else None


def output_error(err: BaseException, tmp: Path, dest: Path) -> OutputError | None:
    """``err``, raised while writing the temporary ``tmp`` of ``dest``, as an OutputError naming the final path.

    None when ``err`` is not about writing there (an input the writer reads, a bug, a DataError).
    """
    if isinstance(err, OutputError):
        relative = _inside(err.filename, tmp)
        if relative is None:
            return None
        return OutputError(err.operation, dest if relative == "." else dest / relative, err.strerror, err.errno)
    if not isinstance(err, OSError) or isinstance(err, MedxferError):
        return None
    relative = _inside(err.filename, tmp)
    if relative is None and err.errno not in _WRITE_ERRNOS:
        return None
    return OutputError("write", dest if relative in (None, ".") else dest / relative, err)


def _not_a_folder(folder: Path) -> Path | None:
    """The first existing ancestor of ``folder`` (itself included) that is not a folder, if any."""
    for candidate in (folder, *folder.parents):
        if candidate.exists() or candidate.is_symlink():
            return None if candidate.is_dir() else candidate
    return None


def _create_folder(folder: Path, operation: str, target: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        blocker = _not_a_folder(folder)
        reason = f"{blocker} is a file, not a folder" if blocker is not None else err
        raise OutputError(operation, target, reason, errno=errno.ENOTDIR if blocker else None) from err


def make_directory(path: str | os.PathLike) -> Path:
    """``mkdir -p path``, raising :class:`~common.errors.OutputError` naming the path when it cannot be made."""
    folder = Path(path)
    _create_folder(folder, "create folder", folder)
    return folder


def atomic_save(path: str | os.PathLike, save: Callable[[Path], None]) -> Path:
    """Let ``save`` write a temporary sibling (same extension), then move it onto ``path`` with ``os.replace``.

    The extension is kept (``.nii.gz`` included) so writers that pick a format from the name still work.
    The file is flushed to disk before the rename and gets the permissions of a plain ``open()``.
    If ``save`` raises, the temporary file is removed and ``path`` is unchanged.

    Raises:
        OutputError: the file cannot be written (the path and the reason named); an ``OSError`` of ``save``
            about anything else (an input it reads) propagates unchanged.

    Example:
        >>> atomic_save("/tmp/mask.png", lambda tmp: PIL.Image.fromarray(mask).save(tmp))  # doctest: +SKIP
    """
    dest = Path(path)
    _create_folder(dest.parent, "write", dest)
    extension = ".nii.gz" if dest.name.lower().endswith(".nii.gz") else dest.suffix
    try:
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.{_token()}-", suffix=f".tmp{extension}", dir=dest.parent)
        os.close(fd)
    except OSError as err:
        raise OutputError("write", dest, err) from err
    tmp = Path(name)
    try:
        try:
            save(tmp)
        except OSError as err:
            wrapped = output_error(err, tmp, dest)
            if wrapped is not None:
                raise wrapped from err
            raise
        try:
            _give_plain_mode(tmp, directory=False)
            _fsync_path(tmp)
            os.replace(tmp, dest)
        except OSError as err:
            raise OutputError("write", dest, err) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        _fsync_path(dest.parent, directory=True)
    except OSError as err:
        raise OutputError("write", dest, err) from err
    return dest


@contextmanager
def temporary_folder(parent: Path, prefix: str, suffix: str, dest: Path) -> Iterator[Path]:
    """A new hidden folder in ``parent`` for writing ``dest``; removed if the body raises.

    A failure to create it, or an ``OSError`` of the body that is about writing, becomes an ``OutputError``
    naming ``dest`` (not the hidden folder). Shared by :func:`atomic_directory` and
    :func:`common.staging.atomic_entries`.
    """
    try:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))
    except OSError as err:
        raise OutputError("write", dest, err) from err
    try:
        yield tmp
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        wrapped = output_error(err, tmp, dest)
        if wrapped is not None:
            raise wrapped from err
        raise


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` ``obj`` to ``path`` through :func:`atomic_save` (temporary sibling, fsync, rename).

    Example:
        >>> atomic_torch_save({"w": torch.zeros(2)}, "/tmp/x.pt")  # doctest: +SKIP
    """
    import torch  # here, not at the top: most users of this module write text and never need torch

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)

    return atomic_save(path, write)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, flushed to disk before the rename.

    Example:
        >>> atomic_write_text("/tmp/x.txt", "hello")  # doctest: +SKIP
    """
    return atomic_save(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any, indent: int = 2) -> Path:
    """Serialise ``data`` as JSON (NaN written as ``null``-free ``NaN`` is refused) and write it atomically."""
    return atomic_write_text(path, json.dumps(data, indent=indent, allow_nan=False) + "\n")


def _sibling_pattern(name: str) -> re.Pattern[str]:
    """Hidden siblings this module makes for ``name``: ``(host, pid, random, kind)``; host/pid empty if legacy."""
    return re.compile(rf"^\.{re.escape(name)}\.(?:(?P<host>[A-Za-z0-9]*)-(?P<pid>\d+)-(?P<rand>[a-z0-9_]+)"
                      rf"|(?P<legacy>[a-z0-9_]{{8}}))\.(?P<kind>tmp|old)$")  # fmt: skip


def writer_alive(host: str | None, pid: str | None) -> bool:
    """Whether the process that named a hidden sibling may still be writing it (unknowable ones count as alive).

    Names without host and pid come from an older medxfer that no longer writes them: never alive.
    """
    if host is None or pid is None:
        return False
    if host != _HOST or int(pid) == os.getpid() or os.name == "nt":  # os.kill(pid, 0) would kill on Windows
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by another user
    return True


def _stale_siblings(dest: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """Leftover ``.tmp`` and ``.old`` folders of ``dest`` whose writers have ended, by their random part."""
    pattern, tmps, olds = _sibling_pattern(dest.name), {}, {}
    with os.scandir(dest.parent) as entries:
        for entry in entries:
            match = pattern.match(entry.name)
            if match is None or not entry.is_dir(follow_symlinks=False):
                continue
            if not writer_alive(match["host"], match["pid"]):
                key = match["rand"] or f"legacy-{match['legacy']}"
                (tmps if match["kind"] == "tmp" else olds)[key] = Path(entry.path)
    return tmps, olds


def recover_directory(path: str | os.PathLike) -> Path:
    """Repair ``path`` after a process died while writing it with :func:`atomic_directory` (or inside it with
    :func:`common.staging.atomic_entries`); call it before reading a folder such writes produce.

    If the crash came between the two renames of a swap, ``path`` is missing: the new folder is moved in when
    it was complete (a ``.old`` folder is only made after the new one is whole), else the old one is restored.
    Unfinished ``.tmp`` folders and swapped-out ``.old`` folders of ended processes are removed. Leftovers of
    processes still running (or on another machine) and every other name are never touched.

    Returns:
        ``path``.

    Raises:
        OutputError: a repair was needed and could not be made.

    Example:
        >>> recover_directory("/runs/cell/eval")  # doctest: +SKIP
        PosixPath('/runs/cell/eval')
    """
    dest = Path(path)
    try:
        if dest.parent.is_dir():
            tmps, olds = _stale_siblings(dest)
            if not (dest.exists() or dest.is_symlink()):
                _undo_half_swap(dest, tmps, olds)
            for leftover in (*tmps.values(), *olds.values()):
                logger.warning("removing %s, left by an interrupted write of %s", leftover, dest)
                shutil.rmtree(leftover, ignore_errors=True)
        if dest.is_dir():
            from common.staging import recover_entries

            recover_entries(dest)
    except OSError as err:
        raise OutputError("recover", dest, err) from err
    return dest


def _undo_half_swap(dest: Path, tmps: dict[str, Path], olds: dict[str, Path]) -> None:
    """``dest`` is missing: finish the newest interrupted swap, or restore the folder it swapped out."""
    for key, old in sorted(olds.items(), key=lambda kv: kv[1].stat().st_mtime_ns, reverse=True):
        if not (old / dest.name).exists():
            continue
        if key in tmps:
            os.replace(tmps.pop(key), dest)
            logger.warning("%s was missing after an interrupted swap: moved the completed new folder in", dest)
        else:
            os.replace(old / dest.name, dest)
            logger.warning("%s was missing after an interrupted swap: restored the previous folder", dest)
        _fsync_path(dest.parent, directory=True)
        return


def _swap_in(tmp: Path, dest: Path) -> None:
    """Move the complete folder ``tmp`` onto ``dest``, the old ``dest`` out of the way first."""
    _give_plain_mode(tmp, directory=True)
    _fsync_path(tmp, directory=True)
    if not (dest.exists() or dest.is_symlink()):
        os.replace(tmp, dest)
    else:
        old = tmp.with_name(tmp.name[: -len(".tmp")] + ".old")  # same random part: recovery pairs them
        old.mkdir()
        os.replace(dest, old / dest.name)
        try:
            os.replace(tmp, dest)
        except BaseException:
            os.replace(old / dest.name, dest)
            old.rmdir()
            raise
        shutil.rmtree(old, ignore_errors=True)
    _fsync_path(dest.parent, directory=True)


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``path`` as a whole.

    An existing folder at ``path`` stays untouched until the new one is complete, then is swapped out
    and removed. If the body raises, the temporary folder is removed and ``path`` is unchanged. Leftovers
    of an earlier crashed write are repaired first (:func:`recover_directory`).

    Raises:
        OutputError: the folder cannot be written or swapped in; an ``OSError`` of the body writing into the
            temporary folder (or a full / read-only file system) is raised as one too.

    Example:
        >>> with atomic_directory("/tmp/eval") as tmp:  # doctest: +SKIP
        ...     (tmp / "metrics.json").write_text("{}")
    """
    dest = Path(path)
    _create_folder(dest.parent, "write", dest)
    recover_directory(dest)
    with temporary_folder(dest.parent, f".{dest.name}.{_token()}-", ".tmp", dest) as tmp:
        yield tmp
    try:
        _swap_in(tmp, dest)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError("write", dest, err) from err


def file_sha256(path: str | os.PathLike) -> str:
    """The hex sha256 of the file at ``path`` (read in blocks by :func:`hashlib.file_digest`)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
