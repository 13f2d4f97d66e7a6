"""Linear probes per cut-off layer: one row per layer, AUCs that follow the signal, names, Swin pooling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torchvision
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from common.errors import ConfigError
from common.finetune.probe import format_table, pool_features, probe_cutoff_layers, resolve_layers


class TwoStage(nn.Module):
    """``informative`` keeps the per-channel means that carry the labels; ``dead`` outputs a constant."""

    def __init__(self) -> None:
        super().__init__()
        self.informative = nn.Conv2d(3, 3, 1)
        self.dead = nn.Conv2d(3, 4, 1)
        self.head = nn.Linear(4, 2)
        with torch.no_grad():
            self.informative.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.informative.bias.zero_()
            self.dead.weight.zero_()
            self.dead.bias.fill_(0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dead(self.informative(x)).mean(dim=(2, 3)))


def batches(n: int, seed: int, unknown: bool = False, size: int = 8) -> list[dict[str, torch.Tensor]]:
    """Noise images; finding k (k = 0, 1) brightens channel k; finding 2 is always absent (not scorable)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.zeros(n, 3)
    labels[:, :2] = (torch.rand(n, 2, generator=gen) < 0.5).float()
    labels[:2, :2], labels[2:4, :2] = 1.0, 0.0  # both values present in every split
    images = torch.randn(n, 3, size, size, generator=gen)
    images[:, :2] += 1.5 * labels[:, :2, None, None]
    if unknown:
        labels[4:8, 0] = math.nan
    return [{"image": images[i: i + 8], "label": labels[i: i + 8]} for i in range(0, n, 8)]


@pytest.mark.parametrize("unknown", [False, True], ids=["complete-labels", "unknown-labels-masked"])
def test_one_row_per_layer_in_layer_order_and_the_predictive_layer_wins(unknown: bool) -> None:
    model = TwoStage()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rows = probe_cutoff_layers(model, ["dead", "informative"], batches(48, 0, unknown), batches(32, 1))
    assert [r["layer"] for r in rows] == ["informative", "dead"]
    assert [r["feature_dim"] for r in rows] == [3, 4]
    assert all(0.0 <= r["val_mean_auc"] <= 1.0 for r in rows)
    assert rows[0]["val_mean_auc"] > 0.95
    assert rows[1]["val_mean_auc"] == 0.5  # constant features: the probe cannot rank
    assert [r["best"] for r in rows] == [True, False]
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert "* best" in format_table(rows).splitlines()[1]


def test_max_batches_stops_reading() -> None:
    train = [*batches(16, 0), None]  # a third batch would fail to unpack
    rows = probe_cutoff_layers(TwoStage(), ["informative"], train, [*batches(16, 1), None], max_batches=2)
    assert len(rows) == 1


def test_unknown_layer_suggests_close_names() -> None:
    with pytest.raises(ConfigError, match=r"probe layer 'informativ' not found in TwoStage; did you mean: informative"):
        probe_cutoff_layers(TwoStage(), ["informativ"], batches(8, 0), batches(8, 1))


def test_keras_densenet_aliases_resolve_in_layer_order() -> None:
    model = torchvision.models.densenet121(num_classes=2)
    assert resolve_layers(model, ["conv5_block16_2_conv", "pool4_conv"]) == [
        ("pool4_conv", "features.transition3.conv"),
        ("conv5_block16_2_conv", "features.denseblock4.denselayer16.conv2"),
    ]


@pytest.mark.parametrize(
    ("shape", "channel_last", "dims"),
    [((2, 5, 4, 4), False, (2, 3)), ((2, 4, 4, 5), True, (1, 2)), ((2, 6, 5), True, (1,)),
     ((2, 5, 2, 3, 3), False, (2, 3, 4))],
    ids=["conv-NCHW", "swin-NHWC", "tokens-NLC", "volume-NCDHW"],
)
def test_pool_features_averages_the_spatial_dimensions(shape: tuple, channel_last: bool, dims: tuple) -> None:
    x = torch.randn(*shape)
    assert torch.equal(pool_features(x, channel_last), x.mean(dim=dims))
    assert pool_features(x, channel_last).shape == (2, 5)


def test_swin_stages_are_pooled_channel_last() -> None:
    torch.manual_seed(0)
    # A two-stage torchvision Swin (swin_t's class and layout, 16/32 channels) keeps the test fast.
    model = torchvision.models.SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[1, 1], num_heads=[1, 2],
                                               window_size=[2, 2], num_classes=2)
    rows = probe_cutoff_layers(model, ["features.1", "features.3", "norm"], batches(16, 0, size=32),
                               batches(16, 1, size=32))
    assert [r["feature_dim"] for r in rows] == [16, 32, 32]  # channels, not the 8 x 8 / 4 x 4 spatial grid


def single_label_batches(n: int, seed: int, n_classes: int) -> list[dict[str, torch.Tensor]]:
    """Single-label class indices as the single-label bundles batch them, shape (N, 1); class k brightens channel k."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % n_classes
    images = torch.randn(n, 3, 8, 8, generator=gen)
    images[torch.arange(n), labels] += 2.0
    return [{"image": images[i: i + 8], "label": labels[i: i + 8, None].float()} for i in range(0, n, 8)]


def _features_and_labels(batch_list: list[dict[str, torch.Tensor]]) -> tuple[np.ndarray, np.ndarray]:
    images = torch.cat([b["image"] for b in batch_list])
    return images.mean(dim=(2, 3)).numpy(), torch.cat([b["label"] for b in batch_list])[:, 0].long().numpy()


@pytest.mark.parametrize("n_classes", [2, 3])
def test_single_label_probe_scores_the_positive_class_and_macro_one_vs_rest(n_classes: int) -> None:
    """One label column: a binary task is scored by P(class 1) (it was scored by P(class 0), AUC ~0 on separable
    data); class indices of 3 classes get the macro one-vs-rest AUC, recomputed here with scikit-learn."""
    train, val = single_label_batches(48, 0, n_classes), single_label_batches(32, 1, n_classes)
    auc = probe_cutoff_layers(TwoStage(), ["informative"], train, val)[0]["val_mean_auc"]
    x_train, y_train = _features_and_labels(train)
    x_val, y_val = _features_and_labels(val)
    expected = []
    for c in range(n_classes) if n_classes > 2 else [1]:
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x_train, y_train == c)
        expected.append(roc_auc_score(y_val == c, probe.predict_proba(x_val)[:, 1]))
    assert auc == pytest.approx(float(np.mean(expected)), abs=1e-6)
    assert auc > 0.9
