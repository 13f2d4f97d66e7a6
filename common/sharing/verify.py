"""``verify``: every check of a received bundle, each a named line with pass / fail / warn / skipped.

Checks, in order (a folder skips ``unpack``):

- ``unpack``: the archive unpacks under :func:`common.sharing.safezip.safe_extract`'s checks
- ``manifest``: every file matches ``manifest.json`` (:func:`~common.sharing.manifest.check_manifest`)
- ``signature``: ``manifest.sig`` is by a key in ``--trusted-keys``; without that folder: warn, unchecked
- ``required_files``: configs/metadata.json, configs/inference.json, LICENSE, docs/README.md, models/model.pt (or
  its ``large_files.yml`` entry with url and sha256)
- ``code_location``: no importable Python outside ``scripts/`` (the folder goes on ``PYTHONPATH`` for ``net_in_out``
  and ``monai.bundle run``; a ``torch/__init__.py`` there would shadow torch;
  :func:`common.sharing.code_location.importable_outside_scripts`)
- ``metadata``: configs/metadata.json against the MONAI schema shipped in ``common/sharing/schema``
- ``changelog``: the metadata version has a changelog entry
- ``logging_conf``: every ``configs/*.conf`` names only logging's own classes and literal args
  (:func:`common.sharing.logging_check.logging_conf_problem`)
- ``model``: models/model.pt reads with ``torch.load(weights_only=True)`` as a finite state dict (medxfer's reader),
  and matches its card models/model.json
- ``audit``: :func:`common.sharing.audit.audit_bundle` flags nothing (warn when it does)
- ``net_in_out``: ``monai.bundle verify_net_in_out network_def`` on configs/inference.json, in a subprocess

``net_in_out`` is the only check that runs the bundle's code, so it runs last, in its own process (the bundle
folder on ``PYTHONPATH`` for its vendored ``scripts/``, as ``monai.bundle run`` is given it), and only when
nothing before it failed and the audit flagged nothing; otherwise it is skipped and says why. ``--strict``
turns every warning (unsigned, audit findings) into a failure. :func:`verified_bundle` is the context manager
``fetch``/``run``/``evaluate`` share: it yields the report with ``report.folder`` unpacked until the block ends.
The report classes live in :mod:`common.sharing.verify_report`; they, ``logging_conf_problem`` and
``importable_outside_scripts`` are importable from here too.

Example:
    >>> report = verify_bundle("chest_xray_classification_v0.3.0.zip", trusted_keys="keys/")  # doctest: +SKIP
    >>> report.ok, report.to_text().splitlines()[-1]  # doctest: +SKIP
    (True, 'verify chest_xray_classification_v0.3.0.zip: 11 passed, 0 failed, 0 warned, 0 skipped: OK')
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common.sharing.archive_check import check_archive
from common.sharing.code_location import importable_outside_scripts
from common.sharing.errors import SharingError, SignatureError, UnsafeArchiveError
from common.sharing.logging_check import logging_conf_problem, logging_conf_problems
from common.sharing.manifest import SIGNATURE, check_manifest, file_sha256
from common.sharing.safezip import received_bundle
from common.sharing.signing import verify_signature
from common.sharing.verify_report import STATUSES, Check, VerifyReport

__all__ = ["SCHEMA", "STATUSES", "Check", "VerifyReport", "add_arguments", "importable_outside_scripts",
           "logging_conf_problem", "run", "verified_bundle", "verify_bundle"]

#: MONAI's bundle metadata schema (MONAI-extra-test-data release 0.8.1), shipped so nothing is downloaded.
SCHEMA = Path(__file__).with_name("schema") / "meta_schema_20240725.json"
REQUIRED = ("configs/metadata.json", "configs/inference.json", "LICENSE", "docs/README.md")
MODEL = "models/model.pt"
#: Checks after which running the bundle's code is not considered.
_GATES = ("unpack", "manifest", "signature", "required_files", "code_location", "metadata", "logging_conf")
NET_IN_OUT_TIMEOUT_S = 600


def _check_signature(report: VerifyReport, folder: Path, trusted_keys: Path | None) -> None:
    signed = (folder / SIGNATURE).is_file()
    if trusted_keys is None:
        report.add("signature", "warn", f"{SIGNATURE} present but not checked: no --trusted-keys folder given"
                   if signed else f"unsigned: no {SIGNATURE}; the sender is not authenticated")
        return
    try:
        report.add("signature", "pass", f"{SIGNATURE} by trusted key {verify_signature(folder, trusted_keys)}")
    except SharingError as exc:
        report.add("signature", "fail", str(exc))


def _large_file_entry(folder: Path, name: str) -> dict[str, Any] | None:
    """The ``large_files.yml`` entry for ``name`` with a url and a sha256, or None."""
    import yaml

    path = folder / "large_files.yml"
    if not path.is_file():
        return None
    try:
        entries = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("large_files", [])
    except (yaml.YAMLError, AttributeError, UnicodeDecodeError):
        return None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("path") == name and entry.get("url") \
                and str(entry.get("hash_type", "")).lower() == "sha256" \
                and re.fullmatch(r"[0-9a-f]{64}", str(entry.get("hash_val", "")).lower()):
            return entry
    return None


def _check_required(report: VerifyReport, folder: Path) -> None:
    missing = [name for name in REQUIRED if not (folder / name).is_file()]
    if not (folder / MODEL).is_file() and _large_file_entry(folder, MODEL) is None:
        missing.append(f"{MODEL} (nor a large_files.yml entry for it with url and sha256 hash_val)")
    if missing:
        report.add("required_files", "fail", "missing: " + ", ".join(missing))
    else:
        report.add("required_files", "pass", f"{', '.join(REQUIRED)} and {MODEL} present")


def _check_code_location(report: VerifyReport, folder: Path) -> None:
    stray = importable_outside_scripts(folder)
    if stray:
        report.add("code_location", "fail", f"importable code outside scripts/: {', '.join(stray)} (with the bundle "
                                            f"folder on the Python path it would shadow an installed module)")
    else:
        report.add("code_location", "pass", "no importable Python at the bundle root outside scripts/")


def _read_metadata(folder: Path) -> dict[str, Any] | str:
    """configs/metadata.json as a dict, or why not."""
    path = folder / "configs" / "metadata.json"
    if not path.is_file():
        return "configs/metadata.json: missing"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"configs/metadata.json: not valid JSON ({exc})"
    return data if isinstance(data, dict) else "configs/metadata.json: not a JSON object"


def _check_metadata(report: VerifyReport, folder: Path) -> None:
    import jsonschema

    metadata = _read_metadata(folder)
    if isinstance(metadata, str):
        report.add("metadata", "fail", metadata)
        report.add("changelog", "skipped", metadata)
        return
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    # The schema says draft 2019-09, which jsonschema 3.2 does not know; it uses only draft-7 keywords, and
    # naming the validator avoids 3.2's fallback warning. MONAI's verify_metadata validates the same way.
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(metadata))
    if errors:
        error = max(errors, key=jsonschema.exceptions.relevance)  # best_match without its descent into anyOf
        while error.context:  # an anyOf: report the branch that got furthest, not "is not of type 'number'"
            error = min(error.context, key=lambda e: (e.validator == "type", -len(e.absolute_path)))
        where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
        report.add("metadata", "fail", f"configs/metadata.json: {where}: {error.message} (schema {SCHEMA.name})")
    else:
        named = str(metadata.get("schema", "")).rsplit("/", 1)[-1]
        other = f"; it names {named}, validated against the shipped {SCHEMA.name}" if named != SCHEMA.name else ""
        report.add("metadata", "warn" if other else "pass", f"configs/metadata.json valid against {SCHEMA.name}{other}")
    version, changelog = metadata.get("version"), metadata.get("changelog")
    if isinstance(changelog, dict) and version in changelog:
        report.add("changelog", "pass", f"configs/metadata.json: version {version} has a changelog entry")
    else:
        report.add("changelog", "fail", f"configs/metadata.json: version {version!r} has no changelog entry")


def _check_logging(report: VerifyReport, folder: Path) -> None:
    files, problems = logging_conf_problems(folder)
    if problems:
        report.add("logging_conf", "fail", "; ".join(problems))
    else:
        report.add("logging_conf", "pass", "only logging's classes and literal args in "
                   + ", ".join(p.relative_to(folder).as_posix() for p in files) if files else "no configs/*.conf")


def _check_model(report: VerifyReport, folder: Path) -> None:
    from common.errors import WeightsError
    from common.networks.checkpoint_card import read_card
    from common.networks.weights import read_state_dict

    model = folder / MODEL
    if not model.is_file():
        entry = _large_file_entry(folder, MODEL)
        report.add("model", "skipped", f"{MODEL} is not in the bundle" + (
            f"; large_files.yml points to {entry['url']} (sha256 {entry['hash_val']}), checked on download"
            if entry else ""))
        return
    try:
        state = read_state_dict(model)
        card = read_card(model)
    except WeightsError as exc:
        report.add("model", "fail", str(exc).replace(f"{folder}{os.sep}", ""))
        return
    if card is not None and card.get("sha256") != file_sha256(model):
        report.add("model", "fail", f"models/model.json describes another file than {MODEL} (sha256 differs)")
        return
    report.add("model", "pass", f"{MODEL}: {len(state)} tensors, read with weights_only=True"
               + ("; matches models/model.json" if card else "; no card (models/model.json)"))


def _check_audit(report: VerifyReport, folder: Path) -> int | None:
    """The one gate in front of the bundle's code; returns the number of flagged entries (None: no audit)."""
    try:
        from common.sharing.audit import audit_bundle
    except ModuleNotFoundError as exc:  # the gate stays closed without it
        report.add("audit", "skipped", f"not available ({exc}); the bundle's code is not run")
        return None
    try:
        audit = audit_bundle(folder)
    except SharingError as exc:
        report.add("audit", "fail", str(exc))
        return None
    flagged = audit.flagged
    if flagged:
        first = flagged[0]
        report.add("audit", "warn", f"{len(flagged)} of {len(audit.findings)} entries flagged, first {first.file} "
                                    f"{first.config_id} {first.text!r}: {first.reason} (list them: audit)")
    else:
        report.add("audit", "pass", f"0 of {len(audit.findings)} expressions, targets and imports flagged")
    return len(flagged)


