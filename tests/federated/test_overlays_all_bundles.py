"""One federated round under MonaiAlgo for every bundle that got FL overlays after chest and mammography.

Single-label classification, general pretraining (multi-label, validation split) and both histology segmentation
bundles (sliding-window evaluator, Dice / HD95 report): the received global weights are what the evaluator scores
(no checkpoint loader), no local model.pt is needed, the round report lands in ``rounds/round_000`` with the
bundle's own key metric and no plots, training sends differences of the global model's tensors only (scalar
metrics), and ``models/model_final.pt`` is written. Tiny data (embedded generators, 32 px), one epoch, torch on one
thread.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from monai.data import CacheDataset
from monai.fl.utils.constants import ExtraItems, WeightType
from monai.fl.utils.exchange_object import ExchangeObject

from common.federated.job import FederationSpec
from common.federated.model import bundle_key_metric
from common.federated.simulate import export_job
from common.federated.site import build_algo, keep_report, outgoing_payload, parse_site_args, train_round
from common.synthetic import make_embedded_dataset
from common.synthetic.general_medical import make_general_medical_dataset
from tests.federated.conftest import REPO

FAST = {"pretrained": "none", "batch_size": 4, "val_batch_size": 4, "num_workers": 0, "epochs": 1}
SEGMENTATION = {**FAST, "patch_size": 32, "samples_per_image": 1, "feature_size": 12, "sw_batch_size": 2,
                "n_overlays": 1}


def _dermoscopy(root: Path) -> Path:
    make_embedded_dataset("dermoscopy", root, {"n_patients": 15, "max_images_per_patient": 1, "image_size": 32,
                                               "seed": 0}, {"val_fraction": 0.2, "test_fraction": 0.2, "seed": 0})
    return root


def _general(root: Path) -> Path:
    make_general_medical_dataset(root, seed=0, image_size=32, n_images=8)
    return root


def _bcss(root: Path, tile_size: int = 32) -> Path:
    make_embedded_dataset("bcss", root, {"n_patients": 5, "tiles_per_patient": 1, "tile_size": tile_size, "seed": 0},
                          {"val_fraction": 0.2, "test_fraction": 0.2, "seed": 0})
    return root


def _bcss_64(root: Path) -> Path:
    return _bcss(root, tile_size=64)


#: bundle -> (data generator, overrides, key metric of the per-round report, validation key metric)
CASES: dict[str, tuple[Callable[[Path], Path], dict, str, str]] = {
    "medical_image_classification": (
        _dermoscopy, {**FAST, "arch": "resnet18", "image_size": 32, "n_boot": 10,
                      "class_names": ["keratosis", "melanoma", "nevus"]}, "macro_auc", "val_macro_auc"),
    "medical_general_pretraining": (
        # 33 training images: a batch of 6 leaves no last batch of one (this bundle keeps a partial last batch,
        # and BatchNorm cannot train on one image)
        _general, {**FAST, "arch": "resnet18", "image_size": 32, "n_boot": 10, "batch_size": 6}, "mean_auc",
        "val_mean_auc"),
    "breast_histology_segmentation_unet": (_bcss, SEGMENTATION, "mean_dice", "val_mean_dice"),
    # Swin UNETR downsamples 32x: a 32 px patch leaves one bottleneck pixel, which instance norm refuses
    "breast_histology_segmentation_swin_unetr": (_bcss_64, {**SEGMENTATION, "patch_size": 64}, "mean_dice",
                                                 "val_mean_dice"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_round_under_monai_algo(name: str, tmp_path: Path) -> None:
    make_data, overrides, report_metric, val_metric = CASES[name]
    data = make_data(tmp_path / "data")
    site = tmp_path / "site"
    argv = ["--bundle", str(REPO / "bundles" / name), "--datalist", str(data / "datalist.json"), "--dataset-dir",
            str(data), "--site-dir", str(site)]
    for key, value in overrides.items():
        argv += ["--set", f"{key}={json.dumps(value)}"]
    algo = build_algo(parse_site_args(argv))
    algo.initialize(extra={ExtraItems.CLIENT_NAME: "site-1"})  # no models/model.pt: no require_checkpoint
    assert not (site / "models" / "model.pt").exists()
    rate = json.loads((REPO / "bundles" / name / "configs" / "fl_evaluate.json").read_text())["round_eval_cache_rate"]
    dataset = algo.evaluator.data_loader.dataset  # built once here, reused every round
    assert isinstance(dataset, CacheDataset) and dataset.cache_num == int(len(dataset) * rate)
    expected = set(algo.trainer.network.state_dict())
    weights = {k: v.detach().clone() + (0.01 if v.is_floating_point() else 0)
               for k, v in algo.trainer.network.state_dict().items()}
    evaluated = algo.evaluate(ExchangeObject(weights=weights, weight_type=WeightType.WEIGHTS))
    assert all(torch.equal(v.cpu(), weights[k]) for k, v in algo.evaluator.network.state_dict().items())
    report = keep_report(site, "round_000")
    assert report_metric in report and (site / "rounds" / "round_000" / "metrics.json").is_file()
    assert not list((site / "rounds" / "round_000").rglob("*.png"))  # report_plots false in a round
    assert set(evaluated.metrics) == {f"test_{report_metric}"} or name == "medical_general_pretraining"
    result = train_round(algo, weights, current_round=0, local_epochs=1)
    assert set(result.weights) == expected
    assert any(torch.count_nonzero(d) for d in result.weights.values())  # the local epoch moved the model
    metrics = {**(evaluated.metrics or {}), **algo.train_workflow.evaluator.state.metrics}
    assert val_metric in metrics
    payload = outgoing_payload(result.weights, metrics, expected)  # tensors of the model + scalars only
    assert set(payload["params"]) == expected
    assert (site / "models" / "model_final.pt").is_file()
    algo.finalize()


def test_server_selects_by_each_bundles_own_key_metric() -> None:
    assert {name: bundle_key_metric(REPO / "bundles" / name) for name in CASES} == {
        name: case[3] for name, case in CASES.items()}
    assert bundle_key_metric(REPO / "bundles" / "chest_xray_classification") == "val_mean_auc"


def test_export_selects_the_global_model_by_the_bundles_key_metric(tmp_path: Path) -> None:
    datalist = tmp_path / "site-1" / "datalist.json"
    datalist.parent.mkdir()
    datalist.write_text("{}")  # export reads no data, the site does
    spec = FederationSpec(bundle=str(REPO / "bundles" / "breast_histology_segmentation_unet"),
                          sites={"site-1": str(datalist)}, overrides={"pretrained": "none"},
                          workdir=str(tmp_path / "run"))
    job = export_job(spec, tmp_path / "jobs")  # validated with NVFlare's job validator
    server = "".join(p.read_text() for p in job.rglob("config_fed_server.json"))
    assert '"val_mean_dice"' in server and "val_mean_auc" not in server
