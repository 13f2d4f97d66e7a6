"""Single-label metrics agree with scikit-learn computed directly; intervals resample patients; bad input is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

from common.engines.single_label import SingleLabelAUC
from common.errors import ConfigError, DataError
from common.metrics.report import load_predictions
from common.metrics.single_label import (
    bootstrap_single_label,
    compute_single_label_metrics,
    one_vs_rest_auc,
    predicted_classes,
)
from common.metrics.single_label_report import write_single_label_report
from common.transforms.color_jitter import RandColorJitter, RandColorJitterd, check_color_settings
from common.transforms.single_label import ClassIndex, ClassProbabilities, num_outputs


def _data(n_classes: int, n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes)) + 1.5 * np.eye(n_classes)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return labels, probs


def assert_agrees_with_sklearn(metrics: dict, labels: np.ndarray, probs: np.ndarray) -> None:
    """Every number of ``metrics`` recomputed with scikit-learn directly (used by the bundle test too)."""
    n_classes = probs.shape[1]
    predicted = (probs[:, 1] >= 0.5).astype(int) if n_classes == 2 else probs.argmax(axis=1)
    classes = list(range(n_classes))
    assert metrics["accuracy"] == pytest.approx(accuracy_score(labels, predicted))
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, predicted))
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=classes,
                                                                     zero_division=0)
    for c, entry in enumerate(metrics["per_class"]):
        assert (entry["precision"], entry["recall"], entry["f1"], entry["support"]) == pytest.approx(
            (precision[c], recall[c], f1[c], support[c]))
    macro = precision_recall_fscore_support(labels, predicted, labels=classes, average="macro", zero_division=0)
    assert [metrics["macro"][k] for k in ("precision", "recall", "f1")] == pytest.approx(list(macro[:3]))
    assert metrics["confusion_matrix"] == confusion_matrix(labels, predicted, labels=classes).tolist()
    if n_classes == 2:
        expected_auc = roc_auc_score(labels, probs[:, 1])
    else:
        expected_auc = roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=classes)
    assert metrics["macro_auc"] == pytest.approx(expected_auc)
    for c, entry in enumerate(metrics["per_class"]):
        assert entry["auc"] == pytest.approx(roc_auc_score(labels == c, probs[:, c]))


@pytest.mark.parametrize("n_classes", [2, 3, 5], ids=["binary", "3-class", "5-class"])
def test_metrics_agree_with_sklearn(n_classes: int) -> None:
    labels, probs = _data(n_classes)
    metrics = compute_single_label_metrics(labels, probs, [f"c{i}" for i in range(n_classes)], n_boot=50)
    assert_agrees_with_sklearn(metrics, labels, probs)
    assert metrics["task"] == ("binary" if n_classes == 2 else "multiclass")
    assert metrics["positive_class"] == ("c1" if n_classes == 2 else None)
    json.dumps(metrics, allow_nan=False)  # JSON without NaN


def test_binary_auc_is_the_positive_class_and_equals_both_one_vs_rest() -> None:
    labels, probs = _data(2)
    aucs = one_vs_rest_auc(labels, probs)
    assert aucs[0] == pytest.approx(aucs[1]) and aucs[1] == pytest.approx(roc_auc_score(labels, probs[:, 1]))


def test_predicted_class_of_a_binary_tie_is_positive() -> None:
    assert predicted_classes([[0.5, 0.5], [0.51, 0.49]]).tolist() == [1, 0]


def test_absent_class_is_left_out_of_the_macro_auc() -> None:
    labels, probs = _data(3)
    keep = labels != 2
    metrics = compute_single_label_metrics(labels[keep], probs[keep], ["a", "b", "c"], n_boot=20)
    assert metrics["undefined_auc_classes"] == ["c"] and metrics["per_class"][2]["auc"] is None
    expected = np.mean([roc_auc_score(labels[keep] == c, probs[keep, c]) for c in (0, 1)])
    assert metrics["macro_auc"] == pytest.approx(expected)


def test_bootstrap_resamples_patients_and_brackets_the_estimate() -> None:
    labels, probs = _data(3, n=90)
    patients = [f"P{i // 3}" for i in range(90)]
    metrics = compute_single_label_metrics(labels, probs, ["a", "b", "c"], n_boot=300, patient_ids=patients)
    assert metrics["bootstrap"] == {"unit": "patient", "n_units": 30, "n_resamples": 300}
    for key in ("macro_auc", "accuracy", "balanced_accuracy"):
        low, high = metrics[f"{key}_ci"]
        assert low <= metrics[key] <= high and high - low > 0
    images = compute_single_label_metrics(labels, probs, ["a", "b", "c"], n_boot=10)
    assert images["bootstrap"]["unit"] == "image" and images["bootstrap"]["n_units"] == 90


def test_bootstrap_weights_equal_an_explicit_resample() -> None:
    """One resample with counts equals sklearn on the images repeated by those counts."""
    labels, probs = _data(3, n=30)
    ci = bootstrap_single_label(labels, probs, n_boot=1, seed=4)
    rng = np.random.default_rng(4)
    draw = rng.integers(0, 30, size=(1, 30))[0]
    predicted = probs.argmax(axis=1)
    expected_accuracy = accuracy_score(labels[draw], predicted[draw])
    assert ci["accuracy"] == pytest.approx([expected_accuracy, expected_accuracy])


@pytest.mark.parametrize(("labels", "probs", "message"), [
    ([0, 3], [[0.5, 0.5], [0.5, 0.5]], "class indices in \\[0, 1\\]"),
    ([0, 1], [[0.5, 0.5]], "2 labels for 1 predictions"),
    ([0, 1], [[0.5, 1.5], [0.5, 0.5]], "probabilities in \\[0, 1\\]"),
    ([0.5, 1], [[0.5, 0.5], [0.5, 0.5]], "class indices"),
], ids=["label-out-of-range", "length", "probability", "fractional-label"])
def test_bad_input_is_refused(labels: list, probs: list, message: str) -> None:
    with pytest.raises(DataError, match=message):
        compute_single_label_metrics(labels, probs, ["a", "b"], n_boot=0)


def test_report_folder(tmp_path: Path) -> None:
    labels, probs = _data(3, n=30)
    metrics = compute_single_label_metrics(labels, probs, ["a", "b", "c"], n_boot=20)
    out = write_single_label_report(metrics, tmp_path / "eval", labels, probs, title="T")
    assert sorted(p.name for p in out.iterdir()) == ["confusion_matrix.png", "metrics.json", "predictions.npz",
                                                      "report.md", "roc_curves.png"]
    y_true, y_prob, names = load_predictions(out / "predictions.npz")  # what the leaderboard reads
    assert names == ["a", "b", "c"] and np.array_equal(y_true.argmax(axis=1), labels) and np.allclose(y_prob, probs)
    assert "Macro one-vs-rest AUC" in (out / "report.md").read_text()



def test_report_without_plots_writes_no_png_and_the_same_data(tmp_path: Path) -> None:
    labels, probs = _data(3, n=30)
    metrics = compute_single_label_metrics(labels, probs, ["a", "b", "c"], n_boot=20)
    full = write_single_label_report(metrics, tmp_path / "full", labels, probs, title="T")
    bare = write_single_label_report(metrics, tmp_path / "bare", labels, probs, title="T", plots=False)
    assert sorted(p.name for p in bare.iterdir()) == ["metrics.json", "predictions.npz", "report.md"]
    assert (bare / "metrics.json").read_bytes() == (full / "metrics.json").read_bytes()
    with np.load(full / "predictions.npz") as a, np.load(bare / "predictions.npz") as b:
        assert a.files == b.files and all(np.array_equal(a[key], b[key]) for key in a.files)
    text = (bare / "report.md").read_text()
    assert "Macro one-vs-rest AUC" in text and ".png" not in text

def test_key_metric_handler() -> None:
    labels, probs = _data(3, n=40)
    metric = SingleLabelAUC()
    metric.update((torch.tensor(probs[:20]), torch.tensor(labels[:20])))
    metric.update((torch.tensor(probs[20:]), torch.tensor(labels[20:])))
    assert metric.compute() == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr"))
    metric.reset()
    metric.update((torch.tensor([[0.5, 0.5]]), torch.tensor([[1.0]])))
    with pytest.raises(DataError, match="one class only"):
        metric.compute()


def test_class_index_and_probabilities() -> None:
    assert num_outputs(2) == 1 and num_outputs(4) == 4
    with pytest.raises(ConfigError, match="integer >= 2"):
        num_outputs(1)
    assert ClassIndex(2)(1).tolist() == [1.0] and ClassIndex(3)(np.int64(2)).dtype == torch.long
    with pytest.raises(DataError, match=r"a.png \[label\]: label 3 is not a class index"):
        ClassIndex(3)(3, source="a.png [label]")
    z = torch.tensor([0.3])
    assert ClassProbabilities()(z).tolist() == pytest.approx([1 - torch.sigmoid(z).item(), torch.sigmoid(z).item()])
    assert ClassProbabilities()(torch.tensor([1.0, 2.0, 3.0])).sum().item() == pytest.approx(1.0)


def test_color_jitter_is_seeded_and_refuses_grey() -> None:
    image = torch.rand(3, 8, 8)
    outputs = []
    for _ in range(2):
        jitter = RandColorJitterd("image", prob=1.0, brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05)
        jitter.set_random_state(seed=1)
        outputs.append(jitter({"image": image})["image"])
    assert torch.equal(outputs[0], outputs[1]) and not torch.equal(outputs[0], image)
    assert 0.0 <= outputs[0].min() and outputs[0].max() <= 1.0
    assert torch.equal(RandColorJitter(prob=0.0)(image), image)
    with pytest.raises(DataError, match="needs an RGB image"):
        RandColorJitter(prob=1.0)(torch.rand(1, 8, 8))
    with pytest.raises(ConfigError, match="hue=0.7"):
        RandColorJitter(hue=0.7)
    with pytest.raises(ConfigError, match="color_augmentation=True needs color='rgb'"):
        check_color_settings("grey", True)
    assert check_color_settings("grey", False) == "grey"


def test_single_label_loss_is_bce_for_two_classes_and_ce_for_more() -> None:
    from common.losses import SingleLabelLoss

    logits, target = torch.tensor([[0.3], [-1.2]]), torch.tensor([[1.0], [0.0]])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert torch.allclose(SingleLabelLoss(2)(logits, target), expected)
    logits3, target3 = torch.randn(4, 3), torch.tensor([0, 2, 1, 2])
    expected3 = torch.nn.functional.cross_entropy(logits3, target3)
    assert torch.allclose(SingleLabelLoss(3)(logits3, target3), expected3)
    assert torch.allclose(SingleLabelLoss(3)(logits3, target3[:, None]), expected3)  # (B, 1) from a prepared cache
    with pytest.raises(DataError, match="one class index per image"):
        SingleLabelLoss(3)(logits3, torch.zeros(4, 3))
