"""Datalist reading: splits, label width, image checks, inference inputs without labels, containment in the
dataset folder and wrong types, each refused up front with the datalist, split, index and key."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from common.data.datalist import list_images, load_datalist, load_inputs
from common.errors import DataError


def write_png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(path)
    return path


def write_datalist(folder: Path, content: Any) -> Path:
    (folder / "datalist.json").write_text(json.dumps(content))  # NaN is written as the JSON extension NaN
    return folder / "datalist.json"


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "dataset"
    for name in ("a.png", "b.png"):
        write_png(root / "images" / name)
    datalist = {
        "training": [{"image": "images/a.png", "label": [1, 0, None]}],
        "test": [{"image": "images/a.png", "label": [None, None, None]}, {"image": "images/b.png", "label": [0, 1, 0]}],
    }
    write_datalist(root, datalist)
    return root


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


# --- containment: paths that leave the dataset folder --------------------------------------------------------


def _escaping_path(dataset: Path, how: str) -> str:
    outside = write_png(dataset.parent / "outside.png")
    if how == "symlink":
        (dataset / "images" / "link.png").symlink_to(outside)
        return "images/link.png"
    if how == "symlinked-folder":
        (dataset / "linked").symlink_to(dataset.parent, target_is_directory=True)
        return "linked/outside.png"
    return {"parent": "../outside.png", "inner-parent": "images/../../outside.png", "absolute": str(outside),
            "system-file": "../../../../../../../../etc/passwd"}[how]


@pytest.mark.parametrize("key", ["image", "label"], ids=["image", "label-mask"])
@pytest.mark.parametrize("how", ["parent", "inner-parent", "absolute", "symlink", "symlinked-folder", "system-file"])
def test_paths_outside_the_dataset_folder_are_refused(dataset: Path, key: str, how: str) -> None:
    item = {"image": "images/a.png", "label": "images/b.png", key: _escaping_path(dataset, how)}
    datalist = write_datalist(dataset, {"training": [{"image": "images/b.png", "label": "images/a.png"}, item]})
    match = rf"datalist.json: training\[1\] \(.*\) '{key}' path .* resolves to .*, outside the dataset folder"
    with pytest.raises(DataError, match=match + ".*allow_outside_dataset_dir"):
        load_datalist(datalist, "training", dataset, None, True, ["image", "label"])
    if how != "system-file":  # /etc/passwd is not an image: only the containment check may pass it
        items = load_datalist(datalist, "training", dataset, None, True, ["image", "label"],
                              allow_outside_dataset_dir=True)
        assert os.path.realpath(items[1][key]) == os.path.realpath(dataset.parent / "outside.png")


def test_inference_inputs_are_contained_too(dataset: Path) -> None:
    datalist = write_datalist(dataset, {"test": [{"image": _escaping_path(dataset, "parent")}]})
    with pytest.raises(DataError, match=r"test\[0\] .* outside the dataset folder"):
        load_inputs(dataset, datalist, "test")
    assert load_inputs(dataset, datalist, "test", allow_outside_dataset_dir=True)[0]["image"].endswith("outside.png")


@pytest.mark.parametrize(
    "path",
    ["images/../images/a.png", "ABSOLUTE", "images/inner_link.png", "./images/a.png"],
    ids=["dot-dot-inside", "absolute-inside", "symlink-inside", "dot"],
)
def test_paths_that_stay_inside_are_accepted(dataset: Path, path: str) -> None:
    (dataset / "images" / "inner_link.png").symlink_to(dataset / "images" / "a.png")
    path = str(dataset / "images" / "a.png") if path == "ABSOLUTE" else path
    datalist = write_datalist(dataset, {"training": [{"image": path, "label": [1, 0, 0]}]})
    assert load_datalist(datalist, "training", dataset, 3)[0]["image"] == str(dataset / path)


def test_a_symlinked_dataset_folder_is_its_own_inside(dataset: Path, tmp_path: Path) -> None:
    (tmp_path / "link_to_dataset").symlink_to(dataset, target_is_directory=True)
    items = load_datalist(dataset / "datalist.json", "test", tmp_path / "link_to_dataset", 3)
    link = tmp_path / "link_to_dataset"
    assert [item["image"] for item in items] == [str(link / "images" / name) for name in ("a.png", "b.png")]


# --- wrong types ------------------------------------------------------------------------------------------------

NAN = float("nan")
GOOD = {"image": "images/a.png", "label": [1, 0, None]}


@pytest.mark.parametrize(
    ("entry", "num_classes", "message"),
    [
        ({"image": "images/a.png", "label": "Effusion"}, 3, r"'label' is 'Effusion' \(str\); expected a list of 3"),
        ({"image": "images/a.png", "label": "101"}, 3, r"'label' is '101' \(str\)"),
        ({"image": "images/a.png", "label": 1}, 3, r"'label' is 1 \(int\); expected a list of 3 value\(s\)"),
        ({"image": "images/a.png", "label": 1.0}, 3, r"'label' is 1\.0 \(float\); expected a list of 3"),
        ({"image": "images/a.png", "label": NAN}, 3, r"'label' is nan \(NaN\); expected a list"),
        ({"image": "images/a.png", "label": None}, 3, r"'label' is None \(NoneType\); expected a list"),
        ({"image": "images/a.png", "label": [1, 0]}, 3, r"has 2 label values, want 3"),
        ({"image": "images/a.png", "label": [1, "1", 0]}, 3, r"'label'\[1\] is '1' \(str\); expected 0, 1 or null"),
        ({"image": "images/a.png", "label": [1, 0, 2]}, 3, r"'label'\[2\] is 2 \(int\)"),
        ({"image": "images/a.png", "label": [1, 0, float("inf")]}, 3, r"'label'\[2\] is inf \(float\)"),
        ({"image": "images/a.png", "label": [[1], 0, 0]}, 3, r"'label'\[0\] is \[1\] \(list\)"),
        ({"image": 12, "label": [1, 0, 0]}, 3, r"'image' is 12 \(int\); expected a non-empty file path"),
        ({"image": NAN, "label": [1, 0, 0]}, 3, r"'image' is nan \(NaN\)"),
        ({"image": "  ", "label": [1, 0, 0]}, 3, r"'image' is '  ' \(str\)"),
        ({"label": [1, 0, 0]}, 3, r"has no 'image' entry; expected a file path.*found keys \['label'\]"),
        ("images/a.png", 3, r"is 'images/a\.png' \(str\); expected an object like"),
        (None, 3, r"is None \(NoneType\); expected an object"),
    ],
    ids=["label-str", "label-digit-str", "label-int", "label-float", "label-nan", "label-null", "label-short",
         "value-str", "value-2", "value-inf", "value-list", "image-int", "image-nan", "image-blank", "image-missing",
         "entry-str", "entry-null"],
)
def test_wrong_types_name_split_index_key_and_value(dataset: Path, entry: Any, num_classes: int, message: str) -> None:
    datalist = write_datalist(dataset, {"training": [GOOD, entry]})
    with pytest.raises(DataError, match=r"datalist\.json: training\[1\].*" + message):
        load_datalist(datalist, "training", dataset, num_classes, False)


@pytest.mark.parametrize("label", [1, 0, True, "malignant"], ids=["one", "zero", "true", "name"])
def test_binary_labels_are_one_value_lists(dataset: Path, label: Any) -> None:
    """Mammography (one sigmoid output) wants ``[1.0]``; a bare class value would not batch into (B, 1)."""
    datalist = write_datalist(dataset, {"training": [{"image": "images/a.png", "label": [0.0]},
                                                     {"image": "images/b.png", "label": label}]})
    message = r"training\[1\] \(images/b\.png\) 'label' is .*expected a list of 1 .*\[1\.0\]"
    with pytest.raises(DataError, match=message):
        load_datalist(datalist, "training", dataset, 1)


@pytest.mark.parametrize(
    ("entry", "message"),
    [({"image": "images/a.png"}, r"training\[1\] \(images/a\.png\) has no 'label' entry"),
     ({"image": "images/a.png", "label": [1, 0]}, r"training\[1\] \(images/a\.png\) 'label' is \[1, 0\] \(list\)"),
     ({"image": "images/a.png", "label": NAN}, r"'label' is nan \(NaN\)")],
    ids=["mask-missing", "mask-is-a-list", "mask-nan"],
)
def test_segmentation_labels_must_be_mask_paths(dataset: Path, entry: dict, message: str) -> None:
    datalist = write_datalist(dataset, {"training": [{"image": "images/a.png", "label": "images/b.png"}, entry]})
    with pytest.raises(DataError, match=message):
        load_datalist(datalist, "training", dataset, None, True, ["image", "label"])


@pytest.mark.parametrize(
    ("content", "message"),
    [({"training": {"image": "images/a.png"}}, r"split 'training' is a dict .*; expected a non-empty list"),
     ({"training": "images/a.png"}, r"split 'training' is a str"),
     ({"training": None}, r"split 'training' is a NoneType"),
     ({"training": []}, r"split 'training' is empty"),
     ({"validation": [GOOD]}, r"split 'training' missing; found \['validation'\]"),
     ([GOOD], r"top level is a list; expected an object of splits")],
    ids=["dict", "str", "null", "empty", "missing", "top-level-list"],
)
def test_bad_splits_are_named(dataset: Path, content: Any, message: str) -> None:
    with pytest.raises(DataError, match=r"datalist\.json: " + message):
        load_datalist(write_datalist(dataset, content), "training", dataset, 3)


def test_valid_labels_are_returned_unchanged(dataset: Path) -> None:
    """0/1 as ints, floats or booleans and unknowns as null or NaN all pass, untouched (MultiLabeld converts)."""
    labels = [[1, 0, None], [1.0, 0.0, NAN], [True, False, None], [None, None, None]]
    datalist = write_datalist(dataset, {"training": [{"image": "images/a.png", "label": label} for label in labels]})
    items = load_datalist(datalist, "training", dataset, 3)
    assert [json.dumps(item["label"]) for item in items] == [json.dumps(label) for label in labels]
    assert load_datalist(datalist, "training", dataset)[0]["label"] == [1, 0, None]  # no num_classes: not checked


# --- empty and truncated images ---------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_empty_or_truncated_images_are_named(dataset: Path, damage: str) -> None:
    image = dataset / "images" / "b.png"
    data = image.read_bytes()
    image.write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    with pytest.raises(DataError, match=rf"split 'test': 1 image file\(s\) .*: {image} is (empty|a truncated PNG)"):
        load_datalist(dataset / "datalist.json", "test", dataset)
    assert len(load_datalist(dataset / "datalist.json", "test", dataset, check_images=False)) == 2
