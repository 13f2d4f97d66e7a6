"""The chest bundle with ``cache_dir``: its deterministic preprocessing is bit-for-bit the uncached pipeline's, and it
trains one epoch, evaluates and infers from the cache without decoding a single image."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

import common.transforms.radiograph as radiograph
from common.data.cache_build import build_cache
from tests.bundles.conftest import run_workflow, tiny_overrides
from tests.data.test_cache_build import BUNDLES, CHEST, make_chest

CONFIGS = BUNDLES / CHEST / "configs"


@pytest.fixture(scope="module")
def cached_chest(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(dataset, cache at 32 px) for the chest bundle."""
    root = tmp_path_factory.mktemp("cached_chest")
    data = make_chest(root / "data")
    build_cache(BUNDLES / CHEST, data / "datalist.json", root / "cache", overrides={"image_size": 32}, progress=False)
    return data, root / "cache"


def _split_samples(config: str, key: str, dataset: Path, cache_dir: Path | None) -> list[dict]:
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / config))
    parser.update({"dataset_dir": str(dataset), "image_size": 32, "cache_dir": None if cache_dir is None else
                   str(cache_dir)})  # fmt: skip
    if config == "inference.json":
        parser.update({"datalist": str(dataset / "datalist.json"), "datalist_key": "test"})
    dataset_ = parser.get_parsed_content(key)
    return [dataset_[i] for i in range(len(dataset_))]


@pytest.mark.parametrize(("config", "key"), [("train.json", "validate#dataset"), ("inference.json", "dataset")],
                         ids=["validation", "inference"])  # fmt: skip
def test_cached_preprocessing_equals_uncached_exactly(cached_chest: tuple[Path, Path], config: str, key: str) -> None:
    data, cache = cached_chest
    uncached, cached = _split_samples(config, key, data, None), _split_samples(config, key, data, cache)
    assert len(cached) == len(uncached) > 0
    for a, b in zip(uncached, cached, strict=True):
        assert set(a) == set(b)
        assert a["image"].dtype == b["image"].dtype == torch.float32 and a["image"].shape == (3, 32, 32)
        assert torch.equal(a["image"].as_tensor(), b["image"].as_tensor())
        assert a["image"].meta["filename_or_obj"] == b["image"].meta["filename_or_obj"]
        if "label" in a:
            assert torch.equal(a["label"], b["label"])


def test_bundle_trains_evaluates_and_infers_from_the_cache(cached_chest: tuple[Path, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    data, cache = cached_chest

    def no_decoding(path: object) -> None:
        raise AssertionError(f"decoded {path} although cache_dir is set")

    monkeypatch.setattr(radiograph, "read_radiograph", no_decoding)
    overrides = {**tiny_overrides(tmp_path, data), "arch": "resnet18", "cache_dir": str(cache)}
    run_workflow(CONFIGS, ["train.json"], "train", **overrides)
    assert (tmp_path / "models" / "model.pt").is_file()
    run_workflow(CONFIGS, ["train.json", "evaluate.json"], "eval", **overrides, n_boot=10)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n_images"] == len(json.loads((data / "datalist.json").read_text())["test"])
    run_workflow(CONFIGS, ["inference.json"], "infer", bundle_root=str(tmp_path), dataset_dir=str(data),
                 datalist=str(data / "datalist.json"), datalist_key="test", image_size=32, num_workers=0,
                 arch="resnet18", cache_dir=str(cache))  # fmt: skip
    with open(tmp_path / "predictions" / "predictions.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) > 0
