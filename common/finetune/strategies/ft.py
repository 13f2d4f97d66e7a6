"""FT: full fine-tuning, every parameter at one learning rate (the baseline of every comparison)."""

from __future__ import annotations

from common.finetune.base import FinetuneStrategy

__all__ = ["FT"]


class FT(FinetuneStrategy):
    """Full fine-tuning: all layer groups trainable at ``base_lr`` with the optimizer's weight decay.

    Example:
        >>> FT().param_groups(torchvision.models.resnet18(), 1e-3)[0]["name"]  # doctest: +SKIP
        'stem'
    """
