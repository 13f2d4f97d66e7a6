"""Losses with masked targets: multi-label classification with unknown labels, segmentation with an ignored label."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.losses import DiceLoss

from common.errors import ConfigError, DataError

__all__ = ["BCE_REDUCTIONS", "MaskedBCEWithLogitsLoss", "MaskedDiceCELoss", "SingleLabelLoss"]

BCE_REDUCTIONS = ("mean", "per_task")


class MaskedBCEWithLogitsLoss(nn.Module):
    """Binary cross-entropy on logits that ignores NaN (unknown) targets (torchxrayvision's NaN-label convention).

    ``reduction="mean"`` (default): the mean over all known (image, finding) entries of the batch, so every known
    label weighs the same. This is *not* torchxrayvision's reduction. ``reduction="per_task"`` is: in
    ``scripts/train_utils.py`` (``train_epoch``, mlmed/torchxrayvision) each task (column) gets
    ``BCEWithLogitsLoss()`` (a mean) over that task's non-NaN entries of the batch, and these per-task means are
    summed over the tasks with at least one known entry (tasks with none add nothing). A task with few known labels
    in a batch thus weighs as much as a fully labelled one, and the loss grows with the number of tasks (scale the
    learning rate accordingly). torchxrayvision's optional ``taskweights`` multiplier is not offered here.

    Either way a batch with no known label gives 0 with a gradient path, so training never divides by zero.

    Args:
        pos_weight: optional per-class weight of positives (list of floats, JSON friendly).
        reduction: ``"mean"`` (over known entries) or ``"per_task"`` (torchxrayvision: sum over tasks of the mean
            over that task's known entries).

    Raises:
        ConfigError: unknown ``reduction``.

    Example:
        >>> loss = MaskedBCEWithLogitsLoss()
        >>> float(loss(torch.zeros(1, 2), torch.tensor([[1.0, float("nan")]])))  # doctest: +ELLIPSIS
        0.693...
        >>> per_task = MaskedBCEWithLogitsLoss(reduction="per_task")
        >>> round(float(per_task(torch.zeros(2, 2), torch.tensor([[1.0, 0.0], [float("nan"), 1.0]]))), 4)  # 2 log 2
        1.3863
    """

    def __init__(self, pos_weight: list[float] | None = None, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in BCE_REDUCTIONS:
            raise ConfigError(f"unknown reduction {reduction!r}; choose from: {', '.join(BCE_REDUCTIONS)}")
        self.reduction = reduction
        self.register_buffer("pos_weight", None if pos_weight is None else torch.as_tensor(pos_weight).float())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the BCE over entries whose target is not NaN, reduced as ``self.reduction`` says."""
        target = target.to(logits.dtype)
        known = ~torch.isnan(target)
        if not bool(known.any()):
            return logits.sum() * 0.0
        losses = F.binary_cross_entropy_with_logits(
            logits,
            torch.nan_to_num(target),
            # A loss module is not moved with the network: follow the logits' device and dtype.
            pos_weight=None if self.pos_weight is None else self.pos_weight.to(logits.device, logits.dtype),
            reduction="none",
        )
        if self.reduction == "mean":
            return losses[known].mean()
        per_task_sum = (losses * known).sum(dim=0)
        per_task_count = known.sum(dim=0)
        has_known = per_task_count > 0
        return (per_task_sum[has_known] / per_task_count[has_known]).sum()


class MaskedDiceCELoss(nn.Module):
    """Soft Dice + cross-entropy for segmentation where one target label marks pixels to ignore.

    Convention (BCSS bundles): ``logits`` ``(N, K, *spatial)`` score labels ``1..K`` (channel ``j`` is label
    ``j + 1``; no channel for the ignored label); ``target`` ``(N, 1, *spatial)`` holds ``ignore_index`` (0: outside
    the annotated region) or ``1..K``. Both terms see only the non-ignored pixels: cross-entropy is their mean, and
    the Dice term is MONAI's ``DiceLoss(softmax=True, to_onehot_y=True, ignore_index=...)``, which multiplies the
    softmax and the one-hot target by the valid-pixel mask, then averages ``1 - Dice`` over the K classes. Ignored
    pixels therefore get exactly zero gradient. A batch without any valid pixel gives 0 (with a gradient path).

    MONAI 1.6.1's ``DiceCELoss`` is not used as a whole because it has no ``ignore_index`` (its docstring says so) and
    its cross-entropy would count ignored pixels; its ``DiceLoss`` does support one, so we compose that with
    ``F.cross_entropy(ignore_index=...)`` on the target shifted to ``0..K-1``.

    Args:
        num_classes: K, the number of classes (network output channels).
        ignore_index: the target label to ignore; must not be one of ``1..K``.
        lambda_dice: weight of the Dice term.
        lambda_ce: weight of the cross-entropy term.
        batch: sum Dice statistics over the whole batch before dividing (default), so an image lacking a class or
            lying wholly outside the annotation neither inflates nor dilutes the loss; False = per image, then mean.

    Example:
        >>> loss = MaskedDiceCELoss(num_classes=3)
        >>> logits, target = torch.zeros(1, 3, 2, 2), torch.tensor([[[[1, 2], [3, 0]]]])
        >>> round(float(loss(logits, target)), 4)  # CE log(3) + Dice loss 1 - (2 * 1/3) / (1 + 1) per class
        1.7653
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 0,
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
        batch: bool = True,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1; found {num_classes}")
        if 1 <= ignore_index <= num_classes:
            raise ConfigError(f"ignore_index must not be a class label 1..{num_classes}; found {ignore_index}")
        if lambda_dice < 0 or lambda_ce < 0:
            raise ConfigError(f"lambda_dice and lambda_ce must be >= 0; found {lambda_dice} and {lambda_ce}")
        self.num_classes, self.ignore_index = int(num_classes), int(ignore_index)
        self.lambda_dice, self.lambda_ce = float(lambda_dice), float(lambda_ce)
        # The shifted target uses -1 for ignored pixels: a sentinel outside 0..K-1 that DiceLoss masks out.
        self.dice = DiceLoss(include_background=True, to_onehot_y=True, softmax=True, batch=batch, ignore_index=-1)

    def _shifted_target(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Target as long ``0..K-1`` (label - 1) with -1 where ignored, after checking shape and values."""
        expected = (logits.shape[0], 1, *logits.shape[2:])
        if logits.ndim < 3 or logits.shape[1] != self.num_classes or tuple(target.shape) != expected:
            raise DataError(f"expected logits (N, {self.num_classes}, *spatial) and target (N, 1, *spatial); "
                            f"found {tuple(logits.shape)} and {tuple(target.shape)}")
        valid = target != self.ignore_index
        bad = valid & ((target < 1) | (target > self.num_classes) | (target != torch.round(target)))
        if bool(bad.any()):
            raise DataError(f"target labels must be 1..{self.num_classes} or {self.ignore_index} (ignored); "
                            f"found {target[bad][0].item()}")
        return torch.where(valid, target.long() - 1, torch.full_like(target, -1, dtype=torch.long))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return ``lambda_dice * masked soft Dice + lambda_ce * masked cross-entropy``."""
        shifted = self._shifted_target(logits, target)
        if not bool((shifted >= 0).any()):
            return logits.sum() * 0.0
        ce = F.cross_entropy(logits, shifted[:, 0], ignore_index=-1)
        return self.lambda_dice * self.dice(logits, shifted) + self.lambda_ce * ce


class SingleLabelLoss(nn.Module):
    """Loss of a single-label classifier: BCE on one logit for two classes, cross-entropy for more.

    The target is the class index in any shape holding one value per image (``(B,)``, ``(B, 1)``: a prepared cache
    stores a 0-d label as ``(1,)``), so the loss does not depend on how the label was collated. Two classes:
    ``logits`` ``(B, 1)``, the log-odds of class 1 (:mod:`common.transforms.single_label`); more: ``(B, C)``.

    Args:
        num_classes: number of classes (>= 2).

    Example:
        >>> loss = SingleLabelLoss(3)
        >>> float(loss(torch.zeros(2, 3), torch.tensor([[0], [2]]))) == float(torch.log(torch.tensor(3.0)))
        True
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ConfigError(f"SingleLabelLoss num_classes={num_classes!r}: expected an integer >= 2")
        self.num_classes = int(num_classes)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        index = target.reshape(logits.shape[0], -1)
        if index.shape[1] != 1:
            raise DataError(f"SingleLabelLoss: expected one class index per image, found target {tuple(target.shape)}")
        if self.num_classes == 2:
            return F.binary_cross_entropy_with_logits(logits.reshape(-1), index[:, 0].to(logits.dtype))
        return F.cross_entropy(logits, index[:, 0].long())
