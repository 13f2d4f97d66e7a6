"""MultiLabel(d): label lists -> float tensors with NaN for unknown; wrong length or values raise."""

from __future__ import annotations

import math

import pytest
import torch

from common.errors import DataError
from common.transforms import MultiLabel, MultiLabeld


def test_none_becomes_nan() -> None:
    out = MultiLabel(3)([1, 0, None])
    assert out.dtype == torch.float32
    assert out[:2].tolist() == [1.0, 0.0] and math.isnan(out[2])


@pytest.mark.parametrize(("label", "match"), [([1, 0], "expected 3 label values, found 2"),
                                               ([1, 0, 2], "must be 0, 1 or null")], ids=["length", "value"])
def test_bad_labels_raise(label: list, match: str) -> None:
    with pytest.raises(DataError, match=match):
        MultiLabel(3)(label)


def test_dictionary_error_names_the_image() -> None:
    with pytest.raises(DataError, match="img_7.png"):
        MultiLabeld(keys="label", num_classes=2)({"image": "img_7.png", "label": [1]})
