"""Synthetic BCSS: the tile renderer, the native layout, the adapter round trip and a learnable signal."""

from __future__ import annotations

import re
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from monai.transforms import Compose, LoadImaged
from PIL import Image

from common.data.bcss import BCSS_GTRUTH_CODES, load_bcss_datalist, read_gtruth_codes
from common.data.splits import check_patient_disjoint
from common.errors import ConfigError
from common.synthetic.histology import generate_bcss, render_tile
from common.transforms.labels_remap import RemapLabelsd

NAME = re.compile(r"^(TCGA-[A-Z0-9]{2}-[A-Z0-9]{4})-DX1_xmin\d+_ymin\d+_MPP-0\.2500\.png$")
DRAWN_CODES = {0, 1, 2, 3, 4, 6, 7, 9, 10}
# Detailed codes compared in the signal check: one per visible tissue.
TISSUES = {"tumor": 1, "stroma": 2, "lymphocytes": 3, "plasma_cells": 10, "necrosis": 4, "fat": 9, "blood": 6}


@pytest.fixture(scope="module")
def bcss(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_bcss(tmp_path_factory.mktemp("bcss"), n_patients=8, tiles_per_patient=2, tile_size=48, seed=3)


@pytest.fixture(scope="module")
def pixels() -> tuple[np.ndarray, np.ndarray]:
    """RGB (N, 3) and code (N,) of every pixel of 24 tiles of 96 px."""
    tiles = [render_tile(np.random.default_rng(seed), 96) for seed in range(24)]
    return np.concatenate([rgb.reshape(-1, 3) for rgb, _ in tiles]), np.concatenate([c.ravel() for _, c in tiles])


@pytest.mark.parametrize("size", [32, 64, 128])
def test_render_tile_is_seeded(size: int) -> None:
    rgb, codes = render_tile(np.random.default_rng(11), size)
    assert rgb.shape == (size, size, 3) and rgb.dtype == np.uint8 and codes.shape == (size, size)
    assert codes.dtype == np.uint8 and set(np.unique(codes).tolist()) <= DRAWN_CODES
    assert {1, 2} <= set(np.unique(codes).tolist()) and ({3, 10} & set(np.unique(codes).tolist()))
    again = render_tile(np.random.default_rng(11), size)
    np.testing.assert_array_equal(rgb, again[0])
    np.testing.assert_array_equal(codes, again[1])
    assert not np.array_equal(rgb, render_tile(np.random.default_rng(12), size)[0])


@pytest.mark.parametrize("size", [16, 31, 64.0, True], ids=["16", "31", "float", "bool"])
def test_render_tile_rejects_bad_sizes(size: object) -> None:
    with pytest.raises(ConfigError, match="tile_size must be an integer >= 32"):
        render_tile(np.random.default_rng(0), size)  # type: ignore[arg-type]


def test_every_drawn_code_occurs(pixels: tuple[np.ndarray, np.ndarray]) -> None:
    assert set(np.unique(pixels[1]).tolist()) == DRAWN_CODES


def test_native_layout(bcss: Path) -> None:
    assert sorted(path.name for path in bcss.iterdir()) == ["masks", "meta", "rgbs_colorNormalized"]
    assert read_gtruth_codes(bcss / "meta" / "gtruth_codes.tsv") == BCSS_GTRUTH_CODES
    images = sorted(path.name for path in (bcss / "rgbs_colorNormalized").iterdir())
    assert images == sorted(path.name for path in (bcss / "masks").iterdir()) and len(images) == 16
    patients = [NAME.match(name).group(1) for name in images]  # type: ignore[union-attr]
    assert len(set(patients)) == 8 and all(patients.count(p) == 2 for p in patients)
    with Image.open(bcss / "rgbs_colorNormalized" / images[0]) as rgb, Image.open(bcss / "masks" / images[0]) as mask:
        assert (rgb.mode, rgb.size, mask.mode, mask.size) == ("RGB", (48, 48), "L", (48, 48))
        assert set(np.unique(np.asarray(mask)).tolist()) <= DRAWN_CODES


def test_generation_is_seeded(bcss: Path, tmp_path: Path) -> None:
    again = generate_bcss(tmp_path / "again", n_patients=8, tiles_per_patient=2, tile_size=48, seed=3)
    for folder in ("rgbs_colorNormalized", "masks"):
        names = sorted(path.name for path in (bcss / folder).iterdir())
        assert names == sorted(path.name for path in (again / folder).iterdir())
        assert all((bcss / folder / n).read_bytes() == (again / folder / n).read_bytes() for n in names)
    other = generate_bcss(tmp_path / "other", n_patients=8, tiles_per_patient=2, tile_size=48, seed=4)
    assert {p.name for p in (other / "masks").iterdir()} != {p.name for p in (bcss / "masks").iterdir()}


@pytest.mark.parametrize("kwargs", [{"n_patients": 0}, {"tiles_per_patient": 0}, {"tile_size": 8}],
                         ids=["patients", "tiles", "size"])  # fmt: skip
def test_generate_rejects_bad_arguments(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        generate_bcss(tmp_path, **kwargs)
    assert not (tmp_path / "masks").exists()


def test_adapter_round_trip(bcss: Path) -> None:
    datalist = load_bcss_datalist(bcss, val_fraction=0.25, test_fraction=0.25, seed=1)
    check_patient_disjoint(datalist)
    assert {split: len(items) for split, items in datalist.items()} == {"training": 8, "validation": 4, "test": 4}
    load = Compose([LoadImaged(["image", "label"], ensure_channel_first=True, image_only=True), RemapLabelsd("label")])
    classes: set[int] = set()
    for item in datalist["training"]:
        out = load({key: str(bcss / item[key]) for key in ("image", "label")})
        assert out["image"].shape == (3, 48, 48) and out["label"].shape == (1, 48, 48)
        classes |= set(np.unique(out["label"].numpy()).astype(int).tolist())
    assert classes <= {0, 1, 2, 3, 4, 5} and {1, 2, 3} <= classes


def test_tissues_differ_in_colour(pixels: tuple[np.ndarray, np.ndarray]) -> None:
    rgb, codes = pixels
    means = {name: rgb[codes == code].astype(np.float64).mean(axis=0) for name, code in TISSUES.items()}
    assert np.abs(means["tumor"] - means["stroma"]).max() > 20
    close = {(a, b) for a, b in combinations(TISSUES, 2) if np.linalg.norm(means[a] - means[b]) <= 20}
    assert close <= {("lymphocytes", "plasma_cells")}  # both are the "inflammatory" class
    assert means["fat"].mean() > means["necrosis"].mean() > means["tumor"].mean()  # white > pale > purple
    assert means["blood"][0] - means["blood"][1:].mean() > 100  # red


def test_nuclear_density_orders_the_tissues(pixels: tuple[np.ndarray, np.ndarray]) -> None:
    rgb, codes = pixels
    dark = {name: float((rgb[codes == code].mean(axis=1) < 120).mean()) for name, code in TISSUES.items()}
    assert dark["lymphocytes"] > dark["tumor"] + 0.1 > dark["stroma"] + 0.2
    assert max(dark["necrosis"], dark["fat"], dark["stroma"]) < 0.05
