"""The manifest of a shared bundle: sha256 and size of every file, written as ``manifest.json`` at its root.

The manifest is what a signature covers (:mod:`common.sharing.signing`), so a receiving site that checks it
knows every byte it received is the byte that was packed. ``manifest.json`` and ``manifest.sig`` themselves
are the only files it does not list. Hashing reads in 1 MiB blocks through :func:`hashlib.file_digest`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from common.io import atomic_write_json, file_sha256
from common.sharing.errors import IntegrityError

__all__ = [
    "MANIFEST",
    "MANIFEST_FORMAT",
    "SIGNATURE",
    "build_manifest",
    "check_manifest",
    "compare_listing",
    "parse_manifest",
    "file_sha256",
    "list_files",
    "read_manifest",
    "write_manifest",
]

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MANIFEST_FORMAT = "medxfer-manifest/1"
_NOT_LISTED = {MANIFEST, SIGNATURE}


def list_files(folder: str | os.PathLike) -> list[str]:
    """Every regular file under ``folder`` as a sorted POSIX path relative to it (manifest and signature left out).

    Raises:
        IntegrityError: a symbolic link (a shared bundle never holds one; it could point anywhere).
    """
    root = Path(folder)
    names = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            raise IntegrityError(f"{rel}: a symbolic link in the bundle at {root}; shared bundles hold plain files")
        if path.is_file() and rel not in _NOT_LISTED:
            names.append(rel)
    return names


def build_manifest(folder: str | os.PathLike, *, bundle: str = "", version: str = "") -> dict[str, Any]:
    """The manifest of ``folder``: ``{"format", "bundle", "version", "algorithm", "files": {path: {sha256, size}}}``."""
    root = Path(folder)
    files = {name: {"sha256": file_sha256(root / name), "size": (root / name).stat().st_size}
             for name in list_files(root)}
    return {"format": MANIFEST_FORMAT, "bundle": bundle, "version": version, "algorithm": "sha256", "files": files}


def write_manifest(folder: str | os.PathLike, *, bundle: str = "", version: str = "") -> Path:
    """Build the manifest of ``folder`` and write it atomically as ``folder/manifest.json``; returns its path."""
    return atomic_write_json(Path(folder) / MANIFEST, build_manifest(folder, bundle=bundle, version=version))


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The manifest of ``folder``, checked for shape.

    Raises:
        IntegrityError: no ``manifest.json``, not JSON, another format, or entries without sha256/size.
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise IntegrityError(f"{MANIFEST}: missing from {folder}; a shared bundle carries one (pack writes it)")
    return parse_manifest(path.read_bytes())


def parse_manifest(raw: bytes) -> dict[str, Any]:
    """The manifest in the bytes ``raw``, checked for shape (see :func:`read_manifest`)."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"{MANIFEST}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or not isinstance(data.get("files"), dict):
        raise IntegrityError(f"{MANIFEST}: expected format {MANIFEST_FORMAT!r} with a 'files' mapping")
    for name, entry in data["files"].items():
        shaped = isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
        if not (shaped and isinstance(entry.get("size"), int)):
            raise IntegrityError(f"{MANIFEST}: entry {name!r} needs a sha256 string and an integer size")
    return data


def check_manifest(folder: str | os.PathLike, digests: dict[str, str] | None = None) -> dict[str, Any]:
    """Check every file of ``folder`` against its manifest; returns the manifest when all match.

    Sizes are compared first, so an added, removed or resized file is found without hashing anything.
    ``digests`` (``{path: sha256}``, e.g. computed while unpacking by :func:`common.sharing.safezip.safe_extract`)
    saves reading those files a second time; a file missing from it is hashed here.

    Raises:
        IntegrityError: naming the first changed, added or removed file (all of them are listed).
    """
    root = Path(folder)
    manifest = read_manifest(root)
    known = digests or {}
    compare_listing(manifest, {name: ((root / name).stat().st_size,
                                      lambda name=name: known.get(name) or file_sha256(root / name))
                               for name in list_files(root)})
    return manifest


def compare_listing(manifest: dict[str, Any], present: dict[str, tuple[int, Any]]) -> None:
    """Compare ``present`` (``{path: (size, sha256 or a function returning it)}``) with ``manifest``.

    A hash is only computed for a file whose size matches. Raises :class:`IntegrityError` naming every changed,
    added and removed file.
    """
    expected: dict[str, dict[str, Any]] = manifest["files"]
    added = sorted(set(present) - set(expected))
    removed = sorted(set(expected) - set(present))

    def differs(name: str) -> bool:
        size, sha = present[name]
        return size != expected[name]["size"] or (sha() if callable(sha) else sha) != expected[name]["sha256"]

    changed = [name for name in sorted(set(present) & set(expected)) if differs(name)]
    problems = [f"{name}: changed (sha256 or size differs from the manifest)" for name in changed]
    problems += [f"{name}: added (not in the manifest)" for name in added]
    problems += [f"{name}: removed (listed in the manifest, missing)" for name in removed]
    if problems:
        raise IntegrityError("; ".join(problems))
