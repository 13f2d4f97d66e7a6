"""common.data.cache_build: the cache holds exactly what a bundle's load_transforms compute (images, segmentation
masks, multi-label NaN labels, meta); builds resume from completed shards and never leave a half shard."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.transforms import Compose

import common.data.cache_build as cache_build
from common.data.cache import LoadPreparedd
from common.data.cache_build import build_cache
from common.data.cache_read import INDEX_NAME, SHARDS_DIR, PreparedCache
from common.errors import ConfigError, StaleCacheError
from common.synthetic import make_embedded_dataset, make_general_medical_dataset

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
CHEST, HISTO, GENERAL = "chest_xray_classification", "breast_histology_segmentation_unet", "medical_general_pretraining"


def make_chest(root: Path) -> Path:
    """10 tiny (32 px) synthetic radiographs in the ChestX-ray14 layout, datalist.json included."""
    make_embedded_dataset("chestxray14", root, {"n_patients": 8, "images_per_patient": (1, 2), "image_size": 32,
                                                "seed": 3}, {"val_fraction": 0.25, "seed": 0})  # fmt: skip
    return root


@pytest.fixture(scope="module")
def chest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_chest(tmp_path_factory.mktemp("chest"))


def bundle_stage(bundle: str, dataset: Path, split: str = "validation", **overrides: Any) -> tuple[list, list]:
    """``(load_transforms, items of split)`` as the bundle's train.json resolves them."""
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / bundle / "configs" / "train.json"))
    parser["dataset_dir"] = str(dataset)
    for key, value in overrides.items():
        parser[key] = value
    parser.parse()
    data = parser.get("train#dataset#data").replace("'training'", repr(split))
    parser["test_items"] = data
    parser.parse(reset=True)
    return parser.get_parsed_content("load_transforms"), parser.get_parsed_content("test_items")


def assert_same_sample(expected: Mapping[str, Any], cached: Mapping[str, Any]) -> None:
    """Same keys; tensors of the same type, dtype and bits (NaN where NaN); same meta; other values equal."""
    assert set(expected) == set(cached)
    for key, value in expected.items():
        if isinstance(value, torch.Tensor):
            assert type(cached[key]) is type(value) and cached[key].dtype == value.dtype, key
            a, b = value.as_tensor() if isinstance(value, MetaTensor) else value, cached[key]
            b = b.as_tensor() if isinstance(b, MetaTensor) else b
            assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num()), key
            if isinstance(value, MetaTensor):
                assert set(value.meta) == set(cached[key].meta), key
                for name in value.meta:
                    np.testing.assert_equal(np.asarray(value.meta[name]), np.asarray(cached[key].meta[name]))
                ops = [(op["class"], op["id"], op["orig_size"]) for op in value.applied_operations]
                assert [(op["class"], op["id"], op["orig_size"]) for op in cached[key].applied_operations] == ops
        else:
            assert cached[key] == value, key


def test_cache_equals_chest_transforms_and_keeps_uint8(chest: Path, tmp_path: Path) -> None:
    index = build_cache(BUNDLES / CHEST, chest / "datalist.json", tmp_path / "cache", overrides={"image_size": 32},
                        shard_size=4, progress=False)  # fmt: skip
    assert index["encodings"]["image"] == {"stored": "uint8", "scale": 255, "dtype": "float32"}
    transforms, items = bundle_stage(CHEST, chest, "training", image_size=32)
    stage = LoadPreparedd(tmp_path / "cache", transforms, items)
    for item in items:
        assert_same_sample(Compose(transforms)(dict(item)), stage(item))
    records = [json.loads(r) for shard in PreparedCache(tmp_path / "cache").records for r in shard]
    assert {r["item"]["__dict__"]["patient_id"] for r in records} == {i["patient_id"] for i in items} | {
        r["item"]["__dict__"]["patient_id"] for r in records if r["split"] != "training"}


def test_segmentation_masks_are_cached_exactly(tmp_path: Path) -> None:
    data = tmp_path / "bcss"
    make_embedded_dataset("bcss", data, {"n_patients": 6, "tiles_per_patient": 1, "tile_size": 48, "seed": 0},
                          {"val_fraction": 0.2, "test_fraction": 0.2, "seed": 0})  # fmt: skip
    index = build_cache(BUNDLES / HISTO, data / "datalist.json", tmp_path / "cache", progress=False)
    assert index["encodings"]["label"]["stored"] == "uint8"
    transforms, items = bundle_stage(HISTO, data, "training")
    stage = LoadPreparedd(tmp_path / "cache", transforms, items)
    for item in items:
        expected, cached = Compose(transforms)(dict(item)), stage(item)
        assert_same_sample(expected, cached)
        assert cached["label"].shape == (1, 48, 48) and cached["label"].max() >= 1


