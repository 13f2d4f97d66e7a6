"""MaskedBCEWithLogitsLoss ignores NaN labels exactly; MaskedDiceCELoss ignores label-0 pixels exactly."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

from common.errors import ConfigError, DataError
from common.losses import MaskedBCEWithLogitsLoss, MaskedDiceCELoss


def test_nan_targets_are_left_out_of_the_mean() -> None:
    logits = torch.tensor([[0.3, -1.2], [2.0, 0.5]])
    target = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    known = F.binary_cross_entropy_with_logits(logits[[0, 1, 1], [0, 0, 1]], target[[0, 1, 1], [0, 0, 1]])
    assert torch.allclose(MaskedBCEWithLogitsLoss()(logits, target), known)


def test_all_unknown_gives_zero_with_gradient() -> None:
    logits = torch.zeros(2, 3, requires_grad=True)
    loss = MaskedBCEWithLogitsLoss()(logits, torch.full((2, 3), float("nan")))
    loss.backward()
    assert float(loss) == 0.0 and not math.isnan(float(logits.grad.sum()))


# Four images, three findings; NaN = unknown. Finding 3 is known once, finding 2 three times.
BCE_LOGITS = torch.tensor([[0.3, -1.2, 0.8], [2.0, 0.5, -0.4], [-0.7, 1.1, 0.2], [0.1, -2.0, 1.5]],
                          dtype=torch.float64)
NAN = float("nan")
BCE_TARGET = torch.tensor([[1.0, NAN, NAN], [0.0, 1.0, NAN], [NAN, 0.0, 1.0], [1.0, 1.0, NAN]], dtype=torch.float64)


def _bce(logit: float, target: float, pos_weight: float = 1.0) -> float:
    """One BCE-with-logits term written out: -(w y log s(x) + (1 - y) log(1 - s(x)))."""
    p = 1.0 / (1.0 + math.exp(-logit))
    return -(pos_weight * target * math.log(p) + (1.0 - target) * math.log(1.0 - p))


def _known_terms(pos_weight: list[float]) -> dict[int, list[float]]:
    terms: dict[int, list[float]] = {}
    for (i, j), y in zip(torch.cartesian_prod(torch.arange(4), torch.arange(3)).tolist(), BCE_TARGET.flatten().tolist(),
                         strict=True):
        if not math.isnan(y):
            terms.setdefault(j, []).append(_bce(float(BCE_LOGITS[i, j]), y, pos_weight[j]))
    return terms


@pytest.mark.parametrize("pos_weight", [None, [2.0, 0.5, 3.0]], ids=["plain", "pos-weight"])
def test_mean_and_per_task_reductions_equal_hand_sums(pos_weight: list[float] | None) -> None:
    terms = _known_terms(pos_weight or [1.0, 1.0, 1.0])
    flat = [t for task in terms.values() for t in task]
    mean = sum(flat) / len(flat)  # 7 known entries, each weighing 1/7
    per_task = sum(sum(task) / len(task) for task in terms.values())  # torchxrayvision: sum of 3 per-task means
    assert float(MaskedBCEWithLogitsLoss(pos_weight)(BCE_LOGITS, BCE_TARGET)) == pytest.approx(mean, rel=1e-12)
    loss = MaskedBCEWithLogitsLoss(pos_weight, reduction="per_task")(BCE_LOGITS, BCE_TARGET)
    assert float(loss) == pytest.approx(per_task, rel=1e-12)


def test_per_task_equals_torchxrayvision_loop() -> None:
    # The loop of torchxrayvision scripts/train_utils.py train_epoch, with a column that is all unknown added.
    logits = torch.cat([BCE_LOGITS, torch.zeros(4, 1, dtype=torch.float64)], dim=1)
    target = torch.cat([BCE_TARGET, torch.full((4, 1), NAN, dtype=torch.float64)], dim=1)
    expected = torch.zeros(1, dtype=torch.float64)
    for task in range(target.shape[1]):
        mask = ~torch.isnan(target[:, task])
        if mask.any():
            expected += torch.nn.BCEWithLogitsLoss()(logits[:, task][mask], target[:, task][mask])
    loss = MaskedBCEWithLogitsLoss(reduction="per_task")(logits, target)
    assert torch.allclose(loss, expected.sum(), rtol=1e-12, atol=0)


def test_per_task_all_unknown_gives_zero_with_gradient() -> None:
    logits = torch.zeros(2, 3, requires_grad=True)
    loss = MaskedBCEWithLogitsLoss(reduction="per_task")(logits, torch.full((2, 3), NAN))
    loss.backward()
    assert float(loss) == 0.0 and torch.all(logits.grad == 0)


def test_bce_refuses_unknown_reduction() -> None:
    with pytest.raises(ConfigError, match=r"unknown reduction 'sum'; choose from: mean, per_task"):
        MaskedBCEWithLogitsLoss(reduction="sum")


# Two 2x3 images, 3 classes; 0 marks pixels outside the annotation (the whole second row of image 1).
SEG_TARGET = torch.tensor([[[[1, 2, 0], [3, 3, 0]]], [[[0, 0, 0], [2, 1, 1]]]])


def _seg_logits() -> torch.Tensor:
    return torch.randn(2, 3, 2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _reference(logits: torch.Tensor, target: torch.Tensor, batch: bool) -> torch.Tensor:
    """Masked CE + soft Dice written out: sums over valid pixels only, smooth 1e-5, mean over classes (and images)."""
    valid = (target[:, 0] != 0).to(logits.dtype)
    ce = F.cross_entropy(logits.permute(0, 2, 3, 1)[valid.bool()], target[:, 0][valid.bool()] - 1)
    probs = torch.softmax(logits, 1) * valid[:, None]
    onehot = F.one_hot((target[:, 0] - 1).clamp(min=0), 3).permute(0, 3, 1, 2).to(logits.dtype) * valid[:, None]
    dims = (0, 2, 3) if batch else (2, 3)
    tp, sum_p, sum_t = (probs * onehot).sum(dims), probs.sum(dims), onehot.sum(dims)
    dice = 1 - (2 * tp + 1e-5) / (sum_p + sum_t + 1e-5)
    return dice.mean() + ce


@pytest.mark.parametrize("batch", [True, False], ids=["batch-dice", "per-image-dice"])
def test_masked_dice_ce_equals_reference(batch: bool) -> None:
    logits = _seg_logits()
    loss = MaskedDiceCELoss(num_classes=3, batch=batch)(logits, SEG_TARGET)
    assert torch.allclose(loss, _reference(logits, SEG_TARGET, batch), rtol=1e-10, atol=0)


def test_masked_dice_ce_hand_value_uniform_logits() -> None:
    # 3 valid pixels, one per class, p = 1/3 everywhere: CE = log 3; per class Dice = (2/3 + s) / (2 + s).
    target = torch.tensor([[[[1, 2], [3, 0]]]])
    loss = MaskedDiceCELoss(num_classes=3)(torch.zeros(1, 3, 2, 2, dtype=torch.float64), target)
    assert float(loss) == pytest.approx(math.log(3) + 1 - (2 / 3 + 1e-5) / (2 + 1e-5), rel=1e-12)


def test_masked_dice_ce_equals_monai_dice_ce_without_ignored_pixels() -> None:
    logits, target = _seg_logits(), torch.tensor([[[[1, 2, 3], [3, 3, 1]]], [[[2, 2, 1], [2, 1, 1]]]])
    monai = DiceCELoss(to_onehot_y=True, softmax=True, batch=True, lambda_dice=0.5, lambda_ce=2.0)
    ours = MaskedDiceCELoss(num_classes=3, lambda_dice=0.5, lambda_ce=2.0)
    assert torch.allclose(ours(logits, target), monai(logits, target - 1), rtol=1e-12, atol=0)


def test_ignored_pixels_have_zero_gradient_and_no_influence() -> None:
    logits = _seg_logits().requires_grad_(True)
    loss = MaskedDiceCELoss(num_classes=3)(logits, SEG_TARGET)
    loss.backward()
    ignored = (SEG_TARGET == 0).expand(-1, 3, -1, -1)
    assert torch.all(logits.grad[ignored] == 0)
    assert torch.all(logits.grad[~ignored] != 0)
    changed = logits.detach().clone()
    changed[ignored] = 100.0
    assert torch.equal(MaskedDiceCELoss(num_classes=3)(changed, SEG_TARGET), loss.detach())


def test_masked_dice_ce_all_ignored_gives_zero_with_gradient() -> None:
    logits = _seg_logits().requires_grad_(True)
    loss = MaskedDiceCELoss(num_classes=3)(logits, torch.zeros_like(SEG_TARGET))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.all(logits.grad == 0)


def test_masked_dice_ce_accepts_float_targets() -> None:
    logits = _seg_logits()
    loss_fn = MaskedDiceCELoss(num_classes=3)
    assert torch.equal(loss_fn(logits, SEG_TARGET.double()), loss_fn(logits, SEG_TARGET))


@pytest.mark.parametrize(
    ("logits_shape", "target", "match"),
    [
        ((2, 4, 2, 3), SEG_TARGET, r"expected logits \(N, 3, \*spatial\)"),
        ((2, 3, 2, 3), SEG_TARGET[:, :, :1], r"target \(N, 1, \*spatial\); found .* \(2, 1, 1, 3\)"),
        ((2, 3, 2, 3), SEG_TARGET + 1, r"target labels must be 1..3 or 0 \(ignored\); found 4"),
        ((2, 3, 2, 3), SEG_TARGET * 0.5, r"found 0.5"),
    ],
    ids=["channels", "target-shape", "label-too-large", "fractional"],
)
def test_masked_dice_ce_rejects_bad_input(logits_shape: tuple, target: torch.Tensor, match: str) -> None:
    with pytest.raises(DataError, match=match):
        MaskedDiceCELoss(num_classes=3)(torch.zeros(logits_shape), target)


def test_masked_dice_ce_refuses_a_class_as_ignore_index() -> None:
    with pytest.raises(ConfigError, match=r"must not be a class label 1..3; found 3"):
        MaskedDiceCELoss(num_classes=3, ignore_index=3)
