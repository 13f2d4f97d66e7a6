"""Pooled test metrics of a federation, one per kind of bundle, against independent recomputations.

Small site report folders written by each kind's own report writer (what a bundle's evaluation writes:
metrics.json, predictions.npz) from hand-made predictions, no training: the pooled value must be the metric of the
union of the sites' test images (sklearn's ``roc_auc_score`` for AUC, numpy pixel counts for the pixel-pooled
Dice), not a mean of the sites' values.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from common.errors import ConfigError, DataError
from common.federated.job import FederationSpec
from common.federated.model import POOLED_TEST_METRICS, check_pooled_results
from common.federated.results import POOLED_METRICS, collect_rounds, pooled_metrics
from common.federated.simulate import simulate
from common.metrics import compute_classification_metrics
from common.metrics.report import write_classification_report
from common.metrics.segmentation import compute_segmentation_metrics
from common.metrics.segmentation_report import write_segmentation_report
from common.metrics.single_label import compute_single_label_metrics
from common.metrics.single_label_report import write_single_label_report
from tests.federated.conftest import REPO

SEG_CLASSES = ["tumor", "stroma", "inflammatory"]
#: images per site: unequal, so a plain mean of the sites' values differs from the pooled value
SIZES = {"site-1": 7, "site-2": 19}


def _multilabel_site(folder: Path, rng: np.random.Generator, n: int, names: list[str]) -> tuple[np.ndarray, ...]:
    y_true = (rng.random((n, len(names))) < 0.5).astype(float)
    y_true[0], y_true[1] = 1.0, 0.0  # every class has positives and negatives at every site
    y_prob = np.clip(0.3 * y_true + 0.7 * rng.random((n, len(names))), 0, 1)
    write_classification_report(compute_classification_metrics(y_true, y_prob, names, n_boot=0), folder, y_true, y_prob)
    return y_true, y_prob


def _single_label_site(folder: Path, rng: np.random.Generator, n: int, names: list[str]) -> tuple[np.ndarray, ...]:
    labels = np.arange(n) % len(names)
    logits = rng.normal(size=(n, len(names))) + np.eye(len(names))[labels]
    y_prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    write_single_label_report(compute_single_label_metrics(labels, y_prob, names, n_boot=0), folder, labels, y_prob)
    return labels, y_prob


def _label_maps(rng: np.random.Generator, n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` images of different sizes: truth 0 (ignored) or 1..3, a prediction that is right ~70% of the time."""
    preds, truths = [], []
    for i in range(n):
        shape = (8 + i % 5, 9 + 2 * (i % 3))
        truth = rng.integers(0, len(SEG_CLASSES) + 1, size=shape)
        if i % 4 == 0:
            truth[truth == 3] = 1  # some images lack a class: per-image Dice / HD95 are undefined there
        noise = rng.integers(1, len(SEG_CLASSES) + 1, size=shape)
        preds.append(np.where((rng.random(shape) < 0.7) & (truth > 0), truth, noise))
        truths.append(truth)
    return preds, truths


