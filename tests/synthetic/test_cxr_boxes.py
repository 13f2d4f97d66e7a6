"""Synthetic ChestX-ray14 boxes: they contain the drawn signs, are written in NIH's format and reach the datalist."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.data.chestxray14 import CHESTXRAY14_FINDINGS, load_chestxray14_datalist
from common.data.chestxray14_boxes import count_boxes, read_bbox_list
from common.synthetic.cxr import generate_chestxray14, render_chest, render_chest_with_boxes
from common.synthetic.cxr_boxes import BOXED_FINDINGS, sign_boxes


def only(name: str) -> list[float]:
    return [float(finding == name) for finding in CHESTXRAY14_FINDINGS]


@pytest.mark.parametrize("name", BOXED_FINDINGS, ids=list(BOXED_FINDINGS))
@pytest.mark.parametrize("seed", [0, 1, 2], ids=["seed0", "seed1", "seed2"])
def test_boxes_contain_the_drawn_sign(name: str, seed: int) -> None:
    size = 64
    image, boxes = render_chest_with_boxes(only(name), np.random.default_rng(seed), size)
    plain = render_chest([0.0] * 14, np.random.default_rng(seed), size)  # same anatomy and noise, no sign
    assert boxes and all(finding == name for finding, _ in boxes)
    change = np.abs(image.astype(int) - plain.astype(int))
    drawn = change > 0.2 * 255
    inside = np.zeros_like(drawn)
    for _, (x, y, w, h) in boxes:
        assert 0 <= x and 0 <= y and x + w <= size and y + h <= size
        assert (change[y:y + h, x:x + w] > 0.05 * 255).any()  # every box holds part of the sign
        inside[max(0, y - 2):y + h + 2, max(0, x - 2):x + w + 2] = True  # 2 px: the final blur spreads the sign
    assert drawn.any() and not (drawn & ~inside).any()


def test_unboxed_findings_and_no_finding_have_no_boxes() -> None:
    assert render_chest_with_boxes([0.0] * 14, np.random.default_rng(0), 64)[1] == []
    assert render_chest_with_boxes(only("Emphysema"), np.random.default_rng(0), 64)[1] == []


def test_sign_boxes_separate_distant_lesions() -> None:
    before = np.zeros((64, 64), np.float32)
    after = before.copy()
    after[5:9, 5:9] = 1.0
    after[40:44, 50:60] = 0.5
    after[41, 61] = 0.05  # below the threshold: not drawn
    assert sign_boxes(before, after) == [(5, 5, 4, 4), (50, 40, 10, 4)]


def test_generator_writes_nih_box_file_that_reaches_the_datalist(tmp_path: Path) -> None:
    generate_chestxray14(tmp_path, n_patients=12, image_size=48, seed=1, prevalence=0.4)
    boxes = read_bbox_list(tmp_path / "BBox_List_2017.csv")
    assert boxes and {b.finding for b in boxes} <= set(BOXED_FINDINGS)
    assert "Infiltrate," in (tmp_path / "BBox_List_2017.csv").read_text() or "Infiltration" not in {
        b.finding for b in boxes}
    assert all(b.x + b.w <= 48 and b.y + b.h <= 48 for b in boxes)
    datalist = load_chestxray14_datalist(tmp_path, val_fraction=0.25)
    assert sum(count_boxes(datalist).values()) == len(boxes)
    for items in datalist.values():
        for item in items:
            names = {CHESTXRAY14_FINDINGS[i] for i, v in enumerate(item["label"]) if v}
            assert {box["finding"] for box in item.get("boxes", [])} <= names
