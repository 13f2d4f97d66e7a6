"""Every bundle with FL overlays runs a federated round under MonaiAlgo; its single-site configs are untouched."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from monai.fl.utils.constants import ExtraItems, WeightType
from monai.fl.utils.exchange_object import ExchangeObject

from common.federated.site import build_algo, parse_site_args, train_round
from common.synthetic import make_embedded_dataset
from tests.federated.conftest import REPO, TINY

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
