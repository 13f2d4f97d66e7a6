"""Label-mask reading shared by the BCSS adapter and the stage-2 mask sources."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.data.masks import mask_value_counts
from common.errors import DataError


def test_counts_every_code(tmp_path: Path) -> None:
    path = tmp_path / "m.png"
    Image.fromarray(np.array([[0, 2], [2, 3]], dtype=np.uint8)).save(path)
    assert mask_value_counts(path, "BCSS", 3, "codes 0..3").tolist() == [1, 0, 2, 1]


@pytest.mark.parametrize(
    ("pixels", "message"),
    [(np.zeros((2, 2, 3), np.uint8), r"has shape \(2, 2, 3\)"), (np.full((2, 2), 9, np.uint8), "values up to 9")],
)
def test_bad_masks_name_the_file_and_what_was_expected(tmp_path: Path, pixels: np.ndarray, message: str) -> None:
    path = tmp_path / "bad.png"
    Image.fromarray(pixels).save(path)
    with pytest.raises(DataError, match=f"source 'x': mask .*bad.png .*{message}.*expected one channel of 0..5"):
        mask_value_counts(path, "source 'x'", 5, "0..5")


def test_unreadable_mask(tmp_path: Path) -> None:
    (tmp_path / "m.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="BCSS: cannot read mask .*m.png"):
        mask_value_counts(tmp_path / "m.png", "BCSS", 255, "codes 0..255")
