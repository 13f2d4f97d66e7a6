"""LoadMedicalImage(d): real H&E (RGB, RGBA, palette, JPEG), grey photo, chest DICOM, mixed batches, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Resized
from PIL import Image
from pydicom.data import get_testdata_file
from skimage import data as skdata

from common.errors import DataError
from common.transforms import LoadMedicalImage, LoadMedicalImaged, ToImageNetInputd, read_medical_image, read_radiograph

RG1 = get_testdata_file("RG1_UNCI.dcm")


@pytest.fixture(scope="module")
def ihc() -> np.ndarray:
    """scikit-image's immunohistochemistry image: a real stained tissue section, 512 x 512 RGB uint8."""
    return skdata.immunohistochemistry()


def _save(tmp_path: Path, name: str, image: Image.Image) -> Path:
    path = tmp_path / name
    image.save(path)
    return path


def test_rgb_png_is_three_channels_in_unit_range(tmp_path: Path, ihc: np.ndarray) -> None:
    path = _save(tmp_path, "ihc.png", Image.fromarray(ihc))
    image = LoadMedicalImage()(path)
    assert isinstance(image, MetaTensor) and image.dtype == torch.float32
    assert tuple(image.shape) == (3, 512, 512)
    assert torch.equal(image.as_tensor(), torch.from_numpy(ihc.transpose(2, 0, 1).astype(np.float32) / 255.0))
    assert image.meta["channels"] == "rgb" and image.meta["filename_or_obj"] == str(path)


@pytest.mark.parametrize("mode", ["RGBA", "P"], ids=["alpha-dropped", "colour-palette"])
def test_rgba_and_palette_become_rgb(tmp_path: Path, ihc: np.ndarray, mode: str) -> None:
    rgb = Image.fromarray(ihc)
    if mode == "RGBA":
        alpha = Image.fromarray(np.full(ihc.shape[:2], 7, np.uint8))  # nearly transparent: must not matter
        converted = rgb.copy()
        converted.putalpha(alpha)
        expected = ihc
    else:
        converted = rgb.quantize(colors=64)
        expected = np.asarray(converted.convert("RGB"))
    image, meta = read_medical_image(_save(tmp_path, f"ihc_{mode}.png", converted))
    assert image.shape == (3, 512, 512) and meta["mode"] == mode
    np.testing.assert_array_equal(image, expected.transpose(2, 0, 1).astype(np.float32) / 255.0)


def test_rgb_jpeg_is_three_channels(tmp_path: Path, ihc: np.ndarray) -> None:
    image, meta = read_medical_image(_save(tmp_path, "ihc.jpg", Image.fromarray(ihc)))
    assert image.shape == (3, 512, 512) and meta["format"] == "JPEG"
    assert np.abs(image - ihc.transpose(2, 0, 1) / 255.0).mean() < 0.02  # lossy, but the same picture


@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_grey_image_is_one_channel_as_read_radiograph(tmp_path: Path, suffix: str) -> None:
    path = _save(tmp_path, f"camera.{suffix}", Image.fromarray(skdata.camera()))
    image, meta = read_medical_image(path)
    assert image.shape == (1, 512, 512) and meta["channels"] == "grey"
    np.testing.assert_array_equal(image[0], read_radiograph(path)[0])


def test_grey_with_alpha_and_grey_palette_are_grey(tmp_path: Path) -> None:
    grey = Image.fromarray(skdata.camera())
    with_alpha = grey.convert("LA")
    palette = grey.convert("P")  # a palette of greys only
    for name, img in (("la.png", with_alpha), ("palette.png", palette)):
        image, meta = read_medical_image(_save(tmp_path, name, img))
        assert image.shape == (1, 512, 512) and meta["channels"] == "grey", name
        np.testing.assert_allclose(image[0], skdata.camera() / 255.0, atol=1e-6)


def test_real_chest_dicom_matches_load_radiograph() -> None:
    image = LoadMedicalImage()(RG1)
    reference, _ = read_radiograph(RG1)
    assert image.shape[0] == 1 and image.meta["channels"] == "grey" and image.meta["format"] == "DICOM"
    assert torch.equal(image[0].as_tensor(), torch.from_numpy(reference))  # windowed, MONOCHROME1 inverted


def test_mixed_modalities_become_one_batch(tmp_path: Path, ihc: np.ndarray) -> None:
    """H&E PNG + chest DICOM -> LoadMedicalImaged, Resized, ToImageNetInputd -> two 3 x 64 x 64 network inputs."""
    chain = Compose([LoadMedicalImaged("image"), Resized("image", (64, 64), mode="area"), ToImageNetInputd("image")])
    items = [{"image": str(_save(tmp_path, "ihc.png", Image.fromarray(ihc)))}, {"image": RG1}]
    batch = torch.stack([chain(item)["image"].as_tensor() for item in items])
    assert batch.shape == (2, 3, 64, 64) and batch.dtype == torch.float32
    grey = batch[1]
    assert torch.allclose(grey[0] * 0.229 + 0.485, grey[1] * 0.224 + 0.456, atol=1e-5)  # grey repeated
    assert not torch.allclose(batch[0][0] * 0.229 + 0.485, batch[0][1] * 0.224 + 0.456, atol=1e-2)  # colour kept


@pytest.mark.parametrize("problem", ["missing", "corrupt", "not-an-image"])
def test_bad_files_are_data_errors_naming_the_file(tmp_path: Path, problem: str) -> None:
    path = tmp_path / ("x.png" if problem != "not-an-image" else "notes.jpg")
    if problem == "corrupt":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    elif problem == "not-an-image":
        path.write_text("not pixels")
    with pytest.raises(DataError, match=str(path.name)):
        LoadMedicalImaged("image")({"image": str(path)})
