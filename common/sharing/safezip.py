"""Unpacking a received bundle archive without trusting a byte of it.

:func:`safe_extract` checks every entry of the zip before writing anything, streams each file out while
counting bytes, and moves the result into place only when all of it is out. :func:`received_bundle` is the
context manager the other verbs share: a folder is used as it is, an archive is unpacked into a temporary
folder that is removed on exit.

MONAI's own unpacking (``monai.apps.utils.extractall`` -> ``_extract_zip`` -> ``safe_extract_member``,
MONAI 1.6.1) refuses tar symbolic and hard links, names that are absolute or hold ``..`` after
``os.path.normpath`` split on ``os.sep``, and names whose real path leaves the destination. What this module
adds, and why:

- zip symbolic links (``external_attr`` file type ``S_IFLNK``), FIFOs and devices: ``ZipInfo`` has no
  ``issym``/``islnk``, so MONAI writes such an entry as a plain file holding the link target;
- backslashes, drive letters (``C:``, ``C:\\``) and UNC names (``//host``): on Linux ``os.sep`` is ``/``,
  so ``..\\..\\x`` and ``C:\\x`` pass MONAI's check and become traversals on a Windows receiver;
- non-canonical names (``a/./b``, ``a//b``), NUL bytes, and duplicates, also ones that differ only in case
  or clash as file and folder (one of two entries would silently win, so what was hashed is not what lands);
- exactly one top-level folder (the model-zoo layout ``<name>/configs/...``), returned to the caller;
- a limit on total size (declared sizes checked first, then the bytes actually written are counted, so a
  header that lies is caught), on the number of entries, and on the compression ratio of large entries
  (zip bombs); encrypted entries;
- extraction into a fresh temporary folder with exclusive creates (``open(..., "xb")``), moved into place
  only when complete: never over existing files, and nothing half-written left behind on a refusal.
  (MONAI opens targets with ``"wb"``, overwriting.)

Example:
    >>> with received_bundle("chest_xray_classification_v0.3.0.zip") as folder:  # doctest: +SKIP
    ...     (folder / "configs" / "metadata.json").is_file()
    True
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from common.sharing.errors import SharingError, UnsafeArchiveError

__all__ = ["DEFAULT_MAX_FILES", "DEFAULT_MAX_RATIO", "DEFAULT_MAX_TOTAL_BYTES", "check_entries", "open_archive",
           "received_bundle", "safe_extract"]

#: Far above any bundle we ship (a Swin UNETR bundle is under 300 MB), far below a zip bomb's output.
DEFAULT_MAX_TOTAL_BYTES = 4 * 1024**3
#: A bundle holds tens of files; vendored ``scripts/`` a few hundred at most.
DEFAULT_MAX_FILES = 10_000
#: Weights deflate to ~1.1x and JSON to ~10x; deflate's ceiling is ~1032x, which is what a bomb uses.
DEFAULT_MAX_RATIO = 200.0
#: Entries smaller than this are exempt from the ratio limit (a short, repetitive JSON file can exceed it).
RATIO_EXEMPT_BYTES = 1024**2
_CHUNK = 1024**2
_DRIVE = re.compile(r"^[A-Za-z]:")


def _entry_type_error(info: zipfile.ZipInfo) -> str | None:
    """Why ``info`` is not a plain file or folder entry, or None."""
    # The high 16 bits hold st_mode when set, whatever create_system claims; a file type of 0 (permission bits
    # only, as zipfile.writestr(name, ...) writes) is a plain entry.
    file_type = stat.S_IFMT(info.external_attr >> 16)
    if stat.S_ISLNK(file_type):
        return "a symbolic link"
    if file_type and not (stat.S_ISREG(file_type) or stat.S_ISDIR(file_type)):
        return f"a special file (file type {oct(file_type)}), not a regular file or folder"
    if info.flag_bits & 0x1:
        return "encrypted"
    if info.is_dir() and info.file_size:
        return f"a folder entry with {info.file_size} bytes of data"
    return None


def _entry_name_error(name: str) -> str | None:
    """Why the entry ``name`` could escape the destination or is not a canonical relative POSIX path, or None."""
    if not name or "\x00" in name:
        return "an empty name or a NUL byte"
    if "\\" in name:
        return "a backslash (a path separator on Windows)"
    if name.startswith("/") or _DRIVE.match(name):
        return "an absolute path"
    parts = name.removesuffix("/").split("/")
    if ".." in parts:
        return "a '..' component (path traversal)"
    if any(part in ("", ".") for part in parts):
        return "an empty or '.' component (not a canonical path)"
    return None


def open_archive(archive: Path) -> zipfile.ZipFile:
    """``archive`` opened for reading; raises :class:`UnsafeArchiveError` naming it when it is not a readable zip."""
    try:
        return zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UnsafeArchiveError(f"{archive}: not a readable zip archive ({exc})") from exc


def check_entries(archive: Path, infos: list[zipfile.ZipInfo], max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
                  max_files: int = DEFAULT_MAX_FILES, max_ratio: float = DEFAULT_MAX_RATIO) -> str:
    """Check every entry before anything is written; returns the single top-level folder name."""
    if len(infos) > max_files:
        raise UnsafeArchiveError(f"{archive}: {len(infos)} entries, more than the limit of {max_files} "
                                 f"(first entry over it: {infos[max_files].filename})")
    seen: dict[str, str] = {}
    files: set[str] = set()
    tops: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        reason = _entry_name_error(name) or _entry_type_error(info)
        if reason:
            raise UnsafeArchiveError(f"{archive}: entry {name!r} is {reason}; refused")
        key = name.removesuffix("/").casefold()
        if key in seen:
            raise UnsafeArchiveError(f"{archive}: entry {name!r} duplicates {seen[key]!r}; refused")
        seen[key] = name
        if not info.is_dir():
            files.add(key)
        tops.add(name.split("/")[0])
        if "/" not in name.removesuffix("/") and not info.is_dir():
            raise UnsafeArchiveError(f"{archive}: entry {name!r} lies outside a top-level folder; a bundle archive "
                                     f"holds one folder <name>/ with everything under it")
        total += info.file_size
        if total > max_total_bytes:
            raise UnsafeArchiveError(f"{archive}: entry {name!r} brings the declared size to {total} bytes, over "
                                     f"the limit of {max_total_bytes}")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_EXEMPT_BYTES and ratio > max_ratio:
            raise UnsafeArchiveError(f"{archive}: entry {name!r} expands {ratio:.0f}x, over the compression-ratio "
                                     f"limit of {max_ratio:g}x (zip bomb)")
    for key in seen:
        for parent in PurePosixPath(key).parents:
            if str(parent) in files:
                raise UnsafeArchiveError(f"{archive}: entry {seen[key]!r} lies under {seen[str(parent)]!r}, "
                                         f"which is a file; refused")
    if len(tops) != 1:
        raise UnsafeArchiveError(f"{archive}: {len(tops)} top-level entries ({', '.join(sorted(tops)[:5])}); a "
                                 f"bundle archive holds exactly one folder <name>/")
    return tops.pop()


def _stream_entry(source: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, written_so_far: int,
                  max_total_bytes: int, max_ratio: float, archive: Path, digest: Any = None) -> int:
    """Copy one entry to ``target`` (created exclusively), counting bytes and feeding ``digest`` (a hashlib object)
    with them; returns the bytes written."""
    written = 0
    with source.open(info) as reader, open(target, "xb") as writer:
        while chunk := reader.read(_CHUNK):
            written += len(chunk)
            if digest is not None:
                digest.update(chunk)
            if written > info.file_size:
                raise UnsafeArchiveError(f"{archive}: entry {info.filename!r} holds more than the {info.file_size} "
                                         f"bytes its header declares (a lying size header)")
            if written_so_far + written > max_total_bytes:
                raise UnsafeArchiveError(f"{archive}: entry {info.filename!r} brings the unpacked size over the "
                                         f"limit of {max_total_bytes} bytes")
            if written > RATIO_EXEMPT_BYTES and written > max_ratio * max(info.compress_size, 1):
                raise UnsafeArchiveError(f"{archive}: entry {info.filename!r} expands over the compression-ratio "
                                         f"limit of {max_ratio:g}x (zip bomb)")
            writer.write(chunk)
    if written != info.file_size:
        raise UnsafeArchiveError(f"{archive}: entry {info.filename!r} holds {written} bytes, its header declares "
                                 f"{info.file_size}")
    target.chmod(0o644)  # never the archive's mode bits (no setuid, no executable weights)
    return written


def _extract_all(source: zipfile.ZipFile, infos: list[zipfile.ZipInfo], staging: Path, archive: Path,
                 max_total_bytes: int, max_ratio: float, digests: dict[str, str] | None = None) -> None:
    total = 0
    for info in infos:
        target = staging.joinpath(*info.filename.removesuffix("/").split("/"))
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256() if digests is not None else None
        try:
            total += _stream_entry(source, info, target, total, max_total_bytes, max_ratio, archive, digest)
            if digests is not None and digest is not None:
                digests[info.filename.split("/", 1)[1]] = digest.hexdigest()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
            raise UnsafeArchiveError(f"{archive}: entry {info.filename!r} is corrupt or unreadable ({exc})") from exc


def safe_extract(archive: str | os.PathLike, destination: str | os.PathLike, *,
                 max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES, max_files: int = DEFAULT_MAX_FILES,
                 max_ratio: float = DEFAULT_MAX_RATIO, digests: dict[str, str] | None = None) -> Path:
    """Unpack the bundle archive ``archive`` into ``destination``; returns ``destination/<name>``.

    Every entry is checked before anything is written (see the module docstring for the list). Files are
    streamed into a fresh temporary folder inside ``destination`` and the bundle folder is moved into place
    once all of it is out; on any refusal the temporary folder is removed.

    Args:
        archive: a ``.zip`` whose entries all lie under one folder ``<name>/``.
        destination: the folder to unpack into (created if missing); ``destination/<name>`` must not exist.
        max_total_bytes: limit on the unpacked size, declared and actually written.
        max_files: limit on the number of entries (files and folders).
        max_ratio: limit on an entry's unpacked/packed size ratio (entries over 1 MiB only).
        digests: when given, filled with the sha256 of every file as it is written (``{path inside the bundle:
            hex}``), so a manifest check needs no second read (:func:`common.sharing.manifest.check_manifest`).

    Raises:
        UnsafeArchiveError: naming the archive and the entry at fault: not a zip, corrupt, traversal, absolute
            path, link or special file, duplicate, more than one top-level entry, size, count or ratio limit.
        SharingError: ``archive`` is missing, or ``destination/<name>`` exists already.
    """
    archive, destination = Path(archive), Path(destination)
    if not archive.is_file():
        raise SharingError(f"{archive}: archive not found")
    with open_archive(archive) as source:
        infos = source.infolist()
        if not infos:
            raise UnsafeArchiveError(f"{archive}: an empty zip archive, expected a bundle folder <name>/")
        name = check_entries(archive, infos, max_total_bytes, max_files, max_ratio)
        final = destination / name
        if final.exists():
            raise SharingError(f"{final}: exists already; unpacking never writes over existing files")
        destination.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.unpacking-", dir=destination))
        try:
            _extract_all(source, infos, staging, archive, max_total_bytes, max_ratio, digests)
            (staging / name).rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return final


@contextmanager
def received_bundle(source: str | os.PathLike, **limits: float) -> Iterator[Path]:
    """The bundle folder of ``source``: a folder as it is, a ``.zip`` safely unpacked into a temporary folder.

    The temporary folder is removed when the ``with`` block ends; copy what you keep, or call
    :func:`safe_extract` with your own destination instead.

    Args:
        source: a bundle folder or a bundle archive.
        limits: ``max_total_bytes``, ``max_files`` or ``max_ratio`` for :func:`safe_extract`.

    Raises:
        SharingError: ``source`` is neither a folder nor a file; any error of :func:`safe_extract`.
    """
    path = Path(source)
    if path.is_dir():
        yield path
        return
    if not path.is_file():
        raise SharingError(f"{path}: no such bundle folder or archive")
    with tempfile.TemporaryDirectory(prefix="medxfer-received-") as scratch:
        yield safe_extract(path, scratch, **limits)  # type: ignore[arg-type]
