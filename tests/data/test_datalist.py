"""Datalist reading: splits, label width, image checks, and inference inputs without labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.data.datalist import list_images, load_datalist, load_inputs
from common.errors import DataError


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    (tmp_path / "images").mkdir()
    for name in ("a.png", "b.png"):
        (tmp_path / "images" / name).write_bytes(b"png")
    datalist = {
        "training": [{"image": "images/a.png", "label": [1, 0, None]}],
        "test": [{"image": "images/a.png", "label": [None, None, None]}, {"image": "images/b.png", "label": [0, 1, 0]}],
    }
    (tmp_path / "datalist.json").write_text(json.dumps(datalist))
    return tmp_path


def test_paths_become_absolute_against_base_dir(dataset: Path) -> None:
    items = load_datalist(dataset / "datalist.json", "training", dataset, num_classes=3)
    assert items == [{"image": str(dataset / "images" / "a.png"), "label": [1, 0, None]}]


def test_inference_inputs_keep_only_the_image(dataset: Path) -> None:
    """Unknown (null) labels cannot be batched and are not inference inputs: only paths are returned."""
    items = load_inputs(dataset, dataset / "datalist.json", "test")
    assert items == [{"image": str(dataset / "images" / "a.png")}, {"image": str(dataset / "images" / "b.png")}]
    assert load_inputs(dataset / "images") == items


@pytest.mark.parametrize(
    ("split", "num_classes", "message"),
    [("validation", None, "split 'validation' missing"), ("training", 14, "has 3 label values, want 14")],
)
def test_bad_datalists_name_the_file(dataset: Path, split: str, num_classes: int | None, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_datalist(dataset / "datalist.json", split, dataset, num_classes=num_classes)


def test_missing_images_and_folders_are_reported(dataset: Path, tmp_path: Path) -> None:
    (dataset / "images" / "b.png").unlink()
    with pytest.raises(DataError, match=r"1 image\(s\) of split 'test' not found"):
        load_datalist(dataset / "datalist.json", "test", dataset)
    with pytest.raises(DataError, match="input folder not found"):
        list_images(tmp_path / "nowhere")
