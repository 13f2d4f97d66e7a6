"""Synthetic MedMNIST npz: exact v2 format, determinism, adapter round trip, learnable classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.neighbors import NearestCentroid

from common.data.medmnist import MEDMNIST_INFO
from common.errors import ConfigError
from common.synthetic import generate_medmnist, make_embedded_dataset, render_tissue_patch


@pytest.mark.parametrize("flag, size, name", [("pathmnist", 28, "pathmnist.npz"), ("octmnist", 64, "octmnist_64.npz")],
                         ids=["rgb-28", "grey-64"])  # fmt: skip
def test_exact_format(tmp_path: Path, flag: str, size: int, name: str) -> None:
    generate_medmnist(tmp_path, flag, size, n_train=20, n_val=5, n_test=7, seed=2)
    with np.load(tmp_path / name) as archive:
        keys = sorted(f"{p}_{k}" for p in ("train", "val", "test") for k in ("images", "labels"))
        assert sorted(archive.files) == keys
        images, labels = archive["train_images"], archive["train_labels"]
        channels = () if MEDMNIST_INFO[flag].n_channels == 1 else (3,)
        assert images.shape == (20, size, size, *channels) and images.dtype == np.uint8
        assert labels.shape == (20, 1) and labels.dtype == np.uint8
        assert set(labels[:, 0].tolist()) == set(range(len(MEDMNIST_INFO[flag].classes)))
        again = tmp_path / "again"
        generate_medmnist(again, flag, size, n_train=20, n_val=5, n_test=7, seed=2)
        with np.load(again / name) as second:
            np.testing.assert_array_equal(images, second["train_images"])


def test_embedded_pathmnist_round_trip(tmp_path: Path) -> None:
    datalist = make_embedded_dataset("pathmnist", tmp_path, {"n_train": 18, "n_val": 9, "n_test": 9})
    assert datalist["classes"] == list(MEDMNIST_INFO["pathmnist"].classes)
    assert len(datalist["training"]) == 18 and (tmp_path / datalist["test"][0]["image"]).is_file()
    other = make_embedded_dataset("medmnist", tmp_path / "derm", {"flag": "dermamnist", "size": 64, "n_train": 7,
                                                                   "n_val": 7, "n_test": 7})  # fmt: skip
    assert other["classes"][4] == "melanoma"


def test_classes_are_learnable() -> None:
    """Nearest class centroid on each patch's mean and spread of colour: well above chance (1/9)."""
    patches = [render_tissue_patch(np.random.default_rng(i), i % 9, 28).reshape(-1, 3) / 255.0 for i in range(270)]
    x = np.stack([np.concatenate([p.mean(0), p.std(0)]) for p in patches])
    y = np.arange(270) % 9
    assert NearestCentroid().fit(x[:180], y[:180]).score(x[180:], y[180:]) > 0.6


@pytest.mark.parametrize("kwargs, match", [({"flag": "chestmnist"}, "single-label 2-D flags"),
                                           ({"size": 32}, "size must be one of"), ({"n_val": 0}, "at least one")],
                         ids=["multi-label", "size", "empty-split"])  # fmt: skip
def test_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        generate_medmnist(tmp_path, **kwargs)
