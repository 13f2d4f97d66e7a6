"""The embedded single-bundle tour (``demo --tour``): the synthetic findings are learnt (mean AUC >= 0.75).

The tour runs at half its default chest scale here (160 patients, 5 epochs: 0.82 measured; 120 patients and
4 epochs gave 0.77, too close to the bar, so the chest scale stays) and with a token mammography run (12 patients,
1 epoch: its pipeline and files, not its AUC, which the bundle tests cover; 12 s instead of 49 s for 20 patients,
2 epochs, on the loaded 2-core machine); 320 s at the defaults on 2 cores. The defaults' chest AUC of 0.92-0.94 is
measured in the README."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from common.demo import DEMO_GRID, run_demo, run_tour


def test_demo_learns_the_synthetic_findings(tmp_path: Path) -> None:
    metrics = run_tour(tmp_path, n_patients=160, epochs=5, mammo_patients=12, mammo_epochs=1)
    assert metrics["mean_auc"] >= 0.75, metrics["mean_auc"]
    bundle = tmp_path / "chest_xray_classification"
    for produced in ("models/model.pt", "eval/report.md", "eval/roc_curves.png", "eval/confusion_matrices.png",
                     "predictions/predictions.csv"):
        assert (bundle / produced).is_file(), produced
    assert (tmp_path / "data" / "chestxray14" / "Data_Entry_2017.csv").is_file()
    mammo = tmp_path / "breast_mammo_classification"
    assert (mammo / "eval" / "metrics.json").is_file() and (mammo / "predictions" / "predictions.csv").is_file()


def test_demo_grid_pretrains_runs_every_cell_and_prints_the_leaderboard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``make demo``'s grid, shrunk to seconds per cell (same cells: 3 weight sources x FT/LP-FT x 2 seeds)."""
    raw = yaml.safe_load(DEMO_GRID.read_text())
    raw["tasks"][0]["data"]["generate"].update(n_patients=40, image_size=32)
    raw["tasks"][0]["data"]["split"]["val_fraction"] = 0.25
    tiny = {"image_size": 32, "epochs": 1, "batch_size": 16, "val_batch_size": 32, "n_boot": 10}
    raw["overrides"].update(tiny)
    raw["pretraining"]["data"]["generate"].update(image_size=32, n_images=24)
    raw["pretraining"]["overrides"].update({k: v for k, v in tiny.items() if k != "n_boot"})
    grid = tmp_path / "demo.yaml"
    grid.write_text(yaml.safe_dump(raw))
    run = run_demo(tmp_path, grid=grid, num_workers=0)
    captured = capsys.readouterr()
    printed = captured.out
    # the bundles' per-iteration and per-class lines stay off the console and go to demo.log
    assert "Iter:" not in printed + captured.err and "| Atelectasis |" not in printed + captured.err
    assert "Iter:" in (tmp_path / "demo.log").read_text()
    assert "cell 12/12 done:" in captured.err
    assert "| imagenet | medical | lp_ft(lp_epochs=2) |" in printed and "p (paired t)" in printed
    assert len((run / "results.csv").read_text().splitlines()) == 1 + 12
    assert (run / "leaderboard.png").is_file() and (run / "roc_best.png").is_file()
    assert (run / "pretrain" / "efficientnet_lite0__imagenet" / "models" / "model.pt").is_file()
