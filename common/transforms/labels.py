"""Turn a datalist's label list into a float tensor, with ``None`` (unknown) as NaN."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from common.errors import DataError

__all__ = ["MultiLabel", "MultiLabeld"]


class MultiLabel(Transform):
    """Array transform: a list of ``num_classes`` values (0, 1 or None/NaN) -> float32 tensor.

    NaN marks an unknown finding; ``MaskedBCEWithLogitsLoss`` and the metrics skip it.

    Args:
        num_classes: the expected label length; any other length raises ``DataError``.

    Example:
        >>> MultiLabel(3)([1, 0, None])
        tensor([1., 0., nan])
    """

    backend = [torch.Tensor]

    def __init__(self, num_classes: int) -> None:
        self.num_classes = int(num_classes)

    def __call__(self, label: Sequence[Any] | torch.Tensor, source: str = "label") -> torch.Tensor:
        raw = label.tolist() if isinstance(label, torch.Tensor) else list(label)
        values = [float("nan") if v is None else float(v) for v in raw]
        if len(values) != self.num_classes:
            raise DataError(f"{source}: expected {self.num_classes} label values, found {len(values)}: {values}")
        bad = [v for v in values if v == v and v not in (0.0, 1.0)]
        if bad:
            raise DataError(f"{source}: label values must be 0, 1 or null (unknown), found {bad}")
        return torch.tensor(values, dtype=torch.float32)


class MultiLabeld(MapTransform):
    """Dictionary twin of :class:`MultiLabel`; errors name the item's image when present."""

    backend = MultiLabel.backend

    def __init__(self, keys: KeysCollection, num_classes: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = MultiLabel(num_classes)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        source = str(getattr(d.get("image"), "meta", {}).get("filename_or_obj", d.get("image", "label")))
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key], source=f"{source} [{key}]")
        return d
