"""Integrity of a bundle archive in one read, before anything is unpacked.

Every entry passes :func:`common.sharing.safezip.check_entries` (names, links, sizes, counts), then each file is
streamed once through sha256 (not through zipfile's CRC-32 too: the sha256 is the stronger check) and compared
with the archive's own
``manifest.json``; with trusted keys, ``manifest.sig`` is checked over the manifest's bytes. Nothing is written,
so a tampered or forged archive is refused before a single file of it reaches the disk, and verifying costs one
read of the archive (``benchmarks/sharing.py``). Unpacking afterwards (:func:`common.sharing.safezip.safe_extract`)
extracts the same entries under the same checks, with their CRCs verified again.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from typing import Any

from common.sharing.errors import IntegrityError, SignatureError, UnsafeArchiveError
from common.sharing.manifest import MANIFEST, SIGNATURE, compare_listing, parse_manifest
from common.sharing.safezip import check_entries, open_archive
from common.sharing.signing import verify_manifest_bytes

__all__ = ["check_archive"]

_CHUNK = 1 << 20


def _sha256(source: zipfile.ZipFile, info: zipfile.ZipInfo) -> str:
    """The sha256 of one entry's content. zipfile's CRC-32 check is switched off for this read (its private
    ``_expected_crc``, the attribute ``ZipExtFile`` itself sets to None for entries without a CRC): the sha256 is
    compared with the signed manifest, a strictly stronger check, and the CRC would add ~50 % to the cost."""
    digest = hashlib.sha256()
    with source.open(info) as reader:
        reader._expected_crc = None  # noqa: SLF001
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_archive(archive: str | os.PathLike, trusted_keys: str | os.PathLike | None = None,
                  **limits: Any) -> tuple[dict[str, Any], str | None, bool]:
    """Check ``archive``'s entries, every file against its manifest and, with ``trusted_keys``, its signature.

    Returns:
        ``(manifest, key id or None, signed)``: ``signed`` says whether the archive holds a ``manifest.sig``.

    Raises:
        UnsafeArchiveError: not a zip, an unsafe entry, a limit exceeded, or a corrupt entry (CRC), named.
        IntegrityError: no manifest, or files changed, added or removed (all named).
        SignatureError: with ``trusted_keys``: unsigned, untrusted key, or a signature that does not match.
    """
    path = Path(archive)
    with open_archive(path) as source:
        infos = source.infolist()
        top = check_entries(path, infos, **limits)
        files = {info.filename[len(top) + 1:]: info for info in infos if not info.is_dir()}
        if MANIFEST not in files:
            raise IntegrityError(f"{MANIFEST}: missing from {path}; a shared bundle carries one (pack writes it)")
        try:
            raw = source.read(files[MANIFEST])
            manifest = parse_manifest(raw)
            present = {name: (info.file_size,
                              _sha256(source, info) if info.file_size == manifest["files"].get(name, {}).get("size")
                              else "")
                       for name, info in files.items() if name not in (MANIFEST, SIGNATURE)}
            signature = source.read(files[SIGNATURE]) if SIGNATURE in files else None
        except (zipfile.BadZipFile, EOFError, NotImplementedError) as exc:
            raise UnsafeArchiveError(f"{path}: an entry is corrupt or unreadable ({exc})") from exc
    compare_listing(manifest, present)
    if trusted_keys is None:
        return manifest, None, signature is not None
    if signature is None:
        raise SignatureError(f"{SIGNATURE}: missing; the bundle is not signed (pack --sign KEY signs it)")
    return manifest, verify_manifest_bytes(raw, signature, trusted_keys), True
