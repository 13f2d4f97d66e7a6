"""NIH ``BBox_List_2017.csv``: the exact NIH header, name mapping, refused rows, attachment by prepare-data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.cli import main
from common.data.chestxray14 import load_chestxray14_datalist
from common.data.chestxray14_boxes import (
    BBOX_HEADER,
    FindingBox,
    count_boxes,
    format_bbox_list,
    read_bbox_list,
)
from common.data.datalist import load_datalist
from common.errors import DataError
from tests.data.test_chestxray14 import write_dataset

# Rows as NIH ships them: float coordinates, 'Infiltrate', three trailing empty fields.
NIH_ROWS = [
    "00000001_000.png,Cardiomegaly,225.084745762712,547.019216763771,86.7796610169491,79.1864406779661,,,",
    "00000003_000.png,Atelectasis,686.101694915254,131.543016949153,185.491525423729,313.491525423729,,,",
    "00000003_000.png,Infiltrate,10,20,30,40,,,",
    "00000006_000.png,Pneumothorax,1,2,3,4,,,",
]


def write_bbox(root: Path, rows: list[str] = NIH_ROWS, header: str = BBOX_HEADER) -> Path:
    path = root / "BBox_List_2017.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_reads_nih_header_and_maps_infiltrate(tmp_path: Path) -> None:
    boxes = read_bbox_list(write_bbox(tmp_path))
    assert [b.finding for b in boxes] == ["Cardiomegaly", "Atelectasis", "Infiltration", "Pneumothorax"]
    assert boxes[0] == FindingBox("00000001_000.png", "Cardiomegaly", 225.084745762712, 547.019216763771,
                                  86.7796610169491, 79.1864406779661)


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ("00000001_000.png,Lung Lesion,1,2,3,4,,,", r"line 3: unknown finding 'Lung Lesion'"),
        ("00000001_000.png,Mass,1,2,abc,4,,,", r"line 3: box .* is not four numbers"),
        ("00000001_000.png,Mass,1,2,0,4,,,", r"line 3: box .*w > 0"),
        ("00000001_000.png,Mass,1,2", r"line 3: 4 fields"),
    ],
    ids=["unmappable-finding", "not-a-number", "empty-box", "short-row"],
)
def test_bad_rows_refused_naming_the_line(tmp_path: Path, row: str, match: str) -> None:
    with pytest.raises(DataError, match=match):
        read_bbox_list(write_bbox(tmp_path, [NIH_ROWS[0], row]))


def test_header_without_box_columns_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"line 1: header"):
        read_bbox_list(write_bbox(tmp_path, header="Image Index,Finding Label,x,y,w,h"))


def test_format_round_trips_with_nih_spelling(tmp_path: Path) -> None:
    boxes = [FindingBox("a.png", "Infiltration", 1.5, 2, 3, 4), FindingBox("b.png", "Mass", 0, 0, 10, 12)]
    text = format_bbox_list(boxes)
    assert text.splitlines()[0] == BBOX_HEADER and ",Infiltrate,1.5,2,3,4,,," in text
    (tmp_path / "BBox_List_2017.csv").write_text(text)
    assert read_bbox_list(tmp_path / "BBox_List_2017.csv") == boxes


def test_prepare_data_attaches_boxes_and_training_items_drop_them(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    write_dataset(tmp_path, test_images=["00000003_000.png", "00000006_000.png"])
    write_bbox(tmp_path)
    output = tmp_path / "datalist.json"
    assert main(["prepare-data", "chestxray14", "--dataset-dir", str(tmp_path), "--output", str(output),
                 "--val-fraction", "0.3"]) == 0
    assert "4 box(es)" in capsys.readouterr().out
    datalist = json.loads(output.read_text())
    assert sum(count_boxes(datalist).values()) == 4
    test = {Path(item["image"]).name: item for item in datalist["test"]}
    assert test["00000003_000.png"]["boxes"] == [
        {"finding": "Atelectasis", "x": 686.101694915254, "y": 131.543016949153, "w": 185.491525423729,
         "h": 313.491525423729},
        {"finding": "Infiltration", "x": 10.0, "y": 20.0, "w": 30.0, "h": 40.0},
    ]
    assert "boxes" not in test.get("00000002_000.png", {})
    # The items a bundle's DataLoader batches carry no boxes (a variable number per image would not collate).
    assert all("boxes" not in item for item in load_datalist(output, "test", tmp_path, 14))


def test_adapter_refuses_bad_box_file(tmp_path: Path) -> None:
    write_dataset(tmp_path, test_images=["00000003_000.png"])
    write_bbox(tmp_path, [NIH_ROWS[0], "00000001_000.png,Opacity,1,2,3,4,,,"])
    with pytest.raises(DataError, match=r"BBox_List_2017.csv, line 3: unknown finding 'Opacity'"):
        load_chestxray14_datalist(tmp_path, val_fraction=0.25)
