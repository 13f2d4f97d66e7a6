"""A folder registry of shared bundles: archives side by side and an ``index.json`` naming them.

A registry is any folder a site can read (a local disk, a network share, or a folder served over http(s)):

    registry/
      index.json                                   # written by `python -m common.sharing index registry/`
      chest_xray_classification_v0.2.1.zip
      chest_xray_classification_v0.2.2.zip

``index.json``: ``{"format": "medxfer-registry/1", "bundles": {name: {version: {"file", "sha256", "size"}}}}``.
Names and versions come from each archive's own ``manifest.json`` (read without extracting anything); the
sha256 is of the archive bytes, so a fetch from the registry checks what it downloaded before opening it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

from common.io import atomic_write_json
from common.sharing.errors import SharingError
from common.sharing.manifest import MANIFEST, file_sha256

__all__ = ["INDEX", "REGISTRY_FORMAT", "add_arguments", "build_index", "latest_version", "resolve_entry", "run"]

INDEX = "index.json"
REGISTRY_FORMAT = "medxfer-registry/1"
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_MAX_MANIFEST_BYTES = 16 * 1024 * 1024


def _archive_manifest(archive: Path) -> dict[str, Any]:
    """The manifest inside ``archive`` (``<name>/manifest.json``), read without extracting anything else."""
    try:
        with zipfile.ZipFile(archive) as zf:
            entries = [info for info in zf.infolist() if info.filename.count("/") == 1
                       and info.filename.endswith("/" + MANIFEST)]
            if len(entries) != 1:
                raise SharingError(f"{archive}: expected one <name>/{MANIFEST} in the archive, found {len(entries)}")
            if entries[0].file_size > _MAX_MANIFEST_BYTES:
                raise SharingError(f"{archive}: {entries[0].filename} is {entries[0].file_size} bytes; "
                                   f"a manifest is at most {_MAX_MANIFEST_BYTES}")
            return json.loads(zf.read(entries[0]).decode("utf-8"))
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SharingError(f"{archive}: not a readable bundle archive ({exc})") from exc


def build_index(folder: str | os.PathLike) -> Path:
    """Write ``folder/index.json`` listing every ``*.zip`` bundle archive in ``folder``; returns its path.

    Raises:
        SharingError: an archive without a readable manifest naming its bundle and version, or two archives
            claiming the same bundle version.
    """
    root = Path(folder)
    if not root.is_dir():
        raise SharingError(f"{root}: registry folder not found")
    bundles: dict[str, dict[str, dict[str, Any]]] = {}
    for archive in sorted(root.glob("*.zip")):
        manifest = _archive_manifest(archive)
        name, version = manifest.get("bundle"), manifest.get("version")
        if not name or not version:
            raise SharingError(f"{archive}: its {MANIFEST} names no bundle or version (pack writes both)")
        if version in bundles.get(name, {}):
            raise SharingError(f"{archive}: {name} {version} is also {bundles[name][version]['file']}")
        bundles.setdefault(name, {})[version] = {"file": archive.name, "sha256": file_sha256(archive),
                                                 "size": archive.stat().st_size}
    return atomic_write_json(root / INDEX, {"format": REGISTRY_FORMAT, "bundles": bundles})


def _version_key(version: str) -> tuple[int, int, int]:
    match = _VERSION.match(version)
    return (int(match[1]), int(match[2]), int(match[3])) if match else (-1, -1, -1)


def latest_version(versions: dict[str, Any]) -> str:
    """The highest ``X.Y.Z`` among ``versions``' keys (numeric order, so 0.10.0 > 0.9.0)."""
    return max(versions, key=_version_key)


def resolve_entry(index: Any, where: str, name: str | None, version: str | None) -> tuple[str, str, dict[str, Any]]:
    """Pick ``name`` (needed when the registry holds several bundles) at ``version`` (default: latest).

    Args:
        index: the parsed ``index.json``.
        where: the registry's location, for messages.

    Returns:
        ``(name, version, entry)`` with entry ``{"file", "sha256", "size"}``.

    Raises:
        SharingError: a malformed index, or a name or version the registry does not hold (the ones it holds named).
    """
    if not isinstance(index, dict) or index.get("format") != REGISTRY_FORMAT or not isinstance(
            index.get("bundles"), dict):
        raise SharingError(f"{where}: not a medxfer registry index (expected format {REGISTRY_FORMAT!r})")
    bundles: dict[str, dict[str, Any]] = index["bundles"]
    if name is None:
        if len(bundles) != 1:
            raise SharingError(f"{where}: holds {len(bundles)} bundles ({', '.join(sorted(bundles)) or 'none'}); "
                               "choose one with --name")
        name = next(iter(bundles))
    if name not in bundles or not bundles[name]:
        raise SharingError(f"{where}: no bundle {name!r}; it holds {', '.join(sorted(bundles)) or 'none'}")
    versions = bundles[name]
    chosen = version or latest_version(versions)
    if chosen not in versions:
        held = ", ".join(sorted(versions, key=_version_key))
        raise SharingError(f"{where}: {name} has no version {chosen}; it holds {held}")
    entry = versions[chosen]
    if not isinstance(entry, dict) or not {"file", "sha256"} <= set(entry) or "/" in str(entry["file"]) \
            or "\\" in str(entry["file"]) or str(entry["file"]).startswith("."):
        raise SharingError(f"{where}: entry {name} {chosen} needs a plain archive file name and a sha256")
    return name, chosen, entry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m common.sharing index``."""
    parser.add_argument("folder", type=Path, help="registry folder holding <name>_v<version>.zip archives")


def run(args: argparse.Namespace) -> int:
    """``index``: (re)write the registry's index.json and say what it lists."""
    path = build_index(args.folder)
    bundles = json.loads(path.read_text(encoding="utf-8"))["bundles"]
    listed = ", ".join(f"{name} {latest_version(v)} ({len(v)} version{'s' * (len(v) != 1)})"
                       for name, v in sorted(bundles.items()))
    sys.stdout.write(f"wrote {path}: {listed or 'no archives'}\n")
    return 0
