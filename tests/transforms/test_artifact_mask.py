"""ArtifactMask(d): burned-in text and markers zeroed, breast kept, laterality flip, pectoral removal."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from pydicom.data import get_testdata_file

from common.errors import ConfigError, DataError
from common.transforms.artifact_mask import ArtifactMask, ArtifactMaskd
from common.transforms.radiograph import LoadRadiograph

H, W = 320, 256


@dataclass
class Phantom:
    image: np.ndarray  # (1, H, W) float32
    breast: np.ndarray  # (H, W) bool, including the pectoral wedge
    wedge: np.ndarray  # (H, W) bool
    text: tuple[slice, slice]
    marker: tuple[slice, slice]


def make_mammogram(side: str = "left", seed: int = 0) -> Phantom:
    """An MLO-like phantom: half-ellipse breast against the ``side`` edge, pectoral wedge, text, marker."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W].astype(np.float32)
    breast = ((yy - 0.45 * H) / (0.55 * H)) ** 2 + (xx / (0.6 * W)) ** 2 <= 1.0
    wedge = breast & (xx / (0.3 * W) + yy / (0.4 * H) <= 1.0)
    image = rng.uniform(0.0, 0.03, (H, W)).astype(np.float32)
    image[breast] = (0.3 + 0.2 * (1.0 - xx / (0.6 * W)) + rng.normal(0.0, 0.02, (H, W)))[breast]
    image[wedge] = 0.8 + rng.normal(0.0, 0.02, int(wedge.sum()))
    if side == "right":
        image, breast, wedge = image[:, ::-1], breast[:, ::-1], wedge[:, ::-1]
    image = np.ascontiguousarray(image)
    # burned-in text in the lower corner and a square marker in the upper corner, both away from the breast
    (tw, th), base = cv2.getTextSize("L MLO", cv2.FONT_HERSHEY_SIMPLEX, 0.6, 2)
    x0, y0 = (W - tw - 8, H - 10) if side == "left" else (8, H - 10)
    cv2.putText(image, "L MLO", (x0, y0), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 1.0, 2)
    text = (slice(y0 - th - 2, y0 + base + 2), slice(x0 - 2, x0 + tw + 2))
    marker = (slice(20, 32), slice(W - 30, W - 18) if side == "left" else slice(18, 30))
    image[marker] = 1.0
    return Phantom(image[None], breast, wedge, text, marker)


def kept(out: np.ndarray, region: np.ndarray) -> float:
    return float((out[0][region] > 0).mean())


@pytest.mark.parametrize("method", ["otsu", "triangle"], ids=["otsu", "triangle"])
@pytest.mark.parametrize("mode", ["radiograph", "mammography"], ids=["radiograph", "mammography"])
def test_text_and_marker_zeroed_breast_kept(method: str, mode: str) -> None:
    ph = make_mammogram("left")
    assert ph.image[0][ph.text].max() == 1.0 and ph.image[0][ph.marker].min() == 1.0
    out = ArtifactMask(mode=mode, threshold_method=method)(ph.image)
    assert np.all(out[0][ph.text] == 0)
    assert np.all(out[0][ph.marker] == 0)
    assert kept(out, ph.breast) >= 0.95
    np.testing.assert_array_equal(out[0][out[0] > 0], ph.image[0][out[0] > 0])  # kept pixels untouched


@pytest.mark.parametrize(
    ("side", "orientation", "flipped"),
    [("right", "left", True), ("left", "left", False), ("left", "right", True), ("right", "right", False)],
    ids=["R-to-left", "L-stays-left", "L-to-right", "R-stays-right"],
)
def test_breast_turned_to_orientation_from_intensity(side: str, orientation: str, flipped: bool) -> None:
    ph = make_mammogram(side)
    result = ArtifactMask(mode="mammography", orientation=orientation).compute(ph.image)
    assert result.flipped is flipped
    assert (result.laterality, result.laterality_source) == ("L" if side == "left" else "R", "intensity")
    breast = ph.breast[:, ::-1] if flipped else ph.breast
    assert kept(result.image, breast) >= 0.95
    assert kept(result.image, ~breast) <= 0.002  # a few boundary pixels from the closing
    wall = result.image[0][:, :10] if orientation == "left" else result.image[0][:, -10:]
    assert (wall > 0).mean() > 0.8
    np.testing.assert_array_equal(result.mask[0] > 0, result.image[0] > 0)


