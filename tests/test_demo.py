"""The embedded demo end to end, with its defaults: the synthetic findings must be learnt (mean AUC >= 0.75)."""

from __future__ import annotations

from pathlib import Path

from common.demo import run_demo


def test_demo_learns_the_synthetic_findings(tmp_path: Path) -> None:
    metrics = run_demo(tmp_path)
    assert metrics["mean_auc"] >= 0.75, metrics["mean_auc"]
    bundle = tmp_path / "chest_xray_classification"
    for produced in ("models/model.pt", "eval/report.md", "eval/roc_curves.png", "eval/confusion_matrices.png",
                     "predictions/predictions.csv"):
        assert (bundle / produced).is_file(), produced
    assert (tmp_path / "data" / "chestxray14" / "Data_Entry_2017.csv").is_file()
    mammo = tmp_path / "breast_mammo_classification"
    assert (mammo / "eval" / "metrics.json").is_file() and (mammo / "predictions" / "predictions.csv").is_file()
