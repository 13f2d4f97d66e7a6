"""RemapLabels(d): exact grouping of BCSS codes, custom maps, type preservation, file-naming errors."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, LoadImaged
from PIL import Image

from common.data.bcss import BCSS_GTRUTH_CODES
from common.errors import ConfigError, DataError
from common.transforms.labels_remap import RemapLabels, RemapLabelsd

CODES = np.array([[0, 1, 2, 3, 10, 7, 9], [11, 4, 6, 5, 20, 21, 2]], np.uint8)
GROUPS = np.array([[0, 1, 2, 3, 3, 0, 5], [3, 4, 5, 5, 5, 5, 2]], np.uint8)

CONVERSIONS: dict[str, Callable[[np.ndarray], Any]] = {
    "numpy-uint8": lambda a: a,
    "numpy-float32": lambda a: a.astype(np.float32)[None],
    "torch-int64": lambda a: torch.as_tensor(a.astype(np.int64)),
    "metatensor-float32": lambda a: MetaTensor(torch.as_tensor(a[None], dtype=torch.float32),
                                               meta={"filename_or_obj": "masks/roi.png"}),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(CONVERSIONS), ids=list(CONVERSIONS))
def test_default_grouping_keeps_type(kind: str) -> None:
    img = CONVERSIONS[kind](CODES)
    out = RemapLabels()(img)
    assert type(out) is type(img) and out.dtype == img.dtype and tuple(out.shape) == tuple(img.shape)
    np.testing.assert_array_equal(np.asarray(out).reshape(GROUPS.shape), GROUPS)
    if isinstance(img, MetaTensor):
        assert out.meta["filename_or_obj"] == "masks/roi.png"


def test_hand_made_mask_exact() -> None:
    mask = np.array([0, 1, 2, 3, 10, 7, 9], np.uint8)
    assert RemapLabels()(mask).tolist() == [0, 1, 2, 3, 3, 0, 5]
    assert RemapLabels().class_names == ["tumor", "stroma", "inflammatory", "necrosis", "other"]


def test_custom_class_map_and_codes_file(tmp_path: Path) -> None:
    rows = "".join(f"{label}\t{code}\n" for label, code in BCSS_GTRUTH_CODES.items())
    (tmp_path / "codes.tsv").write_text("label\tGT_code\n" + rows)
    class_map = {"tumor": ["tumor", "dcis"], "stroma": ["stroma"], "tils": ["lymphocytic_infiltrate", "plasma_cells"]}
    remap = RemapLabels(class_map, codes=str(tmp_path / "codes.tsv"))
    assert remap.class_names == ["tumor", "stroma", "tils"]
    assert remap(CODES).tolist() == [[0, 1, 2, 3, 3, 0, 0], [0, 0, 0, 0, 1, 0, 2]]


def test_codes_mapping_restricts_the_known_codes() -> None:
    remap = RemapLabels({"a": ["x"], "b": ["y"]}, codes={"void": 0, "x": 40, "y": 41})
    assert remap(np.array([0, 40, 41, 0], np.uint8)).tolist() == [0, 1, 2, 0]
    with pytest.raises(DataError, match=r"mask: mask holds code\(s\) \[1\] not in the code table; known: \[0, 40, 41"):
        remap(np.array([0, 1, 40], np.uint8))


@pytest.mark.parametrize(
    "values, match",
    [(np.array([1, 22, 2, 255], np.uint8), r"code\(s\) \[22, 255\] not in the code table"),
     (np.array([1, -3, 300], np.int32), r"code\(s\) \[-3, 300\] not in the code table"),
     (np.array([1.0, 1.5], np.float32), r"whole-number codes, found 1\.5; resample masks with mode='nearest'")],
    ids=["uint8", "out-of-byte", "interpolated"],
)  # fmt: skip
def test_bad_values_name_the_file(values: np.ndarray, match: str) -> None:
    mask = MetaTensor(torch.as_tensor(values), meta={"filename_or_obj": "/data/masks/TCGA-A1-A0SK.png"})
    with pytest.raises(DataError, match=rf"/data/masks/TCGA-A1-A0SK\.png: .*{match}"):
        RemapLabels()(mask)


def test_dictionary_error_names_the_image_without_meta() -> None:
    item = {"image": "rgbs_colorNormalized/roi_7.png", "label": np.array([[1, 23]], np.uint8)}
    with pytest.raises(DataError, match=r"rgbs_colorNormalized/roi_7\.png \[label\]: mask holds code\(s\) \[23\]"):
        RemapLabelsd("label")(item)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"class_map": {"tumor": ["tumour"]}}, r"did you mean 'tumor'\?"),
     ({"class_map": {"a": ["stroma"], "b": ["stroma"]}}, r"already group 'a'"),
     ({"codes": 5}, r"codes must be a label -> code mapping or a gtruth_codes\.tsv path, got 5"),
     ({"codes": {"tumor": 1, "stroma": 1}}, r"distinct integer in 0\.\.255")],
    ids=["unknown-label", "two-groups", "codes-type", "codes-repeat"],
)  # fmt: skip
def test_constructor_validates(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RemapLabels(**kwargs)
    with pytest.raises(ConfigError, match=match):
        RemapLabelsd("label", **kwargs)


def test_missing_codes_file_raises(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="BCSS codes file not found"):
        RemapLabels(codes=tmp_path / "nope.tsv")


def test_pipeline_after_load_image(tmp_path: Path) -> None:
    Image.new("RGB", (7, 2), (200, 120, 180)).save(tmp_path / "roi.png")
    Image.fromarray(CODES).save(tmp_path / "mask.png")
    pipeline = Compose([LoadImaged(["image", "label"], ensure_channel_first=True), RemapLabelsd("label")])
    out = pipeline({"image": str(tmp_path / "roi.png"), "label": str(tmp_path / "mask.png")})
    label = out["label"]
    assert isinstance(label, MetaTensor) and label.shape == (1, 7, 2)  # PIL reader: (C, W, H)
    np.testing.assert_array_equal(label[0].numpy().T, GROUPS)
    assert Path(label.meta["filename_or_obj"]).name == "mask.png"
    Image.fromarray(np.where(CODES == 9, 30, CODES).astype(np.uint8)).save(tmp_path / "mask.png")
    with pytest.raises(RuntimeError) as info:  # Compose wraps errors; ours is the cause
        pipeline({"image": str(tmp_path / "roi.png"), "label": str(tmp_path / "mask.png")})
    assert isinstance(info.value.__cause__, DataError)
    assert re.search(r"/mask\.png: mask holds code\(s\) \[30\]", str(info.value.__cause__))