def _segmentation_site(folder: Path, rng: np.random.Generator, n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    preds, truths = _label_maps(rng, n)
    write_segmentation_report(compute_segmentation_metrics(preds, truths, SEG_CLASSES), folder)
    return preds, truths


def _pixel_pooled_mean_dice(preds: list[np.ndarray], truths: list[np.ndarray]) -> float:
    """Dice per class over every annotated pixel of every image (2 |P & T| / (|P| + |T|)), then the class mean."""
    p = np.concatenate([x.ravel() for x in preds])
    t = np.concatenate([x.ravel() for x in truths])
    p, t = p[t != 0], t[t != 0]
    return float(np.mean([2 * np.sum((p == c) & (t == c)) / (np.sum(p == c) + np.sum(t == c))
                          for c in range(1, len(SEG_CLASSES) + 1)]))


def test_every_pooled_test_metric_is_poolable() -> None:
    assert set(POOLED_TEST_METRICS.values()) == set(POOLED_METRICS)


@pytest.mark.parametrize("n_classes", [2, 4], ids=["binary", "multiclass"])
def test_single_label_macro_auc_is_the_auc_of_the_union(n_classes: int, tmp_path: Path) -> None:
    rng, names = np.random.default_rng(1), [f"class{c}" for c in range(n_classes)]
    sites = [_single_label_site(tmp_path / s, rng, n, names) for s, n in SIZES.items()]
    labels, probs = np.concatenate([s[0] for s in sites]), np.concatenate([s[1] for s in sites])
    pooled = pooled_metrics([tmp_path / s for s in SIZES], names, metric="macro_auc", output_dir=tmp_path / "pooled")
    expected = (roc_auc_score(labels, probs[:, 1]) if n_classes == 2
                else roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    assert pooled["macro_auc"] == pytest.approx(expected, abs=1e-12)
    assert pooled["n_images"] == sum(SIZES.values())
    site_values = [json.loads((tmp_path / s / "metrics.json").read_text())["macro_auc"] for s in SIZES]
    assert pooled["macro_auc"] != pytest.approx(np.mean(site_values), abs=1e-6)  # not a mean of the sites
    written = json.loads((tmp_path / "pooled" / "metrics.json").read_text())
    assert written["macro_auc"] == pooled["macro_auc"] and (tmp_path / "pooled" / "predictions.npz").is_file()


def test_multilabel_mean_auc_is_the_class_mean_of_the_union(tmp_path: Path) -> None:
    rng, names = np.random.default_rng(2), ["Effusion", "Mass", "Nodule"]
    sites = [_multilabel_site(tmp_path / s, rng, n, names) for s, n in SIZES.items()]
    y_true, y_prob = np.concatenate([s[0] for s in sites]), np.concatenate([s[1] for s in sites])
    pooled = pooled_metrics([tmp_path / s for s in SIZES], names)  # metric="mean_auc": the default, as before
    expected = np.mean([roc_auc_score(y_true[:, c], y_prob[:, c]) for c in range(len(names))])
    assert pooled["mean_auc"] == pytest.approx(expected, abs=1e-12)
    assert pooled["n_images"] == sum(SIZES.values())


def test_segmentation_mean_dice_pools_the_pixels_of_every_image(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    sites = {s: _segmentation_site(tmp_path / s, rng, n) for s, n in SIZES.items()}
    preds = [p for s in sites.values() for p in s[0]]
    truths = [t for s in sites.values() for t in s[1]]
    pooled = pooled_metrics([tmp_path / s for s in SIZES], SEG_CLASSES, metric="mean_dice",
                            output_dir=tmp_path / "pooled")
    assert pooled["mean_dice"] == pytest.approx(_pixel_pooled_mean_dice(preds, truths), abs=1e-12)
    site_values = [json.loads((tmp_path / s / "metrics.json").read_text())["mean_dice"] for s in SIZES]
    assert pooled["mean_dice"] != pytest.approx(np.mean(site_values), abs=1e-6)  # not a mean of the sites
    # every number of the union's report, except the one a site report cannot give (see _pool_segmentation)
    union = compute_segmentation_metrics(preds, truths, SEG_CLASSES)
    assert pooled["mean_dice_per_image"] is None
    for key in ("n_images", "n_pixels", "mean_iou", "mean_hd95", "hd95_missed_images", "pixel_accuracy",
                "undefined_classes", "confusion_matrix", "class_names", "ignore_index", "hd95_missed"):
        assert pooled[key] == pytest.approx(union[key], rel=1e-12), key
    assert pooled["per_class"] == [pytest.approx(e, rel=1e-12) for e in union["per_class"]]
    assert json.loads((tmp_path / "pooled" / "metrics.json").read_text())["mean_dice"] == pooled["mean_dice"]


CASES = {
    "mean_auc": (lambda folder, rng, n: _multilabel_site(folder, rng, n, ["a", "b"]), ["a", "b"]),
    "macro_auc": (lambda folder, rng, n: _single_label_site(folder, rng, n, ["a", "b", "c"]), ["a", "b", "c"]),
    "mean_dice": (_segmentation_site, SEG_CLASSES),
}


@pytest.mark.parametrize("metric", list(CASES), ids=list(CASES))
def test_rounds_csv_rows_carry_the_bundles_metric(metric: str, tmp_path: Path) -> None:
    make_site, names = CASES[metric]
    rng = np.random.default_rng(4)
    for site, n in SIZES.items():
        make_site(tmp_path / site / "rounds" / "round_000", rng, n)
        make_site(tmp_path / site / "rounds" / "final", rng, n)
    rows = collect_rounds(tmp_path, list(SIZES), names, rounds=1, metric=metric)
    assert [(r["round"], r["site"]) for r in rows] == [(r, s) for r in (0, 1) for s in [*SIZES, "pooled"]]
    assert {r["metric"] for r in rows} == {metric}
    for row in rows:
        if row["site"] == "pooled":
            folders = [tmp_path / s / "rounds" / ("final" if row["round"] == 1 else "round_000") for s in SIZES]
            assert row["value"] == pooled_metrics(folders, names, metric=metric)[metric]
            assert row["n_images"] == sum(SIZES.values())
        else:
            stage = "final" if row["round"] == 1 else "round_000"
            report = json.loads((tmp_path / row["site"] / "rounds" / stage / "metrics.json").read_text())
            assert (row["value"], row["n_images"]) == (report[metric], SIZES[row["site"]])


def test_reports_of_other_classes_or_kinds_are_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    _segmentation_site(tmp_path / "seg", rng, 3)
    _single_label_site(tmp_path / "single", rng, 6, SEG_CLASSES)
    _multilabel_site(tmp_path / "multi", rng, 6, ["a", "b"])
    with pytest.raises(DataError, match=r"seg/metrics.json has classes \['tumor'.*expected \['tumor', 'stroma'\]"):
        pooled_metrics([tmp_path / "seg"], ["tumor", "stroma"], metric="mean_dice")
    with pytest.raises(DataError, match=r"single/metrics.json: confusion_matrix.counts must be 3x3"):
        pooled_metrics([tmp_path / "single"], SEG_CLASSES, metric="mean_dice")
    with pytest.raises(DataError, match=r"multi/predictions.npz: y_true is not one-hot"):
        pooled_metrics([tmp_path / "multi"], ["a", "b"], metric="macro_auc")
    with pytest.raises(DataError, match=r"no site reports to pool"):
        pooled_metrics([], ["a", "b"], metric="macro_auc")
    with pytest.raises(DataError, match=r"seg/predictions.npz"):
        pooled_metrics([tmp_path / "seg"], SEG_CLASSES, metric="macro_auc")
    with pytest.raises(ConfigError, match=r"cannot pool test metric 'mean_hd95'; choose from: mean_auc"):
        pooled_metrics([tmp_path / "seg"], SEG_CLASSES, metric="mean_hd95")


BUNDLE_METRICS = {"chest_xray_classification": "mean_auc", "breast_mammo_classification": "mean_auc",
                  "medical_general_pretraining": "mean_auc", "medical_image_classification": "macro_auc",
                  "breast_histology_segmentation_unet": "mean_dice",
                  "breast_histology_segmentation_swin_unetr": "mean_dice"}


@pytest.mark.parametrize("name", list(BUNDLE_METRICS), ids=list(BUNDLE_METRICS))
def test_every_federated_bundle_is_scored_by_its_own_test_metric(name: str) -> None:
    bundle = REPO / "bundles" / name
    assert (bundle / "configs" / "fl_train.json").is_file()
    assert check_pooled_results(bundle) == BUNDLE_METRICS[name]


def test_simulate_refuses_a_bundle_scored_by_another_metric_before_running(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "configs" / "train.json").write_text(json.dumps({"validate": {"key_metric": {"val_mean_hd95": {}}}}))
    spec = FederationSpec(bundle=str(bundle), sites={"site-1": str(tmp_path / "datalist.json")},
                          workdir=str(tmp_path / "run"))
    pattern = r"bundle bundle is scored by val_mean_hd95: `simulate` can pool .* val_macro_auc, val_mean_dice only"
    with pytest.raises(ConfigError, match=pattern):
        simulate(spec)
    assert not (tmp_path / "run").exists()  # refused before anything was written or run
