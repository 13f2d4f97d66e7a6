"""Hand plain tensors to the network: the ``prepare_batch`` of every bundle's trainer and evaluators.

MONAI's ``default_prepare_batch`` moves the collated ``image`` and ``label`` to the device as they are: MetaTensors,
so every operation of the forward and backward pass goes through ``MetaTensor.__torch_function__`` (DenseNet-121,
32 px, batch 32, CPU: 119 ms per training step against 93 ms on plain tensors). :class:`PlainTensorBatch` strips
the metadata (``as_tensor()``, no copy), copies asynchronously from pinned memory, optionally in channels-last
layout, and can run a batch augmentation on the device (:mod:`common.transforms.batch_augment`).

Metadata stays where handlers find it: the engine keeps the collated (then decollated) batch in
``engine.state.batch``, MetaTensors and all, beside ``engine.state.output``;
:func:`common.engines.collect.item_meta` reads an item's meta from either.

Example:
    >>> import torch
    >>> from monai.data import MetaTensor
    >>> batch = {"image": MetaTensor(torch.zeros(2, 1, 4, 4)), "label": torch.ones(2, 3)}
    >>> image, label = PlainTensorBatch()(batch, "cpu")
    >>> type(image).__name__, tuple(label.shape)
    ('Tensor', (2, 3))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.data import MetaTensor
from monai.engines.utils import PrepareBatch

from common.errors import DataError

__all__ = ["PlainTensorBatch", "as_plain_tensor"]

#: ``augment(image, label) -> (image, label)`` on device tensors; ``label`` may be None.
BatchAugment = Callable[[torch.Tensor, "torch.Tensor | None"], "tuple[torch.Tensor, torch.Tensor | None]"]


def as_plain_tensor(value: torch.Tensor) -> torch.Tensor:
    """``value`` without MONAI metadata (shares storage; a plain tensor is returned as it is)."""
    return value.as_tensor() if isinstance(value, MetaTensor) else value


class PlainTensorBatch(PrepareBatch):
    """``prepare_batch`` for MONAI's ``SupervisedTrainer`` / ``SupervisedEvaluator``: plain tensors on the device.

    Returns ``(image, label)`` (label ``None`` when the batch has none, as in inference), like MONAI's default,
    so inferers, losses and metrics are unchanged. Copies are ``non_blocking`` whenever the source is in pinned
    memory (the DataLoader's ``pin_memory=True``) or the engine asks for it.

    Args:
        image_key: key of the network input in the collated batch.
        label_key: key of the target; missing or not a tensor -> ``None``.
        channels_last: give 4-D images the channels-last memory format (use with a channels-last network).
        augment: optional batch augmentation applied on the device after the copy, e.g.
            :class:`common.transforms.batch_augment.BatchAugment` (training only).
    """

    def __init__(self, image_key: str = "image", label_key: str = "label", channels_last: bool = False,
                 augment: BatchAugment | None = None) -> None:  # fmt: skip
        self.image_key, self.label_key = image_key, label_key
        self.channels_last = bool(channels_last)
        self.augment = augment

    def _move(self, value: torch.Tensor, device: str | torch.device | None, non_blocking: bool,
              memory_format: torch.memory_format | None, kwargs: Mapping[str, Any]) -> torch.Tensor:  # fmt: skip
        tensor = as_plain_tensor(value)
        blocking = not (non_blocking or tensor.is_pinned())
        if memory_format is None:
            return tensor.to(device=device, non_blocking=not blocking, **kwargs)
        return tensor.to(device=device, non_blocking=not blocking, memory_format=memory_format, **kwargs)

    def __call__(self, batchdata: Mapping[str, Any] | Sequence[torch.Tensor] | torch.Tensor,
                 device: str | torch.device | None = None, non_blocking: bool = False,
                 **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
        """Move ``batchdata``'s image and label to ``device`` as plain tensors (then augment, when set)."""
        if isinstance(batchdata, torch.Tensor):
            image, label = batchdata, None
        elif isinstance(batchdata, Mapping):
            if self.image_key not in batchdata:
                raise DataError(f"batch has no {self.image_key!r} key; found keys {sorted(batchdata)}")
            image, label = batchdata[self.image_key], batchdata.get(self.label_key)
        elif isinstance(batchdata, Sequence) and len(batchdata) == 2:
            image, label = batchdata
        else:
            raise DataError(f"prepare_batch takes a tensor, an (image, label) pair or a dict; "
                            f"found {type(batchdata).__name__}")  # fmt: skip
        layout = torch.channels_last if self.channels_last and image.ndim == 4 else None
        # with an augmentation the layout is set on its output (which it would otherwise lose), else on the copy
        image = self._move(image, device, non_blocking, None if self.augment else layout, kwargs)
        label = self._move(label, device, non_blocking, None, kwargs) if isinstance(label, torch.Tensor) else None
        if self.augment is not None:
            image, label = self.augment(image, label)
            if layout is not None:
                image = image.contiguous(memory_format=layout)
        return image, label