def test_multi_label_nan_labels_are_cached_exactly(tmp_path: Path) -> None:
    data = tmp_path / "general"
    make_general_medical_dataset(data, seed=0, image_size=32, n_images=4)
    build_cache(BUNDLES / GENERAL, data / "datalist.json", tmp_path / "cache", overrides={"image_size": 24},
                splits=["validation"], progress=False)  # fmt: skip
    transforms, items = bundle_stage(GENERAL, data, image_size=24)
    stage = LoadPreparedd(tmp_path / "cache", transforms, items)
    labels = []
    for item in items:
        expected, cached = Compose(transforms)(dict(item)), stage(item)
        assert_same_sample(expected, cached)
        labels.append(cached["label"])
    assert torch.stack(labels).isnan().any() and not torch.stack(labels).isnan().all()


def test_workers_build_the_same_cache(chest: Path, tmp_path: Path) -> None:
    for workers in (0, 2):
        build_cache(BUNDLES / CHEST, chest / "datalist.json", tmp_path / f"w{workers}", overrides={"image_size": 16},
                    num_workers=workers, shard_size=4, progress=False)  # fmt: skip
    for shard in (tmp_path / "w0" / SHARDS_DIR).iterdir():
        for file in shard.iterdir():
            assert file.read_bytes() == (tmp_path / "w2" / SHARDS_DIR / shard.name / file.name).read_bytes()


def test_interrupted_build_resumes_from_completed_shards(chest: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    kwargs = {"overrides": {"image_size": 16}, "shard_size": 3, "progress": False}
    real, calls = cache_build.prepare_sample, {"n": 0}

    def interrupted(*args: Any, **kw: Any) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 8:  # Ctrl-C in the third shard
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(cache_build, "prepare_sample", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_cache(BUNDLES / CHEST, chest / "datalist.json", tmp_path / "cache", **kwargs)
    shards = sorted((tmp_path / "cache" / SHARDS_DIR).iterdir())
    assert [p.name for p in shards] == ["00000", "00001"] and not (tmp_path / "cache" / INDEX_NAME).exists()
    with pytest.raises(StaleCacheError, match="did not finish: rerun python -m common prepare-cache to resume"):
        PreparedCache(tmp_path / "cache")
    before = {p.name: (p / "shard.json").stat().st_ino for p in shards}
    calls["n"] = -1000
    index = build_cache(BUNDLES / CHEST, chest / "datalist.json", tmp_path / "cache", **kwargs)
    assert calls["n"] == -1000 + index["items"] - 6  # only the items of the unfinished shards were prepared
    assert len(index["shards"]) == -(-index["items"] // 3) and len(PreparedCache(tmp_path / "cache")) == index["items"]
    assert {name: (tmp_path / "cache" / SHARDS_DIR / name / "shard.json").stat().st_ino for name in before} == before


def test_failed_shard_write_leaves_no_complete_looking_shard(chest: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    calls = {"n": 0}
    real_save = np.save

    def failing_save(file: Any, array: np.ndarray) -> None:
        calls["n"] += 1
        if calls["n"] == 4:  # second shard, second array (image, label per shard)
            raise OSError(28, "No space left on device")
        real_save(file, array)

    monkeypatch.setattr(cache_build.np, "save", failing_save)
    with pytest.raises(OSError, match="No space left on device"):
        build_cache(BUNDLES / CHEST, chest / "datalist.json", tmp_path / "cache", overrides={"image_size": 16},
                    shard_size=4, progress=False)  # fmt: skip
    shards = tmp_path / "cache" / SHARDS_DIR
    assert sorted(os.listdir(shards)) == ["00000"]  # no second shard, no hidden leftover of it
    assert (shards / "00000" / "shard.json").is_file() and not (tmp_path / "cache" / INDEX_NAME).exists()


def test_foreign_output_folder_is_refused(chest: Path, tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(ConfigError, match="photos is a non-empty folder that is not a prepared-image cache"):
        build_cache(BUNDLES / CHEST, chest / "datalist.json", tmp_path / "photos", progress=False)
    assert os.listdir(tmp_path / "photos") == ["holiday.jpg"]


def test_rebuild_after_a_change_rebuilds_only_affected_shards(tmp_path: Path) -> None:
    data = make_chest(tmp_path / "chest")
    kwargs = {"overrides": {"image_size": 16}, "shard_size": 3, "progress": False}
    build_cache(BUNDLES / CHEST, data / "datalist.json", tmp_path / "cache", **kwargs)
    first = json.loads((data / "datalist.json").read_text())["training"][0]["image"]
    shutil.copy(data / first, data / "copy.png")
    os.replace(data / "copy.png", data / first)  # same pixels, new file: mtime changes
    before = {p.name: (p / "shard.json").stat().st_ino for p in (tmp_path / "cache" / SHARDS_DIR).iterdir()}
    build_cache(BUNDLES / CHEST, data / "datalist.json", tmp_path / "cache", **kwargs)
    after = {p.name: (p / "shard.json").stat().st_ino for p in (tmp_path / "cache" / SHARDS_DIR).iterdir()}
    assert [name for name in before if before[name] != after[name]] == ["00000"]
