"""atomic_entries: images/ and datalist.json of a folder change together, or not at all, also after a crash."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

import common.staging as staging_module
from common.errors import OutputError
from common.io import recover_directory
from common.staging import atomic_entries

REPO = Path(__file__).resolve().parents[1]


def write_dataset(staging: Path, version: str) -> None:
    (staging / "images").mkdir()
    (staging / "images" / "a.png").write_text(version)
    (staging / "datalist.json").write_text(version)


def state(folder: Path) -> tuple[str, str]:
    return (folder / "images" / "a.png").read_text(), (folder / "datalist.json").read_text()


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A prepared dataset ("old") beside a file of the user's that no write may touch."""
    folder = tmp_path / "chestmnist"
    with atomic_entries(folder) as staging:
        write_dataset(staging, "old")
    (folder / "chestmnist.npz").write_text("user file")
    return folder


def test_success_replaces_every_entry_and_nothing_else(dataset: Path) -> None:
    with atomic_entries(dataset) as staging:
        write_dataset(staging, "new")
    assert state(dataset) == ("new", "new")
    assert sorted(p.name for p in dataset.iterdir()) == ["chestmnist.npz", "datalist.json", "images"]


def test_a_failing_body_changes_nothing(dataset: Path) -> None:
    with pytest.raises(RuntimeError, match="bad npz"), atomic_entries(dataset) as staging:
        write_dataset(staging, "new")
        raise RuntimeError("bad npz")
    assert state(dataset) == ("old", "old")
    assert sorted(p.name for p in dataset.iterdir()) == ["chestmnist.npz", "datalist.json", "images"]


def test_a_failing_move_is_rolled_back(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real, calls = os.replace, []

    def fail_third(src: str | os.PathLike, dst: str | os.PathLike) -> None:
        calls.append(dst)
        if len(calls) == 3:  # staging -> commit, datalist.json, [images aside], images in
            raise OSError(errno.EIO, "Input/output error")
        real(src, dst)

    monkeypatch.setattr(staging_module.os, "replace", fail_third)
    with pytest.raises(OutputError, match=rf"cannot replace datalist.json in {dataset}: Input/output error"), \
            atomic_entries(dataset) as staging:  # fmt: skip
        write_dataset(staging, "new")
    assert state(dataset) == ("old", "old")
    assert sorted(p.name for p in dataset.iterdir()) == ["chestmnist.npz", "datalist.json", "images"]


CRASHING_WRITER = """
import os, sys
from pathlib import Path
from common.staging import atomic_entries

folder, crash_after = Path(sys.argv[1]), int(sys.argv[2])
real, calls = os.replace, []

def replace(src, dst):
    real(src, dst)
    calls.append(dst)
    if len(calls) == crash_after:
        os._exit(3)

os.replace = replace
with atomic_entries(folder) as staging:
    (staging / "images").mkdir()
    (staging / "images" / "a.png").write_text("new")
    if crash_after == 0:
        os._exit(3)
    (staging / "datalist.json").write_text("new")
"""


@pytest.mark.parametrize(
    "crash_after, expected",
    [(0, "old"), (1, "new"), (2, "new"), (3, "new")],
    ids=["while-writing", "at-the-commit", "after-datalist", "images-set-aside"],
)
def test_a_crash_leaves_one_version_after_recovery(dataset: Path, crash_after: int, expected: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(dataset), str(crash_after)], env=env,
                            capture_output=True, text=True, check=False, timeout=120)  # fmt: skip
    assert result.returncode == 3, result.stderr
    recover_directory(dataset)
    assert state(dataset) == (expected, expected)
    assert sorted(p.name for p in dataset.iterdir()) == ["chestmnist.npz", "datalist.json", "images"]
