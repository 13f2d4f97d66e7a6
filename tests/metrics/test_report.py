"""Tests of common.metrics.report: the five report files, the Markdown table, the saved predictions and the swap."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from common.errors import DataError
from common.metrics import (
    PREDICTIONS_FILE,
    compute_classification_metrics,
    format_metrics_table,
    load_predictions,
    report,
    save_predictions,
    write_classification_report,
)

NAN = np.nan
NAMES = ["Atelectasis", "Effusion", "Hernia"]
# Hernia has only negative known labels, so its AUC is undefined.
Y_TRUE = np.array([[0, 1, 0], [0, NAN, 0], [1, 0, NAN], [1, 1, 0], [0, 0, 0], [1, NAN, 0]])
Y_PROB = np.array(
    [[0.1, 0.7, 0.2], [0.4, 0.2, 0.1], [0.35, 0.3, 0.6], [0.8, 0.7, 0.3], [0.6, 0.7, 0.1], [0.9, 0.5, 0.4]]
)
FILES = ["confusion_matrices.png", "metrics.json", "predictions.npz", "report.md", "roc_curves.png"]


@pytest.fixture
def metrics() -> dict:
    return compute_classification_metrics(Y_TRUE, Y_PROB, NAMES, thresholds=[0.8, 0.7, 0.5], n_boot=100)


def _refuse_constant(constant: str) -> None:
    raise ValueError(f"non-JSON constant {constant}")


def test_report_writes_all_files(tmp_path: Path, metrics: dict) -> None:
    out = write_classification_report(metrics, tmp_path / "eval", Y_TRUE, Y_PROB, title="Test set")
    assert out == tmp_path / "eval"
    assert sorted(p.name for p in out.iterdir()) == FILES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]
    for png in ("roc_curves.png", "confusion_matrices.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "metrics.json").read_text(), parse_constant=_refuse_constant)
    assert saved == metrics



def test_report_without_plots_writes_no_png_and_the_same_data(tmp_path: Path, metrics: dict) -> None:
    full = write_classification_report(metrics, tmp_path / "full", Y_TRUE, Y_PROB, title="Test set")
    bare = write_classification_report(metrics, tmp_path / "bare", Y_TRUE, Y_PROB, title="Test set", plots=False)
    assert sorted(p.name for p in bare.iterdir()) == ["metrics.json", "predictions.npz", "report.md"]
    assert (bare / "metrics.json").read_bytes() == (full / "metrics.json").read_bytes()
    with np.load(full / PREDICTIONS_FILE) as a, np.load(bare / PREDICTIONS_FILE) as b:
        assert all(np.array_equal(a[key], b[key], equal_nan=a[key].dtype.kind == "f") for key in a.files)
    text = (bare / "report.md").read_text()
    assert format_metrics_table(metrics) in text and ".png" not in text

def test_report_saves_predictions_bit_for_bit(tmp_path: Path, metrics: dict) -> None:
    out = write_classification_report(metrics, tmp_path / "eval", Y_TRUE, Y_PROB)
    with np.load(out / PREDICTIONS_FILE, allow_pickle=False) as data:
        assert sorted(data.files) == ["class_names", "y_prob", "y_true"]
        np.testing.assert_array_equal(data["y_true"], Y_TRUE)  # NaN positions included
        np.testing.assert_array_equal(data["y_prob"], Y_PROB)
        assert data["y_true"].dtype == np.float64 and data["class_names"].tolist() == NAMES
    y_true, y_prob, names = load_predictions(out / PREDICTIONS_FILE)
    np.testing.assert_array_equal(y_true, Y_TRUE)
    np.testing.assert_array_equal(y_prob, Y_PROB)
    assert names == NAMES


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"y_true": Y_TRUE, "y_prob": Y_PROB}, "expected keys y_true, y_prob, class_names"),
        ({"y_true": Y_TRUE, "y_prob": Y_PROB[:, :2], "class_names": np.array(NAMES)}, r"y_prob \(6, 2\)"),
        ({"y_true": Y_TRUE, "y_prob": Y_PROB, "class_names": np.array(NAMES[:2])}, "2 class names disagree"),
    ],
    ids=["missing-key", "shape", "names"],
)
def test_load_predictions_rejects_bad_files(tmp_path: Path, arrays: dict, match: str) -> None:
    path = tmp_path / "predictions.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=match):
        load_predictions(path)


def test_load_predictions_rejects_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "predictions.npz"
    path.write_text("not a zip")
    with pytest.raises(DataError, match="cannot read predictions"):
        load_predictions(path)


def test_save_predictions_round_trip_without_pickle(tmp_path: Path) -> None:
    save_predictions(tmp_path / "p.npz", Y_TRUE[:2], Y_PROB[:2], NAMES)
    y_true, y_prob, names = load_predictions(tmp_path / "p.npz")
    np.testing.assert_array_equal(y_true, Y_TRUE[:2])
    np.testing.assert_array_equal(y_prob, Y_PROB[:2])
    assert names == NAMES


def test_report_markdown_lists_every_class(tmp_path: Path, metrics: dict) -> None:
    out = write_classification_report(metrics, tmp_path / "eval", Y_TRUE, Y_PROB, title="Test set")
    text = (out / "report.md").read_text()
    assert text.startswith("# Test set\n")
    for name in NAMES:
        assert f"| {name} |" in text
    assert "| Hernia | n/a (one label value) |" in text
    assert "excluded from the mean): Hernia" in text
    assert "- Images: 6" in text and "- Thresholds: validation" in text


def test_format_metrics_table_rows(metrics: dict) -> None:
    lines = format_metrics_table(metrics).splitlines()
    ci = metrics["per_class"][0]["auc_ci"]
    # Atelectasis: AUC 7/9, prevalence 1/2, F1 2/3 at 0.5 and 0.8 at its threshold 0.8 (see test_classification).
    assert lines[2] == f"| Atelectasis | 0.778 [{ci[0]:.3f}, {ci[1]:.3f}] | 0.500 | 0.667 | 0.800 | 0.800 |"
    assert sum(line.startswith("| @ ") for line in lines) == 2
    assert "- Mean AUC over 2 classes [95% CI]: 0.764" in "\n".join(lines)


@pytest.mark.parametrize(
    "failing", ["plot_confusion_matrices", "plot_roc_curves", "save_predictions"], ids=["confusion", "roc", "npz"]
)
def test_failed_write_leaves_previous_report(
    tmp_path: Path, metrics: dict, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    out = tmp_path / "eval"
    out.mkdir()
    (out / "metrics.json").write_text('{"old": true}\n')
    (out / "notes.txt").write_text("keep me")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, failing, broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_classification_report(metrics, out, Y_TRUE, Y_PROB)
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "notes.txt"]
    assert (out / "metrics.json").read_text() == '{"old": true}\n'
    assert (out / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]


def test_report_rejects_arrays_not_matching_metrics(tmp_path: Path, metrics: dict) -> None:
    with pytest.raises(DataError, match=r"shape \(6, 3\); found \(5, 3\)"):
        write_classification_report(metrics, tmp_path / "eval", Y_TRUE[:5], Y_PROB[:5])
    assert not (tmp_path / "eval").exists()


def test_predictions_are_read_after_an_interrupted_eval_swap(tmp_path) -> None:
    """A crash between atomic_directory's two renames left no eval/ (it sat in a .old folder): readers restore it."""
    import os

    import numpy as np

    from common.io import atomic_directory
    from common.metrics.report import load_predictions, save_predictions

    eval_dir = tmp_path / "eval"
    y = np.array([[0.0, 1.0], [1.0, 0.0]])
    with atomic_directory(eval_dir) as tmp:
        save_predictions(tmp / "predictions.npz", y, y * 0.5, ["a", "b"])
    # the state a SIGKILL between "eval -> .eval.<pid>.old/eval" and ".tmp -> eval" leaves, by an ended process
    from common.io import _HOST

    old = tmp_path / f".eval.{_HOST}-999999999-abcdef.old"
    old.mkdir()
    os.replace(eval_dir, old / "eval")
    assert not eval_dir.exists()
    y_true, _, names = load_predictions(eval_dir / "predictions.npz")
    assert names == ["a", "b"] and y_true.shape == (2, 2)
