"""Fixtures for the sharing tests: a chest bundle trained and evaluated in seconds, as a site would pack it."""

from __future__ import annotations

import shutil
import struct
import warnings
import zipfile
from pathlib import Path

import pytest

from common.bundle_runner import copy_bundle, run_bundle
from tests.bundles.conftest import chest_dataset  # noqa: F401 (shared session fixture)

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"
CHEST = "chest_xray_classification"
CHEST_TINY = {"pretrained": "none", "image_size": 32, "epochs": 1, "batch_size": 8, "val_batch_size": 8,
              "num_workers": 0}


@pytest.fixture(scope="session")
def trained_chest_bundle(tmp_path_factory: pytest.TempPathFactory, chest_dataset: Path) -> Path:  # noqa: F811
    """A copy of the chest bundle trained one epoch at 32 px and evaluated: configs, docs, LICENSE, models, eval, logs.

    Session-scoped and shared: tests copy it (``fresh_copy``) before changing anything.
    """
    root = copy_bundle(BUNDLES / CHEST, tmp_path_factory.mktemp("site_a") / CHEST)
    run_bundle(root, ["train.json"], "train", dataset_dir=str(chest_dataset), **CHEST_TINY)
    run_bundle(root, ["train.json", "evaluate.json"], "eval", dataset_dir=str(chest_dataset), **CHEST_TINY)
    return root


def fresh_copy(bundle: Path, destination: Path) -> Path:
    """A full copy of ``bundle`` at ``destination`` (every file, models and eval included)."""
    return Path(shutil.copytree(bundle, destination))


# Archive-building helpers shared by the safezip and verify tests.


def make_zip(path: Path, entries: dict[str, bytes] | list[tuple[str, bytes]], mode: int | None = None,
             compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """A zip of ``entries`` (name -> bytes, or pairs to repeat a name); ``mode`` sets st_mode on every entry."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns on the duplicate names some tests need
        with zipfile.ZipFile(path, "w", compression) as archive:
            for name, data in entries.items() if isinstance(entries, dict) else entries:
                info = zipfile.ZipInfo(name)
                info.compress_type = compression
                if mode is not None:
                    info.external_attr = mode << 16
                archive.writestr(info, data)
    return path


def zip_bundle(folder: Path, archive: Path) -> Path:
    """Zip ``folder`` as ``<folder.name>/...`` entries (stored: the tests repack often)."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as handle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                handle.write(path, f"{folder.name}/{path.relative_to(folder).as_posix()}")
    return archive


def patch_headers(path: Path, entry: str, fmt: str, local_at: int, central_at: int, value: int) -> None:
    """Overwrite one field of ``entry``'s local and central headers (offsets from each header's signature)."""
    data = bytearray(path.read_bytes())
    name = entry.encode()
    headers = ((b"PK\x03\x04", 26, 30, local_at), (b"PK\x01\x02", 28, 46, central_at))  # signature, name length, size
    for signature, name_len_at, header, field_at in headers:
        start = 0
        while (start := data.find(signature, start)) != -1:
            name_len = struct.unpack_from("<H", data, start + name_len_at)[0]
            if bytes(data[start + header:start + header + name_len]) == name:
                struct.pack_into(fmt, data, start + field_at, value)
            start += 4
    path.write_bytes(bytes(data))


def lie_about_size(path: Path, entry: str, declared: int) -> None:
    """Rewrite ``entry``'s uncompressed size in its local and central headers to ``declared``."""
    patch_headers(path, entry, "<I", 22, 24, declared)
