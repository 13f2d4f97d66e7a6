"""Pointing game, IoU, random baseline and bootstrap summary, recomputed on hand-made maps and boxes."""

from __future__ import annotations

import numpy as np
import pytest

from common.errors import ConfigError
from common.explain import (
    BoxScore,
    map_box,
    pointing_hit,
    random_hit_probability,
    score_box,
    summarise_scores,
    threshold_iou,
)


def peak_map(row: int, col: int, shape: tuple[int, int] = (64, 64)) -> np.ndarray:
    cam = np.zeros(shape, np.float32)
    cam[row, col] = 1.0
    return cam


@pytest.mark.parametrize(
    ("row", "col", "tolerance", "hit"),
    [(20, 20, 0.0, True), (40, 40, 0.0, False), (9, 20, 0.0, False), (9, 20, 15.0, True), (8, 20, 15.0, False),
     (8, 20, 15.0 * 1024 / 64, True)],
    ids=["inside", "far-outside", "one-px-above", "one-px-above-default-tolerance",
         "two-px-above-default-tolerance", "two-px-above-tolerance-15px-of-64"],
)
def test_hit_iff_peak_inside_enlarged_box(row: int, col: int, tolerance: float, hit: bool) -> None:
    # x, y, w, h: pixel centres 10.5 .. 29.5 inside; the default tolerance is 15 * 64 / 1024 = 0.94 px on 64 px.
    box = (10.0, 10.0, 20.0, 20.0)
    assert pointing_hit(peak_map(row, col), box, tolerance) is hit


def test_tolerance_scales_with_image_side() -> None:
    # 15 px at 1024 px is 15 px on a 1024 map and 0.9375 px on a 64 map.
    box = (100.0, 100.0, 10.0, 10.0)
    assert pointing_hit(peak_map(100, 114, (1024, 1024)), box)  # centre 114.5 <= 110 + 15
    assert not pointing_hit(peak_map(100, 126, (1024, 1024)), box)
    small = map_box({"x": 100, "y": 100, "w": 10, "h": 10}, (1024, 1024), (64, 64))
    assert small == pytest.approx((6.25, 6.25, 0.625, 0.625))
    assert pointing_hit(peak_map(6, 6), small) and not pointing_hit(peak_map(6, 8), small)


def test_all_zero_map_is_a_miss() -> None:
    assert not pointing_hit(np.zeros((8, 8)), (0.0, 0.0, 8.0, 8.0))


def test_random_baseline_is_enlarged_area_over_image_area() -> None:
    assert random_hit_probability((10, 10, 20, 20), (64, 64), 0.0) == pytest.approx(400 / 4096)
    t = 15 * 64 / 1024
    assert random_hit_probability((10, 10, 20, 20), (64, 64)) == pytest.approx((20 + 2 * t) ** 2 / 4096)
    assert random_hit_probability((0, 0, 64, 64), (64, 64)) == pytest.approx(1.0)  # clipped to the image
    # Monte-Carlo check of the same quantity with pointing_hit itself.
    rng = np.random.default_rng(0)
    points = rng.integers(0, 64, size=(4000, 2))
    rate = np.mean([pointing_hit(peak_map(r, c), (10, 10, 20, 20)) for r, c in points])
    assert rate == pytest.approx(random_hit_probability((10, 10, 20, 20), (64, 64)), abs=0.02)


def test_threshold_iou_by_hand() -> None:
    cam = np.zeros((10, 10))
    cam[2:6, 2:6] = 1.0  # 16 px above half max
    cam[0, 0] = 0.4  # below half max
    assert threshold_iou(cam, (2, 2, 4, 4)) == pytest.approx(1.0)
    assert threshold_iou(cam, (4, 2, 4, 4)) == pytest.approx(8 / 24)
    assert threshold_iou(np.zeros((4, 4)), (0, 0, 2, 2)) == 0.0
    with pytest.raises(ConfigError, match="threshold"):
        threshold_iou(cam, (0, 0, 1, 1), threshold=0.0)


def test_summary_recomputed_independently() -> None:
    scores = [BoxScore("Mass", True, 0.5, 0.1), BoxScore("Mass", False, 0.0, 0.3), BoxScore("Mass", True, 0.2, 0.2),
              BoxScore("Nodule", False, 0.0, 0.01)]  # fmt: skip
    out = summarise_scores(scores, n_boot=200, seed=1)
    mass = out["findings"]["Mass"]
    assert mass["n_boxes"] == 3 and mass["hit_rate"] == pytest.approx(2 / 3)
    assert mass["random_baseline"] == pytest.approx(0.2) and mass["mean_iou"] == pytest.approx(0.7 / 3)
    lo, hi = mass["hit_rate_ci95"]
    assert 0.0 <= lo <= 2 / 3 <= hi <= 1.0
    assert out["findings"]["Nodule"]["hit_rate_ci95"] == [0.0, 0.0]
    assert out["all"]["n_boxes"] == 4 and out["all"]["hit_rate"] == pytest.approx(0.5)
    assert summarise_scores(scores, n_boot=200, seed=1) == out  # seeded


def test_score_box_combines_the_three() -> None:
    score = score_box(peak_map(20, 20), "Mass", (10.0, 10.0, 20.0, 20.0), 0.0)
    assert score == BoxScore("Mass", True, pytest.approx(1 / 400), pytest.approx(400 / 4096))