def test_meta_laterality_overrides_intensity_and_is_recorded() -> None:
    ph = make_mammogram("left")  # intensity says left ...
    img = MetaTensor(torch.from_numpy(ph.image), meta={"ImageLaterality": "R", "filename_or_obj": "a.dcm"})
    out = ArtifactMask(mode="mammography")(img)  # ... the DICOM says right, so it is mirrored
    assert isinstance(out, MetaTensor)
    assert out.meta["flipped"] is True
    assert (out.meta["laterality"], out.meta["laterality_source"]) == ("R", "meta")
    assert out.meta["filename_or_obj"] == "a.dcm" and "flipped" not in img.meta
    assert kept(out.numpy(), ph.breast[:, ::-1]) >= 0.95
    # the affine maps the new column j to the old column W-1-j
    assert out.affine[1, 1] == -1 and out.affine[1, 3] == W - 1


@pytest.mark.parametrize(
    ("meta", "item", "flipped"),
    [
        ({"Laterality": "L"}, {}, False),
        ({"ImageLaterality": "B"}, {}, True),
        ({"Laterality": "L"}, {"laterality": "R"}, True),
        ({"Laterality": "L"}, {"laterality": float("nan")}, False),
    ],
    ids=["meta-L", "meta-B-falls-back", "dict-key-beats-meta", "empty-csv-cell-ignored"],
)
def test_dict_twin_reads_laterality_and_writes_mask_and_flag(meta: dict, item: dict, flipped: bool) -> None:
    ph = make_mammogram("right")
    img = MetaTensor(torch.from_numpy(ph.image), meta=meta)
    out = ArtifactMaskd("image", mode="mammography", mask_key="mask")({"image": img, **item})
    assert out["flipped"] is flipped
    assert out["mask"].shape == (1, H, W) and out["mask"].dtype == torch.float32
    assert torch.equal(out["mask"] > 0, out["image"] > 0)


@pytest.mark.parametrize(("side", "orientation"), [("left", "left"), ("right", "right"), ("right", "left")])
def test_pectoral_removed_for_mlo_views(side: str, orientation: str) -> None:
    ph = make_mammogram(side)
    masker = ArtifactMaskd("image", mode="mammography", orientation=orientation, remove_pectoral=True)
    out = masker({"image": ph.image, "view": "MLO"})
    flip = out["flipped"]
    wedge, breast = (ph.wedge[:, ::-1], ph.breast[:, ::-1]) if flip else (ph.wedge, ph.breast)
    assert kept(out["image"], wedge) <= 0.02
    assert kept(out["image"], breast & ~wedge) >= 0.95


@pytest.mark.parametrize("meta", [{"ViewPosition": "CC"}, {}], ids=["cc-view", "unknown-view"])
def test_pectoral_kept_unless_view_is_mlo(meta: dict) -> None:
    ph = make_mammogram("left")
    masker = ArtifactMask(mode="mammography", remove_pectoral=True)
    result = masker.compute(MetaTensor(ph.image, meta=meta))
    assert not result.pectoral_removed and result.image.meta["pectoral_removed"] is False
    assert kept(result.image.numpy(), ph.wedge) >= 0.95
    mlo = masker.compute(MetaTensor(ph.image, meta={"ViewPosition": "MLO"}))
    assert mlo.pectoral_removed and kept(mlo.image.numpy(), ph.wedge) <= 0.02


