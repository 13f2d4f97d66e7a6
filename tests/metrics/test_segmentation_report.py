"""Tests of common.metrics.segmentation_report: the report files, the table, the palette and the atomic swap."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.errors import DataError
from common.metrics import (
    colorize_labels,
    compute_segmentation_metrics,
    format_segmentation_table,
    segmentation_palette,
    segmentation_report,
    write_segmentation_report,
)

NAMES = ["tumor", "stroma", "fat"]
TRUTH = np.array([[1, 1, 2, 0], [1, 2, 2, 0], [1, 2, 2, 0], [1, 1, 2, 0]])
PRED = np.array([[1, 1, 2, 3], [1, 1, 2, 3], [1, 2, 2, 3], [1, 1, 2, 3]])
IMAGE = np.full((4, 4, 3), 200, dtype=np.uint8)
FILES = ["confusion_matrix.png", "metrics.json", "overlays", "report.md"]


@pytest.fixture
def metrics() -> dict:
    return compute_segmentation_metrics([PRED], [TRUTH], NAMES)


def test_report_writes_all_files(tmp_path: Path, metrics: dict) -> None:
    out = write_segmentation_report(metrics, tmp_path / "eval", [("case 1", IMAGE, TRUTH, PRED)], NAMES, "Test set")
    assert out == tmp_path / "eval"
    assert sorted(p.name for p in out.iterdir()) == FILES
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["case_1.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]
    for png in (out / "confusion_matrix.png", out / "overlays" / "case_1.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert "![case 1](overlays/case_1.png)" in (out / "report.md").read_text()


def test_overlay_shows_class_colours_and_black_for_ignored(tmp_path: Path, metrics: dict) -> None:
    out = write_segmentation_report(metrics, tmp_path / "eval", [("c", IMAGE, TRUTH, PRED)], NAMES)
    pixels = np.asarray(Image.open(out / "overlays" / "c.png").convert("RGB")).reshape(-1, 3)
    colours = {tuple(int(v) for v in p) for p in np.unique(pixels, axis=0)}
    palette = segmentation_palette(3)
    dimmed_fat = tuple(int(v) for v in (palette[3] * 0.35).astype(np.uint8))  # fat is predicted only where ignored
    for colour in (tuple(palette[1]), tuple(palette[2]), (0, 0, 0), dimmed_fat, (200, 200, 200)):
        assert tuple(int(v) for v in colour) in colours


def test_report_without_overlays_has_no_overlay_folder(tmp_path: Path, metrics: dict) -> None:
    out = write_segmentation_report(metrics, tmp_path / "eval")
    assert sorted(p.name for p in out.iterdir()) == ["confusion_matrix.png", "metrics.json", "report.md"]


def test_table_rows_and_means(metrics: dict) -> None:
    text = format_segmentation_table(metrics)
    # tumor: TP 6, FP 1 (truth stroma at (1, 1)), FN 0 -> Dice 12/13, IoU 6/7; fat only predicted where ignored.
    assert "| tumor | 1 | 0.923 | 0.857 |" in text
    assert "| fat | 3 | n/a | n/a | n/a | 0 | 0 |" in text
    assert "- Mean Dice over 2 classes:" in text
    assert "(excluded from the means): fat" in text


def test_overlay_names_are_made_safe_and_unique(tmp_path: Path, metrics: dict) -> None:
    overlays = [(name, IMAGE, TRUTH, PRED) for name in ("a/b", "a/b", "..")]
    out = write_segmentation_report(metrics, tmp_path / "eval", overlays)
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["a_b.png", "a_b_2.png", "image.png"]


def test_palette_is_stable_distinct_and_black_for_ignored() -> None:
    small, large = segmentation_palette(3), segmentation_palette(30)
    np.testing.assert_array_equal(small, large[:4])
    assert large.shape == (31, 3) and large.dtype == np.uint8
    assert len({tuple(row) for row in large}) == 31
    assert colorize_labels(np.array([[0, 2]]), small).tolist() == [[[0, 0, 0], small[2].tolist()]]


@pytest.mark.parametrize(
    ("overlay", "match"),
    [
        (("x", IMAGE[..., 0], TRUTH, PRED), r"image must be uint8 \(H, W, 3\)"),
        (("x", IMAGE, TRUTH[:2], PRED), r"must be \(4, 4\) like the image"),
        (("x", IMAGE, TRUTH, PRED + 5), r"labels must be 0 \(ignored\) or 1..3"),
    ],
    ids=["grey-image", "truth-shape", "bad-label"],
)
def test_bad_overlay_is_refused_and_nothing_written(tmp_path: Path, metrics: dict, overlay: tuple, match: str) -> None:
    with pytest.raises(DataError, match=match):
        write_segmentation_report(metrics, tmp_path / "eval", [overlay])
    assert not (tmp_path / "eval").exists()


def test_class_names_must_match_metrics(tmp_path: Path, metrics: dict) -> None:
    with pytest.raises(DataError, match=r"class_names \['a', 'b', 'c'\] differ"):
        write_segmentation_report(metrics, tmp_path / "eval", [], ["a", "b", "c"])


def test_failed_write_leaves_previous_report(tmp_path: Path, metrics: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "eval"
    out.mkdir()
    (out / "metrics.json").write_text('{"old": true}\n')

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(segmentation_report, "plot_segmentation_overlay", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_segmentation_report(metrics, out, [("c", IMAGE, TRUTH, PRED)])
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"]
    assert (out / "metrics.json").read_text() == '{"old": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]
