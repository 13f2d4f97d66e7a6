"""Single-label classification: class index -> loss target, logits -> one probability per class.

One convention for binary and multi-class tasks, chosen by ``num_classes`` alone:

* ``num_classes == 2``: the network has **one** logit, the log-odds of ``class_names[1]`` (the positive class);
  the target is ``float([label])`` for ``BCEWithLogitsLoss``; probabilities are ``[1 - sigmoid(z), sigmoid(z)]``.
* ``num_classes > 2``: ``num_classes`` logits; the target is the ``long`` class index for ``CrossEntropyLoss``;
  probabilities are ``softmax(z)``.

So every evaluation, report and inference CSV sees ``num_classes`` probabilities per image, summing to 1, whatever
the head. :func:`num_outputs` is the head width a bundle builds.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from common.errors import ConfigError, DataError

__all__ = ["ClassIndex", "ClassIndexd", "ClassProbabilities", "ClassProbabilitiesd", "num_outputs"]


def num_outputs(num_classes: int) -> int:
    """Logits the network needs for ``num_classes`` mutually exclusive classes: 1 for two classes, else one each.

    Raises:
        ConfigError: fewer than 2 classes.

    Example:
        >>> num_outputs(2), num_outputs(7)
        (1, 7)
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer) or num_classes < 2:
        raise ConfigError(f"num_classes={num_classes!r}: single-label classification needs an integer >= 2 "
                          "(2 = binary with one logit)")
    return 1 if int(num_classes) == 2 else int(num_classes)


class ClassIndex(Transform):
    """Array transform: an integer class index -> the loss target.

    Binary (``num_classes=2``): ``tensor([float(label)])`` of shape ``(1,)`` (``BCEWithLogitsLoss``); multi-class:
    a 0-d ``long`` tensor (``CrossEntropyLoss``).

    Args:
        num_classes: number of classes (>= 2).

    Raises:
        DataError: at call time, a label that is not an integer in ``[0, num_classes)``.

    Example:
        >>> ClassIndex(2)(1), ClassIndex(3)(2)
        (tensor([1.]), tensor(2))
    """

    backend = [torch.Tensor]

    def __init__(self, num_classes: int) -> None:
        num_outputs(num_classes)
        self.num_classes = int(num_classes)

    def __call__(self, label: Any, source: str = "label") -> torch.Tensor:
        value = label.reshape(-1).tolist() if isinstance(label, torch.Tensor | np.ndarray) else label
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        as_int = int(value) if isinstance(value, int | float | np.number) and not isinstance(value, bool) \
            and float(value).is_integer() else None  # fmt: skip
        if as_int is None or not 0 <= as_int < self.num_classes:
            raise DataError(f"{source}: label {label!r} is not a class index; expected an integer in "
                            f"[0, {self.num_classes - 1}]")  # fmt: skip
        if self.num_classes == 2:
            return torch.tensor([float(as_int)], dtype=torch.float32)
        return torch.tensor(as_int, dtype=torch.long)


class ClassIndexd(MapTransform):
    """Dictionary twin of :class:`ClassIndex`; errors name the item's image.

    Example:
        >>> ClassIndexd("label", 3)({"image": "a.png", "label": 1})["label"]
        tensor(1)
    """

    backend = ClassIndex.backend

    def __init__(self, keys: KeysCollection, num_classes: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = ClassIndex(num_classes)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        source = str(getattr(d.get("image"), "meta", {}).get("filename_or_obj", d.get("image", "label")))
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key], source=f"{source} [{key}]")
        return d


class ClassProbabilities(Transform):
    """Array transform: one image's logits -> ``num_classes`` probabilities summing to 1.

    One logit (binary) gives ``[1 - sigmoid(z), sigmoid(z)]``; ``C > 1`` logits give ``softmax(z)``.

    Example:
        >>> ClassProbabilities()(torch.zeros(1)).tolist(), ClassProbabilities()(torch.zeros(4)).tolist()
        ([0.5, 0.5], [0.25, 0.25, 0.25, 0.25])
    """

    backend = [torch.Tensor]

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        z = torch.as_tensor(logits).float().reshape(-1)
        if z.numel() == 1:
            p = torch.sigmoid(z)
            return torch.cat([1.0 - p, p])
        return torch.softmax(z, dim=0)


class ClassProbabilitiesd(MapTransform):
    """Dictionary twin of :class:`ClassProbabilities` (postprocessing of ``pred``)."""

    backend = ClassProbabilities.backend

    def __init__(self, keys: KeysCollection = "pred", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = ClassProbabilities()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d
