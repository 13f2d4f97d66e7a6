"""MedMNIST 2-D adapter: every flag's published classes, sizes from file names, PNGs bit-exact, layout errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.data.medmnist import (
    MEDMNIST_INFO,
    load_medmnist_datalist,
    load_medmnist_folder,
    parse_medmnist_name,
)
from common.errors import ConfigError, DataError

SIZES = {"train": 6, "val": 2, "test": 3}
TWO_D_FLAGS = ["pathmnist", "chestmnist", "dermamnist", "octmnist", "pneumoniamnist", "retinamnist", "breastmnist",
               "bloodmnist", "tissuemnist", "organamnist", "organcmnist", "organsmnist"]  # fmt: skip
N_CLASSES = {"pathmnist": 9, "dermamnist": 7, "octmnist": 4, "pneumoniamnist": 2, "retinamnist": 5, "breastmnist": 2,
             "bloodmnist": 8, "tissuemnist": 8, "organamnist": 11, "organcmnist": 11, "organsmnist": 11}  # fmt: skip


def make_arrays(flag: str, size: int = 28) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    info = MEDMNIST_INFO[flag]
    arrays = {}
    for prefix, count in SIZES.items():
        shape = (count, size, size) + ((3,) if info.n_channels == 3 else ())
        arrays[f"{prefix}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{prefix}_labels"] = (np.arange(count) % len(info.classes)).astype(np.uint8)[:, None]
    return arrays


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, **arrays)
    return path


def test_every_2d_flag_is_known() -> None:
    assert sorted(MEDMNIST_INFO) == sorted(TWO_D_FLAGS)
    assert {flag: len(MEDMNIST_INFO[flag].classes) for flag in N_CLASSES} == N_CLASSES
    assert MEDMNIST_INFO["pathmnist"].classes[8] == "colorectal adenocarcinoma epithelium"
    assert MEDMNIST_INFO["breastmnist"].classes == ("malignant", "normal, benign")


@pytest.mark.parametrize(
    "name, expected",
    [("pathmnist.npz", ("pathmnist", 28)), ("dermamnist_64.npz", ("dermamnist", 64)),
     ("OrganAMNIST_224.npz", ("organamnist", 224))],
    ids=["28", "64", "upper-case"],
)  # fmt: skip
def test_parse_medmnist_name(name: str, expected: tuple[str, int]) -> None:
    assert parse_medmnist_name(name) == expected


@pytest.mark.parametrize(
    "name, match",
    [("fakemnist.npz", "unknown MedMNIST flag 'fakemnist'"), ("organmnist3d.npz", "3-D volume set"),
     ("pathmnist_32.npz", "size 32 is not a MedMNIST size"), ("data.npy", "not a MedMNIST file name")],
    ids=["unknown", "3d", "size", "not-npz"],
)  # fmt: skip
def test_parse_medmnist_name_errors(name: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_medmnist_name(name)


@pytest.mark.parametrize("flag, size", [("pathmnist", 28), ("octmnist", 64), ("retinamnist", 28)],
                         ids=["rgb-28", "grey-64", "ordinal"])  # fmt: skip
def test_load_writes_pngs_and_single_label_datalist(tmp_path: Path, flag: str, size: int) -> None:
    arrays = make_arrays(flag, size)
    name = f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"
    out = tmp_path / "out"
    datalist = load_medmnist_datalist(write_npz(tmp_path / name, arrays), out)
    assert datalist["classes"] == list(MEDMNIST_INFO[flag].classes)
    assert {split: len(datalist[split]) for split in ("training", "validation", "test")} == {
        "training": 6, "validation": 2, "test": 3}  # fmt: skip
    item = datalist["test"][2]
    assert item == {"image": "images/test_000002.png", "label": int(arrays["test_labels"][2, 0])}
    with Image.open(out / item["image"]) as image:
        assert image.mode == ("RGB" if MEDMNIST_INFO[flag].n_channels == 3 else "L")
        np.testing.assert_array_equal(np.asarray(image), arrays["test_images"][2])
    assert json.loads((out / "datalist.json").read_text()) == datalist


def test_chestmnist_keeps_the_multi_label_path(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, count in SIZES.items():
        arrays[f"{prefix}_images"] = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        arrays[f"{prefix}_labels"] = rng.integers(0, 2, (count, 14), dtype=np.uint8)
    datalist = load_medmnist_datalist(write_npz(tmp_path / "chestmnist.npz", arrays), tmp_path / "out")
    assert "classes" not in datalist and len(datalist["training"][0]["label"]) == 14


@pytest.mark.parametrize(
    "change, match",
    [(lambda a: a.pop("val_labels"), r"missing key\(s\) \['val_labels'\]"),
     (lambda a: a.update(train_labels=a["train_labels"] + 9), r"'train_labels', row 0: label 9 is out of range"),
     (lambda a: a.update(test_images=a["test_images"][..., 0]), r"'test_images': expected N x H x W x 3"),
     (lambda a: a.update(val_images=a["val_images"].astype(np.float32)), r"'val_images': expected uint8"),
     (lambda a: a.update(train_labels=np.zeros((6, 2), np.uint8)), r"'train_labels': expected N x 1 class indices"),
     (lambda a: a.update(test_labels=a["test_labels"][:1]), r"'test_images' has 3 images and 'test_labels' 1")],
    ids=["missing-key", "label-range", "grey-in-rgb-flag", "not-uint8", "label-width", "count"],
)  # fmt: skip
def test_bad_layouts_are_refused(tmp_path: Path, change: Callable[[dict[str, np.ndarray]], object], match: str) -> None:
    arrays = make_arrays("pathmnist")
    change(arrays)
    with pytest.raises(DataError, match=rf"pathmnist\.npz.*{match}"):
        load_medmnist_datalist(write_npz(tmp_path / "pathmnist.npz", arrays), tmp_path / "out")
    assert not (tmp_path / "out" / "images").exists()  # nothing half-written


def test_size_in_name_must_match_images(tmp_path: Path) -> None:
    npz = write_npz(tmp_path / "pathmnist_64.npz", make_arrays("pathmnist", 28))
    with pytest.raises(DataError, match="the file name says 64 px"):
        load_medmnist_datalist(npz, tmp_path / "out")


def test_flag_argument_for_renamed_files(tmp_path: Path) -> None:
    npz = write_npz(tmp_path / "my_download.npz", make_arrays("bloodmnist"))
    assert load_medmnist_datalist(npz, tmp_path / "out", flag="bloodmnist")["classes"][0] == "basophil"
    with pytest.raises(ConfigError, match="unknown MedMNIST flag 'bloodmist'"):
        load_medmnist_datalist(npz, tmp_path / "out", flag="bloodmist")
    with pytest.raises(DataError, match="MedMNIST file not found"):
        load_medmnist_datalist(tmp_path / "absent.npz", tmp_path / "out", flag="bloodmnist")


def test_load_medmnist_folder(tmp_path: Path) -> None:
    write_npz(tmp_path / "dermamnist.npz", make_arrays("dermamnist"))
    assert load_medmnist_folder(tmp_path)["classes"][4] == "melanoma"
    assert (tmp_path / "datalist.json").is_file() and (tmp_path / "images" / "train_000000.png").is_file()
    write_npz(tmp_path / "dermamnist_64.npz", make_arrays("dermamnist", 64))
    with pytest.raises(DataError, match="expected one MedMNIST file"):
        load_medmnist_folder(tmp_path)
    assert load_medmnist_folder(tmp_path, size=64)["training"][0]["image"] == "images/train_000000.png"