def _net_in_out_blocker(report: VerifyReport, folder: Path, flagged: int | None) -> str | None:
    for name in _GATES:
        if report.status(name) == "fail":
            return f"not run: the {name} check failed"
    if flagged is None:
        return "not run: the configs were not audited (this check runs the bundle's code)"
    if flagged:
        return f"not run: audit flagged {flagged} findings (this check runs the bundle's code)"
    if '"network_def"' not in (folder / "configs" / "inference.json").read_text(encoding="utf-8"):
        return "configs/inference.json has no network_def"
    return None


def _check_net_in_out(report: VerifyReport, folder: Path, flagged: int | None) -> None:
    blocker = _net_in_out_blocker(report, folder, flagged)
    if blocker:
        report.add("net_in_out", "skipped", blocker)
        return
    from common.sharing.run import bundle_environment, monai_command

    root = folder.resolve()  # the child starts in the bundle: a relative folder would name the wrong files
    command = monai_command(["network_def", "--meta_file", str(root / "configs" / "metadata.json"),
                             "--config_file", str(root / "configs" / "inference.json"),
                             "--device", "cpu", "--bundle_root", str(root)], verb="verify_net_in_out")
    try:
        done = subprocess.run(command, cwd=root, env=bundle_environment(root), capture_output=True,
                              text=True, timeout=NET_IN_OUT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        report.add("net_in_out", "fail", f"configs/inference.json: network_def did not finish within "
                                         f"{NET_IN_OUT_TIMEOUT_S} s")
        return
    if done.returncode:
        last = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()][-1:] or ["(no output)"]
        report.add("net_in_out", "fail", f"configs/inference.json: network_def fails verify_net_in_out: {last[0]}")
    else:
        report.add("net_in_out", "pass", "configs/inference.json: network_def maps the metadata's input shape and "
                                         "dtype to its output channels and dtype")


