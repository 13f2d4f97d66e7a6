"""manifest: digests computed while unpacking stand in for a second read; a mismatch is still caught."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from common.sharing.errors import IntegrityError
from common.sharing.manifest import check_manifest, file_sha256, write_manifest
from common.sharing.safezip import safe_extract


def _archive(tmp_path: Path) -> Path:
    bundle = tmp_path / "b"
    (bundle / "models").mkdir(parents=True)
    (bundle / "configs").mkdir()
    (bundle / "models" / "model.pt").write_bytes(bytes(range(256)) * 4096)
    (bundle / "configs" / "metadata.json").write_text('{"version": "0.1.0"}')
    write_manifest(bundle, bundle="b", version="0.1.0")
    archive = tmp_path / "b_v0.1.0.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(bundle.rglob("*")):
            if path.is_file():
                zf.write(path, f"b/{path.relative_to(bundle).as_posix()}")
    return archive


def test_unpacking_digests_match_a_second_read(tmp_path: Path) -> None:
    digests: dict[str, str] = {}
    folder = safe_extract(_archive(tmp_path), tmp_path / "out", digests=digests)
    assert digests == {name: file_sha256(folder / name) for name in digests}
    assert set(digests) == {"models/model.pt", "configs/metadata.json", "manifest.json"}
    assert check_manifest(folder, digests)["bundle"] == "b"


def test_a_digest_that_disagrees_with_the_manifest_is_refused(tmp_path: Path) -> None:
    digests: dict[str, str] = {}
    folder = safe_extract(_archive(tmp_path), tmp_path / "out", digests=digests)
    digests["models/model.pt"] = "0" * 64
    with pytest.raises(IntegrityError, match="models/model.pt: changed"):
        check_manifest(folder, digests)
