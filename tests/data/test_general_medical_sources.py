"""Stage-2 sources: the sources file, index-coded masks, and every bad input as a named DataError / ConfigError."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from common.cli import main
from common.data import build_general_datalist, read_class_names, read_sources, sampling_weights, write_class_names
from common.data.general_medical_sources import read_source
from common.data.general_medical_spec import parse_sources
from common.errors import ConfigError, DataError
from tests.data.test_general_medical import write_folder_source


def _segmentation_source(root: Path, masks: list[np.ndarray]) -> dict[str, Any]:
    """A datalist whose labels are index-coded mask files (0 ignored, i = class i)."""
    (root / "img").mkdir(parents=True)
    (root / "seg").mkdir()
    items = []
    for n, mask in enumerate(masks):
        Image.fromarray(np.full((*mask.shape, 3), 90, np.uint8)).save(root / "img" / f"{n}.png")
        Image.fromarray(mask.astype(np.uint8)).save(root / "seg" / f"{n}.png")
        items.append({"image": f"img/{n}.png", "label": f"seg/{n}.png", "patient_id": f"p{n}"})
    (root / "datalist.json").write_text(json.dumps({"training": items[:-1], "validation": items[-1:]}))
    return {"name": "seg", "kind": "datalist", "path": str(root / "datalist.json"), "modality": "ct",
            "mask_codes": "index", "class_names": ["liver", "kidney"]}  # fmt: skip


def test_index_masks_give_presence_and_unannotated_images_unknown(tmp_path: Path) -> None:
    masks = [np.array([[0, 1], [1, 1]]), np.array([[2, 2], [0, 1]]), np.zeros((2, 2)), np.array([[1, 0], [0, 0]])]
    datalist = build_general_datalist([_segmentation_source(tmp_path / "src", masks)], tmp_path / "out")
    assert [it["label"] for it in datalist["training"]] == [[1.0, 0.0], [1.0, 1.0], [None, None]]
    assert [it["category"] for it in datalist["training"]] == ["liver", "kidney", "none"]  # kidney: 1 of 4 positives
    assert datalist["validation"][0]["label"] == [1.0, 0.0]


def test_sources_file_yaml_with_relative_paths(tmp_path: Path) -> None:
    write_folder_source(tmp_path / "data" / "derm", {"a": 4, "b": 4})
    for content in ({"sources": [{"name": "derm", "kind": "folder", "path": "data/derm", "modality": "skin"}]},
                    [{"name": "derm", "kind": "folder", "path": "data/derm", "modality": "skin"}]):  # fmt: skip
        (tmp_path / "sources.yaml").write_text(yaml.safe_dump(content))
        spec = read_sources(tmp_path / "sources.yaml")[0]
        assert spec.path == tmp_path / "data" / "derm" and spec.class_names is None
    datalist = build_general_datalist(tmp_path / "sources.yaml", tmp_path / "out", val_fraction=0.25)
    assert datalist["class_names"] == ["skin/a", "skin/b"] and len(datalist["validation"]) == 2


def test_class_names_recorded_in_a_datalist_are_used(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "x.png")
    content = {"class_names": ["yes"], "training": [{"image": "x.png", "label": [1]}],
               "validation": [{"image": "x.png", "label": [0]}]}  # fmt: skip
    (tmp_path / "d.json").write_text(json.dumps(content))
    source = {"name": "s", "kind": "datalist", "path": str(tmp_path / "d.json"), "modality": "us"}
    assert build_general_datalist([source], tmp_path / "out")["class_names"] == ["us/yes"]


def _bad_setup(problem: str, tmp_path: Path) -> tuple[Any, type[Exception], str]:
    """(sources, expected error, message pattern) for one kind of bad input."""
    folder = write_folder_source(tmp_path / "derm", {"a": 3, "b": 3})
    good = {"name": "derm", "kind": "folder", "path": str(folder), "modality": "skin"}
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "x.png")
    listed = {"training": [{"image": "x.png", "label": [1, 0]}]}
    (tmp_path / "d.json").write_text(json.dumps(listed))
    as_datalist = {"name": "cls", "kind": "datalist", "path": str(tmp_path / "d.json"), "modality": "us",
                   "class_names": ["p", "q"]}  # fmt: skip
    cases: dict[str, tuple[Any, type[Exception], str]] = {
        "missing-datalist": ([{**as_datalist, "path": str(tmp_path / "nope.json")}], DataError,
                             r"source 'cls'.*path not found.*nope\.json"),
        "missing-image": ([{**as_datalist, "base_dir": str(tmp_path / "elsewhere")}], DataError,
                          r"source 'cls': 1 image\(s\) listed in .*d\.json not found"),
        "missing-folder": ([{**good, "path": str(tmp_path / "gone")}], DataError, r"source 'derm'.*gone"),
        "empty-class-folder": ([{**good, "class_names": ["a", "b", "c"]}], DataError,
                               r"source 'derm': class folder .*derm/c is missing or holds no image"),
        "no-class-folders": ([{**good, "path": str(tmp_path / "derm" / "a")}], DataError, r"no class folders in"),
        "no-items": ([as_datalist], DataError, "no training item"),
        "unknown-kind": ([{**good, "kind": "folders"}], ConfigError, r"unknown value 'folders'; did you mean 'folder'"),
        "unknown-key": ([{**good, "clas_names": ["a"]}], ConfigError, r"unknown key\(s\) \['clas_names'\]"),
        "wrong-label-width": ([{**as_datalist, "class_names": ["p", "q", "r"]}], DataError,
                              r"source 'cls': .*d\.json, training\[0\] \(x\.png\): label has 2 values, want 3"),
        "duplicate-names": ([good, good], ConfigError, r"unique; repeated: \['derm'\]"),
        "class-names-unknown": ([{**as_datalist, "class_names": None}], ConfigError, r"source 'cls'.*add class_names"),
        "unknown-class-set": ([{**good, "class_names": "chestxray"}], ConfigError, r"did you mean 'chestxray14'"),
        "bad-modality": ([{**good, "modality": "x/ray"}], ConfigError, "without '/'"),
        "bad-name": ([{**good, "name": "../up"}], ConfigError, "a folder name"),
    }
    if problem == "no-items":
        (tmp_path / "d.json").write_text(json.dumps({"training": [], "test": listed["training"]}))
    return cases[problem]


BAD = ["missing-datalist", "missing-image", "missing-folder", "empty-class-folder", "no-class-folders", "no-items",
       "unknown-kind", "unknown-key", "wrong-label-width", "duplicate-names", "class-names-unknown",
       "unknown-class-set", "bad-modality", "bad-name"]  # fmt: skip


@pytest.mark.parametrize("problem", BAD, ids=BAD)
def test_bad_sources_are_named_errors(problem: str, tmp_path: Path) -> None:
    sources, error, pattern = _bad_setup(problem, tmp_path)
    with pytest.raises(error, match=pattern):
        build_general_datalist(sources, tmp_path / "out")
    assert not (tmp_path / "out" / "datalist.json").exists()


@pytest.mark.parametrize("problem", ["wrong-width", "class-index", "no-class-names", "foreign-folder"])
def test_bad_medmnist_sources(problem: str, tmp_path: Path) -> None:
    labels = np.zeros((4, 3 if problem == "wrong-width" else 1), np.uint8)
    labels[0, 0] = 7 if problem == "class-index" else 0
    np.savez(tmp_path / "m.npz", train_images=np.zeros((4, 8, 8), np.uint8), train_labels=labels)
    names = None if problem == "no-class-names" else ["a", "b"]
    if problem == "foreign-folder":
        (tmp_path / "out" / "m").mkdir(parents=True)
    source = {"name": "m", "kind": "medmnist", "path": str(tmp_path / "m.npz"), "modality": "x", "class_names": names}
    error, pattern = {"wrong-width": (DataError, r"source 'm'.*train_labels.*shape \(4, 3\) do not fit 2 class"),
                      "class-index": (DataError, r"class indices must be integers 0..1"),
                      "no-class-names": (ConfigError, r"source 'm'.*add class_names"),
                      "foreign-folder": (DataError, r"was not written for a medmnist source")}[problem]  # fmt: skip
    with pytest.raises(error, match=pattern):
        build_general_datalist([source], tmp_path / "out")


@pytest.mark.parametrize(("kwargs", "pattern"), [({"val_fraction": 0.0}, "val_fraction"),
                                                  ({"target": "modality"}, "unknown target")], ids=["val", "target"])
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        build_general_datalist([], tmp_path, **kwargs)


def test_class_names_file_round_trip_and_default(tmp_path: Path) -> None:
    write_class_names(tmp_path / "models" / "class_names.json", ["xray/a", "skin/b"])
    assert read_class_names(tmp_path / "models" / "class_names.json") == ["xray/a", "skin/b"]
    assert read_class_names(tmp_path / "none.json", default=["d"]) == ["d"]
    with pytest.raises(DataError, match="class names file not found"):
        read_class_names(tmp_path / "none.json")
    (tmp_path / "chest.json").write_text(json.dumps({"training": []}))
    with pytest.raises(DataError, match="expected a non-empty 'class_names' list"):
        read_class_names(tmp_path / "chest.json")


def test_sampling_weights_need_the_weight_key() -> None:
    assert sampling_weights([{"image": "a", "weight": 0.25}, {"image": "b", "weight": 0.75}]) == [0.25, 0.75]
    with pytest.raises(DataError, match=r"item 1 \(b.png\) has weight None"):
        sampling_weights([{"image": "a", "weight": 1.0}, {"image": "b.png"}])


def test_cli_writes_the_datalist_and_reports_errors_in_one_line(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    write_folder_source(tmp_path / "derm", {"a": 4, "b": 4})
    (tmp_path / "s.yaml").write_text(yaml.safe_dump([{"name": "d", "kind": "folder", "path": "derm",
                                                      "modality": "skin"}]))  # fmt: skip
    assert main(["prepare-data", "general-medical", "--sources", str(tmp_path / "s.yaml"), "--output",
                 str(tmp_path / "out"), "--val-fraction", "0.25", "--target", "modality+class"]) == 0  # fmt: skip
    assert json.loads((tmp_path / "out" / "datalist.json").read_text())["class_names"][-1] == "modality:skin"
    assert "share %" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["prepare-data", "general-medical", "--help"])
    assert info.value.code == 0
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump([{"name": "d", "kind": "folder", "path": "nowhere",
                                                        "modality": "skin"}]))  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "common", "prepare-data", "general-medical", "--sources",
                             str(tmp_path / "bad.yaml"), "--output", str(tmp_path / "o2")],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: source 'd': folder path not found") and "nowhere" in result.stderr


@pytest.mark.parametrize("key", ["image", "label"], ids=["image", "mask"])
@pytest.mark.parametrize("how", ["parent", "absolute", "symlink"])
def test_source_paths_outside_the_source_folder_are_refused(tmp_path: Path, key: str, how: str) -> None:
    """A stage-2 source datalist is held to its folder like a bundle's datalist (load_datalist)."""
    source = _segmentation_source(tmp_path / "src", [np.array([[0, 1], [1, 1]]), np.array([[2, 2], [0, 1]])])
    outside = tmp_path / "outside.png"
    Image.fromarray(np.ones((2, 2), np.uint8)).save(outside)
    (tmp_path / "src" / "img" / "link.png").symlink_to(outside)
    path = {"parent": "../outside.png", "absolute": str(outside), "symlink": "img/link.png"}[how]
    content = json.loads((tmp_path / "src" / "datalist.json").read_text())
    content["training"][0][key] = path
    (tmp_path / "src" / "datalist.json").write_text(json.dumps(content))
    message = rf"source 'seg': .*datalist.json, training\[0\] '{key}' path .* outside the source's folder .*base_dir"
    with pytest.raises(DataError, match=message):
        build_general_datalist([source], tmp_path / "out")
    data = read_source(parse_sources([source])[0], tmp_path / "out", 0.5, 0, allow_outside_dataset_dir=True)
    assert len(data.splits["training"]) == 1