def _check_archive_integrity(report: VerifyReport, archive: Path, trusted_keys: Path | None, **limits: Any) -> bool:
    """``manifest`` and ``signature`` of an archive, in one read before unpacking; False when it must not be
    unpacked (an unsafe entry fails ``unpack``; a changed, added or removed file or a bad signature fails its check;
    the later checks are then skipped and nothing reaches the disk)."""
    try:
        manifest, kid, signed = check_archive(archive, trusted_keys, **limits)
    except UnsafeArchiveError as exc:
        report.add("unpack", "fail", str(exc))
        return False
    except SignatureError as exc:
        report.add("manifest", "pass", "every file matches manifest.json (checked in the archive, before unpacking)")
        report.add("signature", "fail", f"{exc}; nothing was unpacked")
        return False
    except SharingError as exc:
        report.add("manifest", "fail", f"{exc} (checked in the archive; nothing was unpacked)")
        return False
    report.add("manifest", "pass", f"{len(manifest['files'])} files match manifest.json (sha256 and size, checked "
                                   "in the archive before unpacking)")
    if kid is not None:
        report.add("signature", "pass", f"{SIGNATURE} by trusted key {kid}")
    else:
        report.add("signature", "warn", f"{SIGNATURE} present but not checked: no --trusted-keys folder given"
                   if signed else f"unsigned: no {SIGNATURE}; the sender is not authenticated")
    return True


