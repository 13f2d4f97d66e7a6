"""A segmentation bundle (U-Net) through NVFlare's real simulator: 2 sites x 1 round, scored by its own Dice.

The multi-label path runs in test_simulate; here the per-round, per-site and pooled numbers must be ``mean_dice``,
and the pooled value must be the pixel-pooled Dice of the union of the sites' test images (their confusion matrices
summed), in rounds.csv, results.csv, summary.json and final_pooled/ alike. Tiny BCSS-layout sites (32 px tiles).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from common.experiments.stats import parse_runs
from common.federated.job import FederationSpec
from common.federated.simulate import simulate
from common.synthetic import make_embedded_dataset
from tests.federated.conftest import REPO

UNET = REPO / "bundles" / "breast_histology_segmentation_unet"
#: what makes the U-Net bundle run in seconds on a CPU (as in test_overlays_all_bundles)
TINY_SEGMENTATION = {"pretrained": "none", "batch_size": 4, "val_batch_size": 4, "num_workers": 0, "patch_size": 32,
                     "samples_per_image": 1, "feature_size": 12, "sw_batch_size": 2, "n_overlays": 1}


@pytest.fixture(scope="module")
def segmentation_federation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, FederationSpec]:
    out = tmp_path_factory.mktemp("seg_federation")
    sites = {}
    for k, n_patients in enumerate((5, 7), start=1):  # unequal test splits: a plain mean of the sites would differ
        root = out / "data" / f"site-{k}"
        make_embedded_dataset("bcss", root, {"n_patients": n_patients, "tiles_per_patient": 1, "tile_size": 32,
                                             "seed": k}, {"val_fraction": 0.2, "test_fraction": 0.3, "seed": 0})
        sites[f"site-{k}"] = str(root / "datalist.json")
    spec = FederationSpec(bundle=str(UNET), sites=sites, rounds=1, local_epochs=1, overrides=dict(TINY_SEGMENTATION),
                          workdir=str(out / "run"))
    return out / "run", simulate(spec), spec


def _pixel_pooled_mean_dice(reports: list[Path]) -> float:
    """Dice per class from the sites' summed confusion matrices, then the mean over classes with any pixel."""
    total = sum(np.asarray(json.loads((r / "metrics.json").read_text())["confusion_matrix"]["counts"])
                for r in reports)
    tp = np.diag(total)
    denominator = total.sum(axis=0) + total.sum(axis=1)
    return float(np.mean([2 * tp[c] / denominator[c] for c in range(len(tp)) if denominator[c] > 0]))


def test_rounds_csv_has_every_site_and_the_pooled_dice(segmentation_federation: tuple) -> None:
    run, _, spec = segmentation_federation
    rows = list(csv.DictReader((run / "rounds.csv").open()))
    assert [(r["round"], r["site"]) for r in rows] == [(str(n), s) for n in range(2) for s in [*spec.sites, "pooled"]]
    assert {r["metric"] for r in rows} == {"mean_dice"}
    for row in rows:
        stage = "final" if row["round"] == "1" else "round_000"
        if row["site"] == "pooled":
            expected = _pixel_pooled_mean_dice([run / "sites" / s / "rounds" / stage for s in spec.sites])
        else:
            expected = json.loads((run / "sites" / row["site"] / "rounds" / stage / "metrics.json").read_text())[
                "mean_dice"]
        assert float(row["value"]) == pytest.approx(expected, rel=1e-9)


def test_summary_and_results_csv_report_the_pooled_dice(segmentation_federation: tuple) -> None:
    run, summary, spec = segmentation_federation
    finals = [run / "sites" / s / "rounds" / "final" for s in spec.sites]
    assert summary["metric"] == "mean_dice"
    assert summary["final_pooled"] == pytest.approx(_pixel_pooled_mean_dice(finals), rel=1e-9)
    assert summary["sites"] == {s: json.loads((f / "metrics.json").read_text())["mean_dice"]
                                for s, f in zip(spec.sites, finals, strict=True)}
    pooled_report = json.loads((run / "final_pooled" / "metrics.json").read_text())
    assert pooled_report["mean_dice"] == summary["final_pooled"]
    assert pooled_report["n_images"] == sum(json.loads((f / "metrics.json").read_text())["n_images"] for f in finals)
    with (run / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["metric"], r["training"]) for r in rows] == [("mean_dice", "federated")]
    runs = parse_runs(rows)
    assert runs[0].value == summary["final_pooled"]
