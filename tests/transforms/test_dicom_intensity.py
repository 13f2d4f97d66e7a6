"""DicomIntensity(d) after MONAI's LoadImaged(PydicomReader): same [0, 1] image as LoadRadiograph, bad meta."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from pydicom.data import get_testdata_file

from common.errors import ConfigError, DataError
from common.transforms import DicomIntensity, DicomIntensityd, LoadRadiograph

# MONAI's own notices on these files (no patient geometry; no nvImageCodec on CPU): not what is tested here.
pytestmark = [
    pytest.mark.filterwarnings("ignore:PydicomReader. ImageOrientationPatient"),
    pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader"),
]

RG1 = get_testdata_file("RG1_UNCI.dcm")
GREY2 = {"00280004": {"vr": "CS", "Value": ["MONOCHROME2"]}}


def monai_load(path: str, **reader_args: Any) -> MetaTensor:
    load = Compose([LoadImaged("image", reader="PydicomReader", **reader_args), EnsureChannelFirstd("image")])
    return load({"image": path})["image"]


@pytest.mark.parametrize("swap_ij", [True, False], ids=["monai-default-transposed", "swap_ij-false"])
def test_real_chest_matches_load_radiograph(swap_ij: bool) -> None:
    image = monai_load(RG1, prune_metadata=False, swap_ij=swap_ij)
    out = DicomIntensityd("image")({"image": image})["image"]
    expected = LoadRadiograph()(RG1)  # (1, rows, columns) = (1, 1955, 1841)
    # PydicomReader's default swap_ij=True returns (columns, rows): the transpose of the displayed image.
    got = out[0].T if swap_ij else out[0]
    assert tuple(out.shape) == ((1, 1841, 1955) if swap_ij else (1, 1955, 1841))
    torch.testing.assert_close(got, expected[0], rtol=0, atol=0)
    assert isinstance(out, MetaTensor) and out.dtype == torch.float32
    assert out.meta["voi"] == "window 15000/30000" and out.meta["filename_or_obj"] == RG1


@pytest.mark.parametrize(
    ("name", "voi"),
    [
        ("693_UNCI.dcm", "window 40/100"),  # CT: PydicomReader already applied intercept -1024
        ("vlut_04.dcm", "VOI LUT sequence"),
        ("mlut_18.dcm", "bit depth 12"),  # Modality LUT Sequence: never applied by PydicomReader
        ("CT_small.dcm", "image range"),
    ],
    ids=["rescaled-window", "voi-lut-sequence", "modality-lut-sequence", "rescaled-no-window"],
)
def test_other_real_dicoms_match_load_radiograph(name: str, voi: str) -> None:
    path = get_testdata_file(name)
    out = DicomIntensity()(monai_load(path, prune_metadata=False, swap_ij=False))
    expected = LoadRadiograph()(path)
    assert out.meta["voi"] == expected.meta["voi"] == voi
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=0, atol=1e-6)


def test_pruned_meta_raises_naming_the_missing_tags() -> None:
    image = monai_load(RG1)  # PydicomReader's default prune_metadata=True keeps only geometry tags
    with pytest.raises(DataError, match=r"PhotometricInterpretation \(0028,0004\); BitsStored \(0028,0101\)") as info:
        DicomIntensityd("image")({"image": image})
    assert "prune_metadata=False" in str(info.value) and "found intensity tags: none" in str(info.value)
    assert RG1 in str(info.value)


def test_window_override_and_raw_values_with_keyword_meta() -> None:
    meta = {"PhotometricInterpretation": "MONOCHROME2", "RescaleSlope": 2, "RescaleIntercept": -10,
            "WindowCenter": 1000, "WindowWidth": 1}
    stored = np.array([[0, 10, 55, 60, 100]], dtype=np.uint16)  # modality values -10, 10, 100, 110, 190
    out = DicomIntensity(window=(100.5, 21), rescale_applied=False)(stored, meta)
    # linear window: (x - (c - 0.5 - (w - 1) / 2)) / (w - 1) = (x - 90) / 20, clipped
    np.testing.assert_allclose(out, [[0.0, 0.0, 0.5, 1.0, 1.0]], atol=1e-7)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32


@pytest.mark.parametrize(
    "make",
    [lambda a: a, lambda a: torch.from_numpy(a), lambda a: MetaTensor(torch.from_numpy(a), meta={"x": 1})],
    ids=["numpy", "torch", "metatensor"],
)
def test_type_preserved_and_input_meta_untouched(make) -> None:
    img = make(np.array([[0.0, 127.5, 255.0]]))
    meta = {**GREY2, "00280101": {"vr": "US", "Value": [8]}}
    out = DicomIntensity()(img, meta)
    assert type(out) is type(img)
    np.testing.assert_allclose(np.asarray(out), [[0.0, 0.5, 1.0]], atol=1e-7)
    if isinstance(img, MetaTensor):
        assert out.meta["voi"] == "bit depth 8" and out.meta["x"] == 1 and "voi" not in img.meta


def test_dict_twin_reads_separate_meta_dictionary() -> None:
    item = {"image": np.array([[4095.0]]), "image_meta_dict": {"PhotometricInterpretation": "MONOCHROME1",
                                                                "BitsStored": 12}}
    assert float(DicomIntensityd("image")(item)["image"][0, 0]) == 0.0


@pytest.mark.parametrize(
    ("img", "meta", "match"),
    [
        (np.zeros((2, 2)), {}, r"image: DICOM tags missing .*PhotometricInterpretation .*found intensity tags: none"),
        (np.zeros((2, 2)), {"PhotometricInterpretation": "RGB", "BitsStored": 8}, r"'RGB' is not grey"),
        (np.full((2, 2), np.nan), {**GREY2, "BitsStored": 8}, r"NaN or infinite values \(4 pixels\)"),
        (np.zeros((2, 2)), {**GREY2, "00281050": {"vr": "DS", "Value": "x"}}, r"malformed DICOM intensity tag"),
    ],
    ids=["no-meta", "rgb", "nan", "malformed"],
)
def test_bad_images_raise_data_error(img: np.ndarray, meta: dict, match: str) -> None:
    with pytest.raises(DataError, match=match):
        DicomIntensity()(img, meta)


@pytest.mark.parametrize(
    ("window", "match"),
    [((40,), r"pair \(center, width\)"), ("40,400", r"pair"), ((40, 0), r"width >= 1"), ((np.nan, 400), "finite")],
    ids=["one-value", "string", "zero-width", "nan-center"],
)
def test_bad_window_raises_config_error(window: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DicomIntensity(window=window)


@pytest.mark.parametrize(
    ("function", "expected"),
    [("LINEAR_EXACT", [0.0, 0.25, 0.5, 1.0]),
     # PS3.3 C.11.2.1.3.1: y = 1 / (1 + exp(-4 (x - c) / w)), c = w = 100.
     ("SIGMOID", [1 / (1 + np.exp(2.0)), 1 / (1 + np.exp(1.0)), 0.5, 1 / (1 + np.exp(-2.0))])],
    ids=["linear_exact", "sigmoid"],
)
def test_voi_lut_functions(function: str, expected: list[float]) -> None:
    from pydicom.dataset import Dataset

    from common.transforms.dicom_intensity import dicom_to_unit

    ds = Dataset()
    ds.PhotometricInterpretation, ds.BitsStored = "MONOCHROME2", 12
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 100, 100, function
    image, voi = dicom_to_unit(np.array([50.0, 75.0, 100.0, 150.0]), ds)
    np.testing.assert_allclose(image, expected, atol=1e-6)
    assert function in voi


def test_signed_pixels_scale_over_the_signed_range() -> None:
    from pydicom.dataset import Dataset

    from common.transforms.dicom_intensity import dicom_to_unit

    ds = Dataset()
    ds.PhotometricInterpretation, ds.BitsStored, ds.PixelRepresentation = "MONOCHROME2", 8, 1
    image, _ = dicom_to_unit(np.array([-128, 0, 127], dtype=np.int16), ds)
    np.testing.assert_allclose(image, [0.0, 128 / 255, 1.0], atol=1e-6)


def test_window_width_one_is_a_step() -> None:
    from pydicom.dataset import Dataset

    from common.transforms.dicom_intensity import dicom_to_unit

    ds = Dataset()
    ds.PhotometricInterpretation, ds.BitsStored, ds.WindowCenter, ds.WindowWidth = "MONOCHROME2", 8, 10, 1
    image, _ = dicom_to_unit(np.array([9.0, 9.6, 11.0]), ds)
    assert image.tolist() == [0.0, 1.0, 1.0]
