"""Empty and truncated image files are found from a few bytes per file: PNG, JPEG, native and encapsulated DICOM."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from common.data.image_files import check_image_files, image_file_problem
from common.errors import DataError


def _encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


FILES = {
    "png": ("a.png", _encoded("PNG")),
    "jpeg": ("a.jpg", _encoded("JPEG")),
    "dicom-native": ("a.dcm", Path(get_testdata_file("CT_small.dcm")).read_bytes()),
    "dicom-rgb": ("a.dcm", Path(get_testdata_file("SC_rgb.dcm")).read_bytes()),
    "dicom-jpeg2000": ("a.dcm", Path(get_testdata_file("JPEG2000.dcm")).read_bytes()),
    "dicom-no-suffix": ("a", Path(get_testdata_file("MR_small.dcm")).read_bytes()),
}
TRUNCATED = {
    "png": r"is a truncated PNG \(\d+ bytes, no IEND chunk at its end\)",
    "jpeg": r"is a truncated JPEG \(\d+ bytes, no end-of-image marker\)",
    "dicom-native": r"is truncated: Pixel Data declares 32768 bytes from offset 6300 but the file has \d+ bytes",
    "dicom-rgb": r"is truncated: Pixel Data declares 30000 bytes",
    "dicom-jpeg2000": r"has no Pixel Data element",
    "dicom-no-suffix": r"is truncated: Pixel Data declares 8192 bytes",
}


@pytest.mark.parametrize("kind", list(FILES))
def test_complete_files_pass(tmp_path: Path, kind: str) -> None:
    name, data = FILES[kind]
    (tmp_path / name).write_bytes(data)
    assert image_file_problem(tmp_path / name) is None


@pytest.mark.parametrize("kind", list(FILES))
@pytest.mark.parametrize("keep", [0.5, 0.9], ids=["half", "most"])
def test_truncated_files_are_named(tmp_path: Path, kind: str, keep: float) -> None:
    name, data = FILES[kind]
    (tmp_path / name).write_bytes(data[: int(len(data) * keep)])
    problem = image_file_problem(tmp_path / name)
    assert problem is not None and re.match(TRUNCATED[kind], problem), problem


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [("a.png", b"", r"is empty \(0 bytes\)"), ("a.dcm", b"", r"is empty \(0 bytes\)"),
     ("a.tif", b"", r"is empty \(0 bytes\)"), ("a.png", b"GIF89a....", r"is not a PNG \(starts with b'GIF89a"),
     ("a.jpg", b"\x89PNG", r"is not a JPEG"), ("a.dcm", b"not a dicom" * 20, r"is not a readable DICOM file")],
    ids=["empty-png", "empty-dicom", "empty-other", "png-suffix-not-png", "jpg-suffix-not-jpeg", "dcm-not-dicom"],
)
def test_empty_and_mislabelled_files(tmp_path: Path, name: str, data: bytes, message: str) -> None:
    (tmp_path / name).write_bytes(data)
    assert re.fullmatch(message + ".*", image_file_problem(tmp_path / name) or "")


def test_check_image_files_names_the_first_three(tmp_path: Path) -> None:
    paths = []
    for index in range(5):
        paths.append(tmp_path / f"{index}.png")
        paths[-1].write_bytes(FILES["png"][1] if index == 2 else b"")
    with pytest.raises(DataError, match=rf"owner: 4 image file\(s\) are empty, truncated or unreadable: {paths[0]} is "
                                        rf"empty \(0 bytes\); {paths[1]} is empty .*; {paths[3]} is empty .*; \.\.\."):
        check_image_files(paths, "owner")
    check_image_files(paths[2:3], "owner")
