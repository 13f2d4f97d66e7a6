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


def with_label(arrays: dict[str, np.ndarray], key: str, row: int, value: float) -> None:
    labels = arrays[key].astype(np.float32)
    labels[row, 3] = value
    arrays[key] = labels


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda a: with_label(a, "train_labels", 2, 2.0), r"key 'train_labels', row 2: label value 2\.0 is not 0 or 1"),
        (lambda a: with_label(a, "val_labels", 1, np.nan), r"key 'val_labels', row 1: label value nan is not 0 or 1"),
        (lambda a: with_label(a, "test_labels", 0, -1.0), r"key 'test_labels', row 0: label value -1\.0"),
        (lambda a: a.update(train_labels=np.full((5, 14), "1")), r"key 'train_labels': expected numeric 0/1 labels"),
        (lambda a: a.update(val_labels=a["val_labels"][:, :1]), r"key 'val_labels': expected N x 14 labels, got "
                                                                 r"shape \(2, 1\)"),  # fmt: skip
        (lambda a: a.update(test_labels=np.zeros((3, 15), np.uint8)), r"key 'test_labels': expected N x 14 labels"),
        (lambda a: a.update(train_labels=np.zeros(5, np.uint8)), r"key 'train_labels': expected N x 14 labels, got "
                                                                  r"shape \(5,\)"),  # fmt: skip
    ],
    ids=["value-2", "nan", "negative", "strings", "one-label", "fifteen-labels", "one-dimensional"],
)
def test_load_chestmnist_rejects_bad_labels(
    tmp_path: Path, change: Callable[[dict[str, np.ndarray]], object], match: str
) -> None:
    arrays = make_arrays(28, rgb=False)
    change(arrays)
    npz = write_npz(tmp_path / "chestmnist.npz", arrays)
    with pytest.raises(DataError, match=rf"chestmnist\.npz, {match}"):
        load_chestmnist_datalist(npz, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []  # nothing written, no temporary folder left


@pytest.mark.parametrize("key", ["train_images", "val_labels"])
def test_load_chestmnist_names_an_object_array(tmp_path: Path, key: str) -> None:
    arrays: dict[str, np.ndarray] = dict(make_arrays(28, rgb=False))
    arrays[key] = np.array([{"not": "numbers"}] * len(arrays[key]), dtype=object)
    npz = tmp_path / "chestmnist.npz"
    np.savez(npz, allow_pickle=True, **arrays)
    with pytest.raises(DataError, match=rf"chestmnist\.npz, key '{key}': cannot read the array \(an object array"):
        load_chestmnist_datalist(npz, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("failure", ["image-writing", "datalist-writing"])
def test_a_failed_reprepare_keeps_the_previous_images_and_datalist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    import common.data.chestmnist as chestmnist_module

    out = tmp_path / "out"
    first = load_chestmnist_datalist(write_npz(tmp_path / "first.npz", make_arrays(28, rgb=False)), out)
    pixels = {p.name: p.read_bytes() for p in (out / "images").iterdir()}
    second = {k: (255 - v if k.endswith("images") else 1 - v) for k, v in make_arrays(28, rgb=False).items()}
    npz = write_npz(tmp_path / "second.npz", second)
    if failure == "image-writing":
        saved: list[object] = []
        real_save = Image.Image.save

        def fail_on_the_sixth(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
            saved.append(fp)
            if len(saved) == 6:
                raise OSError(28, "No space left on device")
            real_save(self, fp, *args, **kwargs)

        monkeypatch.setattr(Image.Image, "save", fail_on_the_sixth)
    else:
        def fail(path: Path, data: object) -> Path:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(chestmnist_module, "atomic_write_json", fail)
    with pytest.raises(OSError, match=r"No space left on device"):
        load_chestmnist_datalist(npz, out)
    assert {p.name: p.read_bytes() for p in (out / "images").iterdir()} == pixels
    assert json.loads((out / "datalist.json").read_text()) == first
    assert sorted(p.name for p in out.iterdir()) == ["datalist.json", "images"]
