"""Fetch a shared bundle, verify it, and only then place it where a site runs it.

Sources (``python -m common.sharing fetch SOURCE --to DIR``):

- a bundle archive: a local ``.zip`` path, or an ``http(s)://`` / ``file://`` URL to one;
- a folder registry (:mod:`common.sharing.registry`): a local or network folder holding ``index.json``, or the
  URL of such an ``index.json`` (``--name`` picks the bundle when it holds several, ``--version`` the version,
  latest by default); the archive's sha256 from the index is checked before the archive is opened;
- the Hugging Face Hub: ``hf://owner/repo[@version]`` through MONAI's own
  ``monai.bundle.download(source="huggingface_hub")`` (needs the ``huggingface_hub`` package);
- a bundle folder (one with ``configs/metadata.json``), e.g. on a share.

Downloads use :mod:`urllib.request` (no extra dependency), stream to a temporary file beside ``--to`` with a
byte limit and a progress bar, and are verified (:func:`common.sharing.verify.verify_bundle`) before anything
is written under ``--to``: a bundle that fails verification is refused and leaves nothing behind.
``--no-verify`` skips the manifest, signature, schema and model checks; safe unpacking (path traversal, links,
size and file-count limits) is never skipped. The result is ``DIR/<name>/`` (the bundle, ready for ``run`` and
``evaluate``) and, for an archive, ``DIR/<archive file>`` (the signed original, kept for re-verification).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from common.io import make_directory
from common.sharing.errors import IntegrityError, SharingError, VerificationError
from common.sharing.manifest import file_sha256
from common.sharing.registry import INDEX, resolve_entry

__all__ = ["FetchResult", "add_arguments", "download", "fetch", "run"]

DEFAULT_MAX_BYTES = 16 * 1024**3
_CHUNK = 1024 * 1024
_TIMEOUT_S = 60.0


@dataclass
class FetchResult:
    """Where a fetched bundle landed and what its verification said.

    Attributes:
        bundle_dir: the bundle folder under ``--to``.
        archive: the archive kept beside it (``None`` for a folder or Hub source).
        report: the verification report (``None`` with ``--no-verify``).
    """

    bundle_dir: Path
    archive: Path | None
    report: Any


def download(url: str, destination: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, progress: bool = True) -> Path:
    """Stream ``url`` into the file ``destination`` (written whole or not at all), at most ``max_bytes``.

    Raises:
        SharingError: the server answers with an error or cannot be reached, or the body exceeds ``max_bytes``
            (checked on the announced length and on the bytes actually received).
    """
    partial = destination.with_name(destination.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response, open(partial, "wb") as out:  # noqa: S310
            announced = int(response.headers.get("Content-Length") or 0)
            if announced > max_bytes:
                raise SharingError(f"{url}: announces {announced} bytes, above the limit of {max_bytes} (--max-bytes)")
            received = 0
            with tqdm(total=announced or None, unit="B", unit_scale=True, desc=Path(url).name or url,
                      disable=not progress, file=sys.stderr) as bar:
                while chunk := response.read(_CHUNK):
                    received += len(chunk)
                    if received > max_bytes:
                        raise SharingError(f"{url}: more than {max_bytes} bytes received (--max-bytes); refused")
                    out.write(chunk)
                    bar.update(len(chunk))
        os.replace(partial, destination)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise SharingError(f"{url}: download failed ({getattr(exc, 'reason', exc)})") from exc
    finally:
        partial.unlink(missing_ok=True)
    return destination


def _read_json_url(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:  # noqa: S310
            return json.loads(response.read(16 * 1024 * 1024).decode("utf-8"))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise SharingError(f"{url}: registry index not readable ({getattr(exc, 'reason', exc)})") from exc


def _check_sha256(path: Path, expected: str, where: str) -> None:
    found = file_sha256(path)
    if found != expected:
        raise IntegrityError(f"{where}: sha256 {found} differs from the registry index's {expected}; refused")


def _is_url(source: str) -> bool:
    return urllib.parse.urlparse(source).scheme in ("http", "https", "file")


def _acquire(source: str, work: Path, args: dict[str, Any]) -> tuple[Path, str]:
    """Bring ``source`` into ``work``; returns ``(path, kind)`` with kind ``"archive"`` or ``"folder"``."""
    name, version, max_bytes, progress = args["name"], args["version"], args["max_bytes"], args["progress"]
    if source.startswith("hf://"):
        return _from_hub(source[len("hf://"):], work, name, version), "folder"
    if _is_url(source):
        path = urllib.parse.urlparse(source).path
        if path.endswith(".zip"):
            archive = download(source, work / Path(path).name, max_bytes=max_bytes, progress=progress)
            if args["sha256"]:
                _check_sha256(archive, args["sha256"], source)
            return archive, "archive"
        index_url = source if path.endswith(".json") else source.rstrip("/") + "/" + INDEX
        _, _, entry = resolve_entry(_read_json_url(index_url), index_url, name, version)
        archive_url = urllib.parse.urljoin(index_url, urllib.parse.quote(entry["file"]))
        archive = download(archive_url, work / entry["file"], max_bytes=max_bytes, progress=progress)
        _check_sha256(archive, entry["sha256"], archive_url)
        return archive, "archive"
    local = Path(source)
    if local.is_file() and local.suffix == ".zip":
        if args["sha256"]:
            _check_sha256(local, args["sha256"], str(local))
        return local, "archive"
    if local.is_dir() and (local / INDEX).is_file():
        try:
            index = json.loads((local / INDEX).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SharingError(f"{local / INDEX}: not readable ({exc})") from exc
        _, _, entry = resolve_entry(index, str(local / INDEX), name, version)
        archive = local / entry["file"]
        if not archive.is_file():
            raise SharingError(f"{archive}: listed in {local / INDEX} but missing")
        _check_sha256(archive, entry["sha256"], str(archive))
        return archive, "archive"
    if local.is_dir() and (local / "configs" / "metadata.json").is_file():
        return local, "folder"
    raise SharingError(f"{source}: not a bundle archive (.zip), a registry folder or URL with {INDEX}, a bundle "
                       "folder (configs/metadata.json), or hf://owner/repo")


def _from_hub(repo: str, work: Path, name: str | None, version: str | None) -> Path:
    """Download ``repo`` (``owner/repo[@version]``) with MONAI's Hugging Face Hub source into ``work``."""
    try:
        import huggingface_hub  # noqa: F401
    except ImportError as exc:
        raise SharingError("hf:// sources need the huggingface_hub package (pip install huggingface_hub); "
                           "or download the archive yourself and fetch the .zip") from exc
    from monai.bundle import download as monai_download

    repo, _, tag = repo.partition("@")
    bundle_name = name or repo.rsplit("/", 1)[-1]
    monai_download(name=bundle_name, version=version or tag or None, bundle_dir=str(work),
                   source="huggingface_hub", repo=repo)
    folder = work / bundle_name
    if not (folder / "configs" / "metadata.json").is_file():
        raise SharingError(f"hf://{repo}: downloaded, but {bundle_name}/configs/metadata.json is not in it")
    return folder


