"""Every bundle with FL overlays runs a federated round under MonaiAlgo; its single-site configs are untouched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from monai.data import CacheDataset
from monai.fl.utils.constants import ExtraItems, WeightType
from monai.fl.utils.exchange_object import ExchangeObject

from common.federated.site import build_algo, keep_report, parse_site_args, train_round
from common.synthetic import make_embedded_dataset
from tests.federated.conftest import REPO, TINY, site_argv

FEDERATED = sorted(p.parents[1].name for p in (REPO / "bundles").glob("*/configs/fl_train.json"))


def test_federated_bundles_have_both_overlays() -> None:
    every_bundle = {p.parent.name for p in (REPO / "bundles").glob("*/configs") if (p / "train.json").is_file()}
    assert set(FEDERATED) == every_bundle  # a new bundle needs its FL overlays (docs/federated.md)
    for name in FEDERATED:
        configs = REPO / "bundles" / name / "configs"
        evaluate = json.loads((configs / "fl_evaluate.json").read_text())
        assert "@checkpoint_loader" not in json.dumps(evaluate["validate#handlers"])
        assert not any("check_checkpoint" in step for step in evaluate["initialize"])
        assert "TrainingCheckpoint" not in json.dumps(json.loads((configs / "fl_train.json").read_text()))


def test_mammography_round_under_monai_algo(tmp_path: Path) -> None:
    data = tmp_path / "cbis"
    make_embedded_dataset("cbis-ddsm", data, {"n_patients": 16, "image_size": 96, "seed": 2},
                          {"val_fraction": 0.3, "seed": 0})
    argv = ["--bundle", str(REPO / "bundles" / "breast_mammo_classification"), "--datalist",
            str(data / "datalist.json"), "--dataset-dir", str(data), "--site-dir", str(tmp_path / "site")]
    for key, value in {**TINY, "image_size": 64}.items():
        argv += ["--set", f"{key}={json.dumps(value)}"]
    algo = build_algo(parse_site_args(argv))
    algo.initialize(extra={ExtraItems.CLIENT_NAME: "site-1"})
    weights = {k: v.detach().clone() + (0.01 if v.is_floating_point() else 0)
               for k, v in algo.trainer.network.state_dict().items()}
    algo.evaluate(ExchangeObject(weights=weights, weight_type=WeightType.WEIGHTS))
    assert all(torch.equal(v.cpu(), weights[k]) for k, v in algo.evaluator.network.state_dict().items())
    diff = train_round(algo, weights, current_round=0, local_epochs=1).weights
    assert set(diff) == set(weights)
    assert (tmp_path / "site" / "models" / "model_final.pt").is_file()
    assert (tmp_path / "site" / "eval" / "metrics.json").is_file()


def test_every_fl_evaluate_declares_round_eval_cache_rate() -> None:
    for name in FEDERATED:
        evaluate = json.loads((REPO / "bundles" / name / "configs" / "fl_evaluate.json").read_text())
        assert 0.0 <= evaluate["round_eval_cache_rate"] <= 1.0, name
        assert evaluate["validate#dataloader#dataset"] == "@round_eval_dataset", name
        assert evaluate["round_eval_dataset"]["_target_"] == "CacheDataset", name
        assert evaluate["round_eval_dataset"]["cache_rate"] == "@round_eval_cache_rate", name
        # the same items and preprocessing as the bundle's evaluation dataset
        assert evaluate["round_eval_dataset"]["data"] == "@validate#dataset#data", name
        assert evaluate["round_eval_dataset"]["transform"] == "@validate#preprocessing", name
        settings = json.loads((REPO / "bundles" / name / "configs" / "train.json").read_text())["settings"]
        assert "round_eval_cache_rate" not in settings, name  # not part of the run's fingerprint


def _chest_round_algo(site_dir: Path, datalist: str, cache_rate: float):
    algo = build_algo(parse_site_args(site_argv(site_dir, datalist, round_eval_cache_rate=cache_rate)))
    algo.initialize(extra={ExtraItems.CLIENT_NAME: "site-1"})
    return algo


def _round_report(algo, site_dir: Path, weights: dict[str, torch.Tensor], stage: str) -> dict:
    algo.evaluate(ExchangeObject(weights=weights, weight_type=WeightType.WEIGHTS))
    report = keep_report(site_dir, stage)
    report["predictions"] = dict(np.load(site_dir / "rounds" / stage / "predictions.npz"))
    return report


def test_chest_round_evaluation_caches_the_test_split_with_the_same_report(tmp_path: Path, fl_sites: dict) -> None:
    datalist = fl_sites["sites"]["site-1"]["datalist"]
    cached = _chest_round_algo(tmp_path / "cached", datalist, 1.0)
    dataset = cached.evaluator.data_loader.dataset
    assert isinstance(dataset, CacheDataset) and dataset.cache_num == len(dataset) > 0
    filled = list(dataset._cache)  # preprocessed once, at initialize
    gen = torch.Generator().manual_seed(0)  # a received model with unsaturated, image-dependent probabilities
    weights = {k: v.detach() + 0.001 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v.clone()
               for k, v in cached.trainer.network.state_dict().items()}
    first = _round_report(cached, tmp_path / "cached", weights, "round_000")
    second = _round_report(cached, tmp_path / "cached", weights, "round_001")
    assert cached.evaluator.data_loader.dataset is dataset  # the same dataset every round ...
    assert all(a is b for a, b in zip(dataset._cache, filled, strict=True))  # ... and cache, never refilled
    plain = _chest_round_algo(tmp_path / "plain", datalist, 0.0)
    assert plain.evaluator.data_loader.dataset.cache_num == 0
    uncached = _round_report(plain, tmp_path / "plain", weights, "round_000")
    for report in (second, uncached):
        assert report.keys() == first.keys()
        for key, value in first.items():
            if key == "predictions":
                assert value.keys() == report[key].keys()
                assert all(np.array_equal(value[k], report[key][k], equal_nan=value[k].dtype.kind == "f")
                           for k in value), key
            else:
                assert json.dumps(report[key]) == json.dumps(value), key
    for algo in (cached, plain):
        algo.finalize()
