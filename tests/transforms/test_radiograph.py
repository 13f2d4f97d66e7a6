"""LoadRadiograph(d): PNG 8/16-bit, RGBA, real DICOM (MONOCHROME1, compressed), and bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from monai.data import MetaTensor
from PIL import Image
from pydicom.data import get_testdata_file

from common.errors import DataError
from common.transforms import LoadRadiograph, LoadRadiographd, read_radiograph

RG1 = get_testdata_file("RG1_UNCI.dcm")


def test_real_chest_dicom_is_inverted_windowed_and_in_unit_range() -> None:
    ds = pydicom.dcmread(RG1)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    image = LoadRadiograph()(RG1)
    assert isinstance(image, MetaTensor)
    assert image.shape == (1, ds.Rows, ds.Columns)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    # MONOCHROME1: a high stored value is dark, so after loading it must be the low end.
    stored = ds.pixel_array.astype(float)
    bright_stored = stored > np.percentile(stored, 99)
    dark_stored = stored < np.percentile(stored, 1)
    assert image[0].numpy()[bright_stored].mean() < image[0].numpy()[dark_stored].mean()
    assert image.meta["filename_or_obj"] == RG1
    assert image.meta["voi"].startswith("window")


def test_window_follows_the_dicom_formula() -> None:
    ds = pydicom.dcmread(RG1)
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    image, _ = read_radiograph(RG1)
    stored = ds.pixel_array.astype(np.float64) * float(getattr(ds, "RescaleSlope", 1)) + float(
        getattr(ds, "RescaleIntercept", 0))
    low = center - 0.5 - (width - 1) / 2
    expected = 1.0 - np.clip((stored - low) / (width - 1), 0, 1)
    np.testing.assert_allclose(image, expected, atol=1e-6)


def test_lossless_jpeg2000_decodes_to_the_uncompressed_pixels() -> None:
    try:
        compressed, _ = read_radiograph(get_testdata_file("RG1_J2KR.dcm"))
    except DataError as err:
        pytest.skip(f"no JPEG 2000 decoder installed: {err}")
    np.testing.assert_array_equal(compressed, read_radiograph(get_testdata_file("RG1_UNCR.dcm"))[0])
    lossy, _ = read_radiograph(get_testdata_file("RG1_J2KI.dcm"))
    assert np.abs(lossy - compressed).mean() < 0.01


@pytest.mark.parametrize(
    ("mode", "dtype", "scale"), [("L", np.uint8, 255), ("I;16", np.uint16, 65535)], ids=["8-bit", "16-bit"]
)
def test_png_is_scaled_by_its_bit_depth(tmp_path: Path, mode: str, dtype: type, scale: int) -> None:
    pixels = (np.arange(64 * 48).reshape(48, 64) % (scale + 1)).astype(dtype)
    path = tmp_path / "x.png"
    Image.fromarray(pixels).save(path)  # uint8 -> mode L, uint16 -> mode I;16
    assert Image.open(path).mode == mode
    image, meta = read_radiograph(path)
    assert image.shape == (48, 64)
    np.testing.assert_allclose(image, pixels / scale, atol=1e-6)


def test_rgba_png_becomes_grey(tmp_path: Path) -> None:
    rgba = np.full((8, 8, 4), 255, dtype=np.uint8)
    rgba[..., :3] = 128
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    image, _ = read_radiograph(tmp_path / "rgba.png")
    assert image.shape == (8, 8)
    np.testing.assert_allclose(image, 128 / 255, atol=1e-6)


def test_dictionary_twin_keeps_other_keys() -> None:
    out = LoadRadiographd(keys="image")({"image": RG1, "label": [1, 0]})
    assert out["label"] == [1, 0] and out["image"].shape[0] == 1


@pytest.mark.parametrize(
    ("content", "suffix", "match"),
    [(None, ".png", "not found"), (b"not an image", ".png", "not a readable image"),
     (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, ".png", "not a readable image"),
     (b"\x00" * 128 + b"DICM" + b"\x00" * 10, ".dcm", "DICOM")],
    ids=["missing", "garbage-png", "truncated-png", "corrupt-dicom"],
)
def test_bad_files_raise_data_error_naming_the_file(tmp_path: Path, content: bytes | None, suffix: str,
                                                    match: str) -> None:
    path = tmp_path / f"bad{suffix}"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=match) as info:
        read_radiograph(path)
    assert str(path) in str(info.value)


def test_nan_pixels_raise(tmp_path: Path) -> None:
    pixels = np.ones((4, 4), dtype=np.float32)
    pixels[1, 1] = np.nan
    Image.fromarray(pixels).save(tmp_path / "nan.tiff")
    with pytest.raises(DataError, match="NaN"):
        read_radiograph(tmp_path / "nan.tiff")


@pytest.mark.parametrize(
    ("name", "keep", "match"),
    [("CT_small.dcm", 0, r"not a readable DICOM file"),
     ("CT_small.dcm", 0.5, r"corrupt DICOM pixel data \(The number of bytes of pixel data is less than expected"),
     ("JPEG2000.dcm", 0.5, r"DICOM has no pixel data \(PixelData element missing; .* cut off inside compressed pixel "
                           r"data: if so, re-download it\)")],
    ids=["empty", "truncated-native", "truncated-jpeg2000"],
)
def test_empty_and_truncated_dicoms_name_the_file(tmp_path: Path, name: str, keep: float, match: str) -> None:
    data = Path(get_testdata_file(name)).read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(DataError, match=rf"^{path}: {match}"):
        read_radiograph(path)
