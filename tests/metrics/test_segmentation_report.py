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



def test_report_without_plots_writes_no_png_and_the_same_metrics(tmp_path: Path, metrics: dict) -> None:
    overlays = [("case 1", IMAGE, TRUTH, PRED)]
    full = write_segmentation_report(metrics, tmp_path / "full", overlays, NAMES, "Test set")
    bare = write_segmentation_report(metrics, tmp_path / "bare", overlays, NAMES, "Test set", plots=False)
    assert sorted(p.name for p in bare.iterdir()) == ["metrics.json", "report.md"]  # no overlays/ folder either
    assert (bare / "metrics.json").read_bytes() == (full / "metrics.json").read_bytes()
    text = (bare / "report.md").read_text()
    assert format_segmentation_table(metrics) in text and ".png" not in text


def test_report_without_plots_still_checks_overlays(tmp_path: Path, metrics: dict) -> None:
    with pytest.raises(DataError, match="image must be uint8"):
        write_segmentation_report(metrics, tmp_path / "eval", [("c", IMAGE.astype(float), TRUTH, PRED)], plots=False)

def test_table_rows_and_means(metrics: dict) -> None:
    text = format_segmentation_table(metrics)
    # tumor: TP 6, FP 1 (truth stroma at (1, 1)), FN 0 -> Dice 12/13 (one image: per-image equals pooled), IoU 6/7;
    # fat only predicted where ignored: undefined, and not a missed case.
    assert "| Class | Label | Dice (pooled) | Dice (per-image mean) | IoU | HD95 (px) | HD95 missed |" in text
    assert "| tumor | 1 | 0.923 | 0.923 | 0.857 |" in text
    assert "| fat | 3 | n/a | n/a | n/a | n/a | 0 | 0 | 0 |" in text
    assert "- Mean Dice over 2 classes, pixels pooled over all images:" in text
    assert '- Mean HD95 (pixels; hd95_missed="exclude"): ' in text
    assert "0 image-class cases with the class in only one of truth and prediction" in text
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


# Two images: stroma is in the first truth but never predicted there (a missed HD95 case); the second is perfect.
MISSED_TRUTH = [np.array([[1, 2], [1, 2]]), np.array([[1, 2, 2]])]
MISSED_PRED = [np.array([[1, 1], [1, 1]]), np.array([[1, 2, 2]])]


@pytest.mark.parametrize(
    ("hd95_missed", "stroma_cells", "rule"),
    [
        ("exclude", "| 0.00 | 1 |", "left out of the mean and counted in the *HD95 missed* column"),
        # Diagonal of the 2x2 image sqrt(8) = 2.83 and the perfect 0.0 -> mean 1.41.
        ("diagonal", "| 1.41 | 1 |", "are scored as the image diagonal"),
    ],
    ids=["exclude", "diagonal"],
)
def test_report_states_missed_hd95_rule_and_count(
    tmp_path: Path, hd95_missed: str, stroma_cells: str, rule: str
) -> None:
    metrics = compute_segmentation_metrics(MISSED_PRED, MISSED_TRUTH, ["tumor", "stroma"], hd95_missed=hd95_missed)
    out = write_segmentation_report(metrics, tmp_path / "eval")
    text = (out / "report.md").read_text()
    stroma_row = next(line for line in text.splitlines() if line.startswith("| stroma |"))
    assert stroma_cells in stroma_row
    assert f'hd95_missed="{hd95_missed}"' in text and rule in text
    assert "1 image-class cases with the class in only one of truth and prediction (MONAI: HD95 = inf)" in text
    # Per-image stroma Dice: image 1 is 0 (missed), image 2 is 1 -> 0.5; pooled: TP 2, FN 2 -> 4/6.
    assert "| stroma | 2 | 0.667 | 0.500 |" in stroma_row
    saved = json.loads((out / "metrics.json").read_text())
    assert (saved["hd95_missed"], saved["hd95_missed_images"]) == (hd95_missed, 1)
    assert saved["per_class"][1]["hd95_missed_images"] == 1
    assert saved["mean_dice_per_image"] == metrics["mean_dice_per_image"]


def test_table_reads_metrics_written_before_per_image_dice(metrics: dict) -> None:
    old = {k: v for k, v in metrics.items() if k not in ("mean_dice_per_image", "hd95_missed", "hd95_missed_images")}
    old["per_class"] = [{k: v for k, v in e.items() if k not in ("dice_per_image", "hd95_missed_images")}
                        for e in metrics["per_class"]]
    assert "| tumor | 1 | 0.923 | n/a | 0.857 |" in format_segmentation_table(old)