def _check_folder(report: VerifyReport, folder: Path, trusted_keys: Path | None, integrity_done: bool = False) -> None:
    if not integrity_done:
        try:
            files = check_manifest(folder)["files"]
            report.add("manifest", "pass", f"{len(files)} files match manifest.json (sha256 and size)")
        except SharingError as exc:
            report.add("manifest", "fail", str(exc))
        _check_signature(report, folder, trusted_keys)
    _check_required(report, folder)
    _check_code_location(report, folder)
    _check_metadata(report, folder)
    _check_logging(report, folder)
    _check_model(report, folder)
    _check_net_in_out(report, folder, _check_audit(report, folder))


_LATER = ("manifest", "signature", "required_files", "code_location", "metadata", "changelog", "logging_conf",
          "model", "audit", "net_in_out")


@contextmanager
def verified_bundle(path: str | os.PathLike, trusted_keys: str | os.PathLike | None = None,
                    strict: bool = False, **limits: float) -> Iterator[VerifyReport]:
    """Verify the archive or folder ``path``; yields the report, ``report.folder`` usable until the block ends.

    An archive is unpacked into a temporary folder removed on exit; a refused archive gives a report whose
    ``unpack`` check failed, every other check skipped, and ``folder`` None.

    Args:
        path: a bundle archive (``.zip``) or folder.
        trusted_keys: folder of trusted ``*.pub`` keys; None leaves the signature unchecked (a warning).
        strict: warnings count as failures.
        limits: ``max_total_bytes``, ``max_files``, ``max_ratio`` for unpacking.
    """
    source = Path(path)
    report = VerifyReport(str(source), strict)
    keys = None if trusted_keys is None else Path(trusted_keys)
    if source.is_dir():
        report.add("unpack", "skipped", f"{source} is a folder, not an archive")
    elif source.is_file() and not _check_archive_integrity(report, source, keys, **limits):
        if report.status("unpack") is None:
            report.add("unpack", "skipped", "refused before unpacking")
        for name in _LATER:
            if report.status(name) is None:
                report.add(name, "skipped", "the archive was not unpacked")
        yield report
        return
    try:
        with received_bundle(source, **limits) as folder:
            if not source.is_dir():
                report.add("unpack", "pass", f"{source.name}: unpacked safely ({folder.name}/)")
            report.folder = folder
            _check_folder(report, folder, keys, integrity_done=source.is_file())
            yield report
            return
    except SharingError as exc:
        if report.folder is not None:  # raised by a check or the caller's block, not by unpacking
            raise
        report.add("unpack", "fail", str(exc))
    for name in _LATER:
        if report.status(name) is None:
            report.add(name, "skipped", "the archive was not unpacked")
    yield report


def verify_bundle(path: str | os.PathLike, trusted_keys: str | os.PathLike | None = None,
                  strict: bool = False) -> VerifyReport:
    """Verify the archive or folder ``path`` (see the module docstring); the report, ``ok`` when nothing failed."""
    with verified_bundle(path, trusted_keys, strict) as report:
        report.folder = None if Path(path).is_file() else report.folder  # the temporary folder is gone after this
        return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m common.sharing verify``."""
    parser.add_argument("source", metavar="ARCHIVE_OR_DIR", type=Path, help="a bundle archive (.zip) or folder")
    parser.add_argument("--trusted-keys", type=Path, metavar="DIR",
                        help="folder of trusted Ed25519 public keys (*.pub); without it the signature is not checked")
    parser.add_argument("--strict", action="store_true", help="fail on warnings too (unsigned, audit findings)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of text")
    parser.add_argument("--report", type=Path, metavar="FILE", help="also write the JSON report to FILE")


def run(args: argparse.Namespace) -> int:
    """``verify``: print the report; exit status 0 when every check passed (or warned), 1 when one failed."""
    from common.io import atomic_write_json

    if not args.source.exists():
        raise SharingError(f"{args.source}: no such bundle archive or folder")
    if args.trusted_keys is not None and not args.trusted_keys.is_dir():
        raise SharingError(f"{args.trusted_keys}: trusted-keys folder not found")
    report = verify_bundle(args.source, args.trusted_keys, args.strict)
    if args.report:
        atomic_write_json(args.report, report.to_json())
    sys.stdout.write((json.dumps(report.to_json(), indent=2) if args.json else report.to_text()) + "\n")
    return 0 if report.ok else 1
