"""``pack``: a trained bundle as a model-zoo-layout archive another site can verify and run without medxfer.

``python -m common.sharing pack BUNDLE --output DIR [--version X.Y.Z --changelog TEXT] [--sign KEY]
[--large-files-url URL] [--datalist FILE]`` writes ``DIR/<name>_v<version>.zip``, every entry under one top-level
folder ``<name>/`` (so ``monai.bundle.download(url=...)`` unpacks it as a bundle named ``<name>``)::

    <name>/configs/...            the bundle's configs (a strategy overlay as configs/finetune.json), pointing at
                                  scripts/ instead of common (common.sharing.vendor)
    <name>/docs/README.md         the model card, with a generated "This build" section
    <name>/docs/provenance.json   metrics summary, strategy, data fingerprint, versions (common.sharing.provenance)
    <name>/LICENSE
    <name>/models/model.pt        the weights (or large_files.yml naming their URL and sha256, --large-files-url)
    <name>/models/model.json      the checkpoint card
    <name>/scripts/...            the vendored common modules, with scripts/vendored.json
    <name>/manifest.json          sha256 + size of every other file; <name>/manifest.sig with --sign

The package's configs describe the model it carries: their top-level ``arch``, ``class_names`` and preprocessing
scalars (``image_size``, CLAHE ...) are set to the checkpoint card's values, so the received ``inference.json``
accepts its own model without overrides (the card section lists what was set).

Only those files are copied into a staging folder first: logs, eval outputs (predictions, plots, reports),
``models/checkpoint.pt`` (optimizer state, RNG), caches and anything else in the bundle folder never reach the
archive. The version: ``--version`` with ``--changelog`` sets it (refused when the changelog has it already or it
is not above the current one); without ``--version`` the patch number of the current version is bumped. The new
version and changelog entry are written back into the bundle's ``configs/metadata.json`` once the archive exists
(``--no-record`` leaves the bundle untouched), so the next pack bumps past it. An existing archive is never
overwritten; the archive is written atomically.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import yaml

from common.io import atomic_save, atomic_write_json, atomic_write_text, make_directory
from common.sharing.errors import PackError
from common.sharing.manifest import file_sha256, list_files, write_manifest
from common.sharing.provenance import build_provenance, render_build_section, update_model_card
from common.sharing.signing import load_private_key, sign_manifest
from common.sharing.vendor import VENDOR_RECORD, referenced_modules, vendor_into

__all__ = ["LARGE_FILES", "SHARED_FILES", "SHARED_FOLDERS", "add_arguments", "next_version", "pack_bundle", "run"]

logger = logging.getLogger(__name__)

SHARED_FOLDERS = ("configs", "docs")
SHARED_FILES = ("LICENSE", "models/model.pt", "models/model.json")
LARGE_FILES = "large_files.yml"
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_SKIPPED_PARTS = {"__pycache__", ".ipynb_checkpoints"}


def _parse_version(text: str, where: str) -> tuple[int, int, int]:
    match = _VERSION.match(str(text))
    if match is None:
        raise PackError(f"{where}: version {text!r} is not MAJOR.MINOR.PATCH (e.g. 0.2.1)")
    return int(match[1]), int(match[2]), int(match[3])


def next_version(metadata: dict[str, Any], version: str | None, changelog: str | None) -> tuple[str, str, bool]:
    """``(new version, changelog text, bumped)`` for a bundle whose metadata is ``metadata``.

    Raises:
        PackError: a malformed version, ``--version`` without ``--changelog``, a version the changelog has
            already, or one not above the current version.
    """
    current = str(metadata.get("version", "0.0.0"))
    released = {str(v) for v in (metadata.get("changelog") or {})}
    major, minor, patch = _parse_version(current, "configs/metadata.json")
    if version is None:
        new, bumped = f"{major}.{minor}.{patch + 1}", True
        text = changelog or "packed for sharing (python -m common.sharing pack): weights from this site's training run"
    else:
        if not changelog:
            raise PackError(f"--version {version} needs --changelog TEXT (every released version has an entry)")
        if _parse_version(version, "--version") <= (major, minor, patch) and version not in released:
            raise PackError(f"--version {version} is not above the bundle's current version {current}")
        new, text, bumped = version, changelog, False
    if new in released:
        raise PackError(f"version {new} is already in the changelog of configs/metadata.json "
                        f"(released: {', '.join(sorted(released))}); choose a new one with --version")
    return new, text, bumped


def _copy_shared(bundle: Path, stage: Path) -> list[str]:
    """Copy the shareable files of ``bundle`` into ``stage``; returns their relative paths."""
    names = [p for folder in SHARED_FOLDERS if (bundle / folder).is_dir() for p in sorted((bundle / folder).rglob("*"))]
    names += [bundle / name for name in SHARED_FILES if (bundle / name).exists() or (bundle / name).is_symlink()]
    copied = []
    for path in names:
        rel = path.relative_to(bundle)
        if _SKIPPED_PARTS & set(rel.parts) or any(part.startswith(".") for part in rel.parts) or path.suffix == ".pyc":
            continue
        if path.is_symlink():
            raise PackError(f"{path}: a symbolic link; shared bundles hold plain files (copy its target in instead)")
        if path.is_file():
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, stage / rel)
            copied.append(rel.as_posix())
    return copied


def _check_model(bundle: Path) -> None:
    model, card = bundle / "models" / "model.pt", bundle / "models" / "model.json"
    if not model.is_file():
        raise PackError(f"{model}: missing; train the bundle first (a shared bundle carries its trained weights)")
    if not card.is_file():
        logger.warning("%s: no checkpoint card; the receiving site cannot check what the model was trained for", card)
        return
    recorded = json.loads(card.read_text(encoding="utf-8")).get("sha256")
    if recorded and recorded != file_sha256(model):
        raise PackError(f"{card}: describes a model with sha256 {recorded[:16]}..., not {model} (an interrupted "
                        "save, or the model was replaced); evaluate or retrain so the card matches")


def _externalise_weights(stage: Path, url: str) -> Path:
    """Move ``models/model.pt`` out of ``stage`` and name it in ``large_files.yml``; returns where it was moved."""
    model = stage / "models" / "model.pt"
    entry = {"path": "models/model.pt", "url": url, "hash_val": file_sha256(model), "hash_type": "sha256"}
    atomic_write_text(stage / LARGE_FILES, yaml.safe_dump({"large_files": [entry]}, sort_keys=False))
    moved = stage.parent / "model.pt"
    model.replace(moved)
    return moved


#: Weights are stored, not deflated: float tensors shrink by about 10 % under deflate, and inflating them is most of
#: what verifying an archive would cost (benchmarks/sharing.py); stored, the receiving site pays one read + sha256.
STORED_SUFFIXES = (".pt", ".pth", ".ts", ".safetensors", ".onnx")


def _write_zip(stage: Path, archive: Path) -> None:
    """Zip ``stage`` as ``<stage name>/...`` in sorted order (text deflated, weights stored), one timestamp."""
    stamp = time.gmtime()[:6]
    files = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file())

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as handle:
            for name in files:
                info = zipfile.ZipInfo(f"{stage.name}/{name}", date_time=stamp)
                info.compress_type = zipfile.ZIP_STORED if name.endswith(STORED_SUFFIXES) else zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                with open(stage / name, "rb") as source, handle.open(info, "w") as target:
                    shutil.copyfileobj(source, target, 1 << 20)

    atomic_save(archive, write)


def _configs_from_card(stage: Path) -> dict[str, Any]:
    """Set the configs' top-level ``arch``, ``class_names`` and preprocessing scalars to the model card's values.

    A model trained with ``--image_size 32`` would otherwise be refused by its own ``inference.json`` (224) at the
    receiving site; the package's configs describe the model it carries. Returns the values that were changed.
    """
    card_file = stage / "models" / "model.json"
    if not card_file.is_file():
        return {}
    card = json.loads(card_file.read_text(encoding="utf-8"))
    wanted = {**(card.get("preprocessing") or {}), **{k: card[k] for k in ("arch", "class_names") if k in card}}
    changed: dict[str, Any] = {}
    for file in sorted((stage / "configs").glob("*.json")):
        config = json.loads(file.read_text(encoding="utf-8"))
        if file.name == "metadata.json" or not isinstance(config, dict):
            continue
        updates = {k: v for k, v in wanted.items() if k in config and config[k] != v and not _is_expression(config[k])}
        if updates:
            atomic_write_text(file, json.dumps({**config, **updates}, indent=4, ensure_ascii=False) + "\n")
            changed |= updates
    if changed:
        logger.info("configs set to the trained model's values (models/model.json): %s", changed)
    return changed


def _metadata_from_card(stage: Path) -> dict[str, Any]:
    """Make ``network_data_format`` describe the model carried: outputs from the card's classes, the spatial shape
    from its ``image_size`` / ``patch_size`` (a stage-2 head follows its data; a model trained at 32 px or on
    96 px patches is checked and exported at that size). Returns what changed."""
    card_file, meta_file = stage / "models" / "model.json", stage / "configs" / "metadata.json"
    if not card_file.is_file():
        return {}
    card = json.loads(card_file.read_text(encoding="utf-8"))
    metadata = json.loads(meta_file.read_text(encoding="utf-8"))
    fmt = metadata.get("network_data_format") or {}
    image, pred = (fmt.get("inputs") or {}).get("image") or {}, (fmt.get("outputs") or {}).get("pred") or {}
    changed: dict[str, Any] = {}
    names = card.get("class_names")
    if names and pred and pred.get("num_channels") != len(names):
        pred["num_channels"] = len(names)
        pred["channel_def"] = {str(i): str(n) for i, n in enumerate(names)}
        changed["outputs.pred.num_channels"] = len(names)
    pre = card.get("preprocessing") or {}
    size = pre.get("image_size", pre.get("patch_size"))
    old = image.get("spatial_shape")
    if isinstance(size, int) and isinstance(old, list) and len(old) == 2 and old != [size, size]:
        image["spatial_shape"] = [size, size]
        if pred.get("spatial_shape") == old:
            pred["spatial_shape"] = [size, size]
        changed["inputs.image.spatial_shape"] = [size, size]
    if changed:
        atomic_write_text(meta_file, json.dumps(metadata, indent=4, ensure_ascii=False) + "\n")
        logger.info("metadata network_data_format set to the trained model's values: %s", changed)
    return changed


def _is_expression(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("$", "@", "%"))


def _set_release(bundle: Path, version: str, text: str) -> None:
    """Set ``version`` in ``bundle/configs/metadata.json`` and put its changelog entry first (model-zoo order)."""
    path = bundle / "configs" / "metadata.json"
    metadata = json.loads(path.read_text(encoding="utf-8"))
    metadata["version"] = version
    metadata["changelog"] = {version: text, **(metadata.get("changelog") or {})}
    atomic_write_text(path, json.dumps(metadata, indent=4, ensure_ascii=False) + "\n")


def _read_metadata(bundle: Path) -> dict[str, Any]:
    path = bundle / "configs" / "metadata.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PackError(f"{path}: missing; {bundle} is not a MONAI bundle") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackError(f"{path}: not valid JSON ({exc})") from exc


def pack_bundle(bundle: str | os.PathLike, output: str | os.PathLike, version: str | None = None,
                changelog: str | None = None, sign_key: str | os.PathLike | None = None,
                large_files_url: str | None = None, *, datalist: str | os.PathLike | None = None,
                record: bool = True) -> Path:
    """Pack the trained bundle folder ``bundle`` into ``output/<name>_v<version>.zip``; returns the archive path.

    Args:
        bundle: the trained bundle (``models/model.pt`` required; ``eval/metrics.json`` used for provenance).
        output: folder for the archive (created).
        version: the release's version; default: the current one with its patch number bumped.
        changelog: the changelog entry (required with ``version``).
        sign_key: an Ed25519 private key (``keygen``) to sign the manifest with.
        large_files_url: where ``models/model.pt`` will be served; it then goes into ``large_files.yml`` (url +
            sha256) instead of the archive, and is written beside the archive as ``<name>_v<version>_model.pt``.
        datalist: the training datalist, hashed and counted into the provenance record.
        record: write the new version and changelog entry back into ``bundle``'s ``configs/metadata.json``.

    Raises:
        PackError: no model, a card that describes another model, a bad or already released version, an
            existing archive, a symbolic link among the shared files.
        SignatureError: ``sign_key`` is not a usable Ed25519 private key.

    Example:
        >>> pack_bundle("runs/chest_xray_classification", "outbox", "0.3.0", "fine-tuned on site A")  # doctest: +SKIP
        PosixPath('outbox/chest_xray_classification_v0.3.0.zip')
    """
    root = Path(bundle)
    if not root.is_dir():
        raise PackError(f"{root}: not a folder (pack takes a trained bundle folder)")
    metadata = _read_metadata(root)
    _check_model(root)
    if sign_key is not None:
        load_private_key(sign_key)  # fail before the work, not after it
    new_version, text, bumped = next_version(metadata, version, changelog)
    if bumped:
        logger.info("no --version given: bumping %s -> %s", metadata.get("version"), new_version)
    archive = make_directory(output) / f"{root.name}_v{new_version}.zip"
    if archive.exists():
        raise PackError(f"{archive}: exists already; pack never overwrites an archive (move it, or pack a new version)")
    with tempfile.TemporaryDirectory(prefix="medxfer-pack-") as tmp:
        stage = Path(tmp) / root.name
        stage.mkdir()
        _copy_shared(root, stage)
        _set_release(stage, new_version, text)
        from_card = _configs_from_card(stage) | _metadata_from_card(stage)
        _vendor(root, stage)
        provenance = build_provenance(root, datalist=datalist, version=new_version) | {"configs_from_card": from_card}
        atomic_write_json(stage / "docs" / "provenance.json", provenance)
        readme = stage / "docs" / "README.md"
        card = readme.read_text(encoding="utf-8") if readme.is_file() else f"# {metadata.get('name', root.name)}\n"
        atomic_write_text(readme, update_model_card(card, render_build_section(provenance)))
        moved = _externalise_weights(stage, large_files_url) if large_files_url else None
        write_manifest(stage, bundle=root.name, version=new_version)
        if sign_key is not None:
            sign_manifest(stage, sign_key)
        _check_listing(stage)
        if archive.exists():
            raise PackError(f"{archive}: appeared while packing; pack never overwrites an archive")
        _write_zip(stage, archive)
        if moved is not None:
            shutil.copyfile(moved, archive.with_name(f"{root.name}_v{new_version}_model.pt"))
    if record:
        _set_release(root, new_version, text)
    return archive


def _vendor(bundle: Path, stage: Path) -> None:
    """Vendor the ``common`` modules into ``stage``; a bundle that came vendored (a received one, fine-tuned and
    shared on) keeps its ``scripts/`` as it is, with its own record, for the receiving site's audit to check."""
    if (bundle / "scripts" / VENDOR_RECORD).is_file():
        logger.info("%s: already vendored (scripts/%s); its scripts/ is shared as it is", bundle, VENDOR_RECORD)
        shutil.copytree(bundle / "scripts", stage / "scripts", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        if referenced_modules(stage):
            raise PackError(f"{bundle}: its configs name medxfer's common package although scripts/ is vendored; "
                            "point them at scripts (or remove scripts/ to vendor afresh)")
        return
    vendor_into(stage)


def _check_listing(stage: Path) -> None:
    """The staged bundle holds the required files and nothing from the excluded places."""
    files = set(list_files(stage))
    required = ["configs/metadata.json", "LICENSE", "docs/README.md", "models/model.json", "scripts/vendored.json"]
    required.append(LARGE_FILES if (stage / LARGE_FILES).is_file() else "models/model.pt")
    missing = [name for name in required if name not in files]
    if missing:
        raise PackError(f"{stage.name}: the bundle lacks {', '.join(missing)}, which a shared bundle must carry")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m common.sharing pack``."""
    parser.add_argument("bundle", type=Path, help="the trained bundle folder (models/model.pt inside)")
    parser.add_argument("--output", required=True, type=Path, help="folder for <name>_v<version>.zip")
    parser.add_argument("--version", help="release version X.Y.Z (default: bump the patch of the current one)")
    parser.add_argument("--changelog", help="changelog entry for this version (required with --version)")
    parser.add_argument("--sign", type=Path, metavar="KEY", help="Ed25519 private key (keygen) to sign the manifest")
    parser.add_argument("--large-files-url", metavar="URL",
                        help="serve models/model.pt from URL: large_files.yml names it with its sha256 instead")
    parser.add_argument("--datalist", type=Path, help="the training datalist: its sha256 and split counts go into "
                                                      "the provenance record (never its ids or paths)")
    parser.add_argument("--no-record", action="store_true",
                        help="leave the bundle's configs/metadata.json as it is (default: record the new version)")


def run(args: argparse.Namespace) -> int:
    """``pack``: write the archive; print its path, size and sha256."""
    archive = pack_bundle(args.bundle, args.output, args.version, args.changelog, args.sign, args.large_files_url,
                          datalist=args.datalist, record=not args.no_record)
    size = archive.stat().st_size
    sys.stdout.write(f"{archive}\n  size {size} bytes ({size / 2**20:.1f} MiB)\n  sha256 {file_sha256(archive)}\n")
    if args.version is None:
        sys.stdout.write(f"  version {archive.stem.rpartition('_v')[2]}: no --version given, so the patch number "
                         "was bumped\n")
    if args.large_files_url:
        weights = archive.with_name(archive.stem + "_model.pt")
        sys.stdout.write(f"  weights not in the archive: upload {weights} to {args.large_files_url}\n")
    return 0
