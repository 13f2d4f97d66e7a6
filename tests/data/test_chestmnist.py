"""MedMNIST npz adapter: PNGs written bit-exactly, datalist paths and labels, and layout errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.data.chestmnist import load_chestmnist_datalist
from common.errors import DataError

SIZES = {"train": 5, "val": 2, "test": 3}


def make_arrays(size: int, rgb: bool, n_labels: int = 14) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, count in SIZES.items():
        shape = (count, size, size, 3) if rgb else (count, size, size)
        arrays[f"{prefix}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{prefix}_labels"] = rng.integers(0, 2, (count, n_labels), dtype=np.uint8)
    return arrays


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("size, rgb", [(28, False), (64, True)], ids=["grey-28", "rgb-64"])
def test_load_chestmnist_writes_pngs_and_datalist(tmp_path: Path, size: int, rgb: bool) -> None:
    arrays = make_arrays(size, rgb)
    out = tmp_path / "out"
    datalist = load_chestmnist_datalist(write_npz(tmp_path / "chestmnist.npz", arrays), out)
    assert {split: len(items) for split, items in datalist.items()} == {"training": 5, "validation": 2, "test": 3}
    item = datalist["validation"][1]
    assert item == {"image": "images/val_000001.png", "label": arrays["val_labels"][1].astype(float).tolist(),
                    "patient_id": "val_000001"}  # fmt: skip
    with Image.open(out / item["image"]) as image:
        assert image.mode == ("RGB" if rgb else "L")
        np.testing.assert_array_equal(np.asarray(image), arrays["val_images"][1])
    assert json.loads((out / "datalist.json").read_text()) == datalist
    assert len(list((out / "images").iterdir())) == sum(SIZES.values())


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda a: a.update(train_labels=a["train_labels"][:, :13]), r"key 'train_labels': expected N x 14 labels"),
        (lambda a: a.pop("val_images"), r"missing key 'val_images'"),
        (lambda a: a.update(test_labels=a["test_labels"][:2]), r"'test_images' has 3 images but 'test_labels' has 2"),
        (lambda a: a.update(train_images=a["train_images"].astype(np.float32)), r"'train_images': expected uint8"),
    ],
    ids=["label-width", "missing-key", "count-mismatch", "not-uint8"],
)
def test_load_chestmnist_rejects_bad_layouts(
    tmp_path: Path, change: Callable[[dict[str, np.ndarray]], object], match: str
) -> None:
    arrays = make_arrays(28, rgb=False)
    change(arrays)
    npz = write_npz(tmp_path / "chestmnist.npz", arrays)
    with pytest.raises(DataError, match=rf"chestmnist\.npz.*{match}"):
        load_chestmnist_datalist(npz, tmp_path / "out")
    assert not (tmp_path / "out" / "images").exists()  # nothing half-written


def test_load_chestmnist_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"MedMNIST file not found: .*absent\.npz"):
        load_chestmnist_datalist(tmp_path / "absent.npz", tmp_path / "out")