def test_real_chest_radiograph_keeps_lungs() -> None:
    full = LoadRadiograph()(get_testdata_file("RG1_UNCI.dcm"))[0].numpy()
    scale = 512 / max(full.shape)
    small = cv2.resize(full, (round(full.shape[1] * scale), round(full.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    image = small[None]
    out = ArtifactMask()(image)
    h, w = small.shape
    for row, col in [(h // 2, w // 2), (int(0.4 * h), int(0.3 * w)), (int(0.4 * h), int(0.7 * w))]:
        assert np.all(out[0, row - 10 : row + 10, col - 10 : col + 10] > 0), (row, col)  # mediastinum, both lungs
    assert np.count_nonzero(out) <= np.count_nonzero(image)
    assert np.count_nonzero(out[0, :10, :10]) == 0  # background corner outside the body
    assert np.count_nonzero(out) > 0.8 * out.size


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a,
        lambda a: (a * 255).astype(np.uint8),
        lambda a: (a * 65535).astype(np.uint16),
        lambda a: np.repeat(a, 3, axis=0),
        lambda a: torch.from_numpy(a),
        lambda a: torch.from_numpy(a).to(torch.float64),
        lambda a: MetaTensor(torch.from_numpy(a), meta={"filename_or_obj": "x.png"}),
    ],
    ids=["numpy-f32", "numpy-u8", "numpy-u16", "numpy-rgb", "torch-f32", "torch-f64", "metatensor"],
)
@pytest.mark.parametrize("mode", ["radiograph", "mammography"])
def test_type_dtype_shape_and_meta_preserved(make, mode: str) -> None:
    ph = make_mammogram("left")
    img = make(ph.image)
    out = ArtifactMask(mode=mode)(img)
    assert type(out) is type(img) and out.dtype == img.dtype and out.shape == img.shape
    if isinstance(img, MetaTensor):
        assert out.meta["filename_or_obj"] == "x.png"
    values = np.asarray(out)
    assert np.all(values[:, ph.marker[0], ph.marker[1]] == 0) and kept(values[:1], ph.breast) >= 0.95


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((32, 32), np.float32), r"channel-first .*found shape \(32, 32\)"),
        (np.zeros((1, 1, 32, 32), np.float32), r"channel-first .*found shape \(1, 1, 32, 32\)"),
        (np.zeros((1, 0, 32), np.float32), r"empty \(shape \(1, 0, 32\)\)"),
        (np.full((1, 8, 8), np.nan, np.float32), r"NaN or infinite .*64 pixels"),
        (torch.tensor([[[0.0, float("inf")]]]), r"NaN or infinite .*1 pixels"),
    ],
    ids=["2d", "4d", "empty", "nan", "inf"],
)
def test_bad_images_raise_data_error(image, match: str) -> None:
    with pytest.raises(DataError, match=match):
        ArtifactMask()(image)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "mammo"}, r"unknown mode 'mammo'; choose from: radiograph, mammography"),
        ({"threshold_method": "li"}, r"unknown threshold_method 'li'; choose from: otsu, triangle"),
        ({"orientation": "up"}, r"unknown orientation 'up'; choose from: left, right"),
        ({"kernel_fraction": 0.0}, r"kernel_fraction must be in \(0, 0.5\), found 0.0"),
    ],
    ids=["mode", "threshold", "orientation", "kernel"],
)
def test_bad_parameters_raise_config_error(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ArtifactMask(**kwargs)


def test_dict_twin_rejects_ambiguous_keys_and_bad_laterality() -> None:
    with pytest.raises(ConfigError, match=r"mask_key='mask' needs exactly one image key, found keys \['a', 'b'\]"):
        ArtifactMaskd(["a", "b"], mask_key="mask")
    with pytest.raises(DataError, match=r"unknown laterality 'X'; expected one of: L, R, left, right"):
        ArtifactMaskd("image", mode="mammography")({"image": make_mammogram().image, "laterality": "X"})


@pytest.mark.parametrize("value", [0.0, 0.7], ids=["black", "grey"])
def test_blank_image_passes_through_with_warning(value: float, caplog: pytest.LogCaptureFixture) -> None:
    image = np.full((1, 64, 48), value, np.float32)
    with caplog.at_level(logging.WARNING, logger="common.transforms.artifact_mask"):
        result = ArtifactMask(mode="mammography").compute(image)
    assert result.blank and not result.flipped
    np.testing.assert_array_equal(result.image, image)
    assert result.mask.min() == 1.0
    assert "no foreground found" in caplog.text
