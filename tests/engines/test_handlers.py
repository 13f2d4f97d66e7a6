"""Engine handlers on a real ignite Engine fed with decollated items, as a MONAI evaluator produces."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor
from sklearn.metrics import roc_auc_score

from common.engines import ClassificationReportHandler, MultilabelAUC, PredictionCollector, ProbabilityCSVWriter
from common.engines.single_label import SingleLabelReportHandler
from common.errors import DataError
from common.metrics import load_predictions

PROBS = np.array([[0.9, 0.2], [0.8, 0.7], [0.3, 0.4], [0.1, 0.6]], dtype=np.float32)
LABELS = np.array([[1, 0], [1, 1], [0, 0], [0, 1]], dtype=np.float32)


def _engine(probs: np.ndarray, labels: np.ndarray | None, batch: int = 2) -> Engine:
    def step(engine: Engine, start: int) -> list[dict]:
        items = []
        for i in range(start, min(start + batch, len(probs))):
            item = {"pred": torch.from_numpy(probs[i]),
                    "image": MetaTensor(torch.zeros(1, 2, 2), meta={"filename_or_obj": f"/data/img_{i}.png"})}
            if labels is not None:
                item["label"] = torch.from_numpy(labels[i])
            items.append(item)
        return items

    return Engine(step)


def _starts(n: int, batch: int = 2) -> list[int]:
    return list(range(0, n, batch))


def test_collector_resets_between_runs() -> None:
    collector = PredictionCollector()
    engine = _engine(PROBS, LABELS)
    collector.attach(engine)
    engine.run(_starts(4))
    engine.run(_starts(4))
    np.testing.assert_array_equal(collector.y_prob, PROBS)
    np.testing.assert_array_equal(collector.y_true, LABELS)
    assert collector.filenames == [f"/data/img_{i}.png" for i in range(4)]


def test_csv_writer_writes_one_row_per_image(tmp_path: Path) -> None:
    writer = ProbabilityCSVWriter(tmp_path / "out" / "predictions.csv", ["A", "B"], relative_to="/data")
    engine = _engine(PROBS, None)
    writer.attach(engine)
    engine.run(_starts(4))
    rows = list(csv.reader(open(tmp_path / "out" / "predictions.csv", newline="")))
    assert rows[0] == ["image", "A", "B"]
    assert rows[2] == ["img_1.png", "0.800000", "0.700000"]
    assert len(rows) == 5


def test_csv_writer_refuses_wrong_class_count(tmp_path: Path) -> None:
    writer = ProbabilityCSVWriter(tmp_path / "p.csv", ["A", "B", "C"])
    engine = _engine(PROBS, None)
    writer.attach(engine)
    with pytest.raises(DataError, match="2 outputs but 3 class names"):
        engine.run(_starts(4))
    assert not (tmp_path / "p.csv").exists()


def test_report_handler_uses_validation_thresholds(tmp_path: Path) -> None:
    calibration = PredictionCollector()
    calib_engine = _engine(PROBS, LABELS)
    calibration.attach(calib_engine)
    calib_engine.run(_starts(4))
    handler = ClassificationReportHandler(tmp_path / "eval", ["A", "B"], calibration=calibration, n_boot=20)
    engine = _engine(PROBS, LABELS)
    handler.attach(engine)
    engine.run(_starts(4))
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["threshold_source"] == "validation"
    assert metrics["per_class"][0]["auc"] == pytest.approx(roc_auc_score(LABELS[:, 0], PROBS[:, 0]))
    y_true, y_prob, names = load_predictions(tmp_path / "eval" / "predictions.npz")
    np.testing.assert_array_equal(y_true, LABELS)
    np.testing.assert_array_equal(y_prob, PROBS)
    assert names == ["A", "B"]



SINGLE_LABEL_PROBS = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]], dtype=np.float32)
SINGLE_LABEL_INDEX = np.array([[0], [1], [1], [1]], dtype=np.float32)


@pytest.mark.parametrize(("handler_class", "probs", "labels", "pngs"), [
    (ClassificationReportHandler, PROBS, LABELS, ["confusion_matrices.png", "roc_curves.png"]),
    (SingleLabelReportHandler, SINGLE_LABEL_PROBS, SINGLE_LABEL_INDEX, ["confusion_matrix.png", "roc_curves.png"]),
], ids=["multi-label", "single-label"])
def test_report_handler_without_plots_writes_no_png_and_the_same_metrics(
        tmp_path: Path, handler_class: type, probs: np.ndarray, labels: np.ndarray, pngs: list[str]) -> None:
    for name, plots in (("full", True), ("bare", False)):
        handler = handler_class(tmp_path / name, ["A", "B"], n_boot=20, plots=plots)
        engine = _engine(probs, labels)
        handler.attach(engine)
        engine.run(_starts(4))
    assert sorted(p.name for p in (tmp_path / "full").glob("*.png")) == pngs
    assert sorted(p.name for p in (tmp_path / "bare").iterdir()) == ["metrics.json", "predictions.npz", "report.md"]
    assert (tmp_path / "bare" / "metrics.json").read_bytes() == (tmp_path / "full" / "metrics.json").read_bytes()

def test_auc_metric_is_the_mean_of_sklearn_aucs() -> None:
    metric = MultilabelAUC(output_transform=lambda items: ([i["pred"] for i in items], [i["label"] for i in items]))
    engine = _engine(PROBS, LABELS)
    metric.attach(engine, "auc")
    engine.run(_starts(4))
    expected = np.mean([roc_auc_score(LABELS[:, c], PROBS[:, c]) for c in range(2)])
    assert engine.state.metrics["auc"] == pytest.approx(expected)


def test_auc_metric_refuses_a_split_without_any_defined_class() -> None:
    metric = MultilabelAUC(output_transform=lambda items: ([i["pred"] for i in items], [i["label"] for i in items]))
    engine = _engine(PROBS, np.zeros_like(LABELS))
    metric.attach(engine, "auc")
    with pytest.raises(DataError, match="no class with both positive and negative"):
        engine.run(_starts(4))


def test_auc_metric_with_nothing_collected_is_a_data_error() -> None:
    with pytest.raises(DataError, match="no predictions were collected"):
        MultilabelAUC().compute()