def _verify(path: Path, trusted_keys: Path | None, strict: bool) -> Any:
    from common.sharing.verify import verify_bundle

    return verify_bundle(path, trusted_keys=trusted_keys, strict=strict)


def fetch(source: str, to: str | os.PathLike, *, name: str | None = None, version: str | None = None,
          sha256: str | None = None, trusted_keys: str | os.PathLike | None = None, strict: bool = False,
          verify: bool = True, max_bytes: int = DEFAULT_MAX_BYTES, progress: bool = True) -> FetchResult:
    """Fetch ``source`` into ``to``, verified first (see the module docstring for the sources).

    Raises:
        SharingError: an unknown source, a failed download or sha256 check, a destination that exists already,
            or a bundle that fails verification (the report's failing checks named; nothing written).
    """
    dest = make_directory(to)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=dest) as tmp:
        work = Path(tmp)
        path, kind = _acquire(source, work, {"name": name, "version": version, "sha256": sha256,
                                             "max_bytes": max_bytes, "progress": progress})
        report = None
        if verify:
            report = _verify(path, Path(trusted_keys) if trusted_keys else None, strict)
            if not report.ok:
                raise VerificationError(f"{source}: verification failed: {report.failure_summary()}", report)
        return _install(path, kind, dest, work, report)


def _install(path: Path, kind: str, dest: Path, work: Path, report: Any) -> FetchResult:
    """Put the verified bundle at ``dest/<name>`` (and the archive beside it) by renames inside ``dest``."""
    from common.sharing.safezip import safe_extract

    if kind == "archive":
        bundle = safe_extract(path, work / "unpacked")
        kept = dest / path.name
        if kept.exists() and file_sha256(kept) != file_sha256(path):
            raise SharingError(f"{kept}: exists with other content; move it away or fetch --to another folder")
    else:
        bundle = Path(shutil.copytree(path, work / "unpacked" / path.name, symlinks=True))
        kept = None
    target = dest / bundle.name
    if target.exists():
        raise SharingError(f"{target}: exists already; fetch never replaces a bundle (remove it or use another --to)")
    os.replace(bundle, target)
    if kept is not None and not kept.exists():
        shutil.copyfile(path, kept)
    return FetchResult(bundle_dir=target, archive=kept, report=report)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m common.sharing fetch``."""
    parser.add_argument("source", help="archive path or URL, registry folder or index URL, bundle folder, "
                                       "or hf://owner/repo[@version]")
    parser.add_argument("--to", required=True, type=Path, help="folder receiving <name>/ and the archive")
    parser.add_argument("--name", help="bundle name in a registry holding several")
    parser.add_argument("--version", help="bundle version in a registry (default: the latest)")
    parser.add_argument("--sha256", help="expected sha256 of an archive given by path or URL")
    parser.add_argument("--trusted-keys", type=Path, help="folder of trusted public keys; the signature is checked")
    parser.add_argument("--strict", action="store_true", help="warnings fail verification (e.g. unsigned)")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip manifest, signature, schema and model checks (safe unpacking still runs)")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="download size limit in bytes")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """``fetch``: fetch, verify, place; print the verification report and where the bundle is."""
    if args.no_verify:
        sys.stderr.write("warning: --no-verify: manifest hashes, signature, metadata schema, network and model "
                         "checks are skipped; safe unpacking still runs\n")
    result = fetch(args.source, args.to, name=args.name, version=args.version, sha256=args.sha256,
                   trusted_keys=args.trusted_keys, strict=args.strict, verify=not args.no_verify,
                   max_bytes=args.max_bytes, progress=not args.quiet)
    if result.report is not None:
        sys.stdout.write(result.report.to_text() + "\n")
    sys.stdout.write(f"fetched {result.bundle_dir}" + (f" (archive kept: {result.archive})" if result.archive
                                                       else "") + "\n")
    return 0
