"""Synthetic CBIS-DDSM and INbreast datasets: real 16-bit DICOM mammograms in each dataset's native layout.

:func:`generate_cbis_ddsm` writes the four case-description CSVs with the released column headers and a
TCIA-style tree ``CBIS-DDSM/<Mass-Training_P_00001_LEFT_CC>/<study uid>/<series uid>/1-1.dcm`` whose UID
folders differ from the CSV paths (as in the real download), plus decoy ROI-mask folders
(``..._1/.../1-1.dcm``) for about half of the abnormalities. :func:`generate_inbreast` writes
``AllDICOMs/<number>_<hash>_MG_<L|R>_<CC|ML>_ANON.dcm`` and a ``;``-separated ``INbreast.csv``. Both use
:func:`~common.synthetic.mammo_render.render_mammogram`, whose malignant findings (spiculated masses,
clustered micro-calcifications) differ visibly from benign ones, so the real adapters
(:mod:`common.data.cbis_ddsm`, :mod:`common.data.inbreast`) and the bundles run unchanged on them.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

from common.data.splits import patient_split
from common.errors import ConfigError
from common.io import atomic_directory, atomic_save, atomic_write_text
from common.synthetic.mammo_render import FINDING_KINDS, MammoFinding, mammogram_shape, render_mammogram

__all__ = [
    "MAMMOGRAPHY_SOP_CLASS_UID",
    "MASS_CSV_HEADER",
    "CALC_CSV_HEADER",
    "INBREAST_CSV_HEADER",
    "SyntheticBreast",
    "sample_cbis_ddsm_breasts",
    "write_mammogram_dicom",
    "generate_cbis_ddsm",
    "generate_inbreast",
    "MammoFinding",
    "render_mammogram",
]

logger = logging.getLogger(__name__)

MAMMOGRAPHY_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray Image Storage - For Presentation
MASS_CSV_HEADER = (
    "patient_id", "breast_density", "left or right breast", "image view", "abnormality id", "abnormality type",
    "mass shape", "mass margins", "assessment", "pathology", "subtlety", "image file path",
    "cropped image file path", "ROI mask file path",
)  # fmt: skip
CALC_CSV_HEADER = (
    "patient_id", "breast density", "left or right breast", "image view", "abnormality id", "abnormality type",
    "calc type", "calc distribution", "assessment", "pathology", "subtlety", "image file path",
    "cropped image file path", "ROI mask file path",
)  # fmt: skip
INBREAST_CSV_HEADER = (
    "Patient ID",
    "Patient age",
    "Laterality",
    "View",
    "Acquisition date",
    "File Name",
    "ACR",
    "Bi-Rads",
)
_UID_PREFIX = "1.3.6.1.4.1.9590.100.1.2."  # the CBIS-DDSM UID root
_SIDE_WORD = {"L": "LEFT", "R": "RIGHT"}
# (shape, margins) or (calc type, distribution) by malignancy
_DESCRIPTORS = {
    ("mass", True): (("IRREGULAR", "SPICULATED"), ("LOBULATED", "ILL_DEFINED")),
    ("mass", False): (("ROUND", "CIRCUMSCRIBED"), ("OVAL", "CIRCUMSCRIBED")),
    ("calcification", True): (("PLEOMORPHIC", "CLUSTERED"), ("FINE_LINEAR_BRANCHING", "CLUSTERED")),
    ("calcification", False): (("COARSE", "SCATTERED"), ("ROUND_AND_REGULAR", "DIFFUSELY_SCATTERED")),
}
_BIRADS_P = {"1": 0.25, "2": 0.3, "3": 0.1, "4a": 0.08, "4b": 0.06, "4c": 0.06, "5": 0.12, "6": 0.03}


@dataclass(frozen=True)
class SyntheticBreast:
    """One breast of a synthetic CBIS-DDSM patient: its abnormalities (one kind) and the views taken."""

    patient_id: str
    laterality: str
    kind: str
    pathologies: tuple[str, ...]
    views: tuple[str, ...]
    density: int
    split: str

    def folder(self, view: str) -> str:
        """Image folder name, e.g. ``Mass-Training_P_00001_LEFT_CC``."""
        kind, split = ("Mass" if self.kind == "mass" else "Calc"), ("Training" if self.split == "train" else "Test")
        return f"{kind}-{split}_{self.patient_id}_{_SIDE_WORD[self.laterality]}_{view}"

    @property
    def findings(self) -> list[MammoFinding]:
        return [MammoFinding(self.kind, pathology == "MALIGNANT") for pathology in self.pathologies]


def sample_cbis_ddsm_breasts(
    n_patients: int, seed: int = 0, test_fraction: float = 0.2, malignant_fraction: float = 0.45
) -> list[SyntheticBreast]:
    """Draw patients, breasts, abnormalities and the official split of a synthetic CBIS-DDSM (no pixels).

    Args:
        n_patients: number of patients ``P_00001`` ...
        seed: seed of the draw and of the patient-wise train / test split.
        test_fraction: fraction of patients in the test CSVs.
        malignant_fraction: probability that a breast has a malignant abnormality.

    Raises:
        ConfigError: fewer than 2 patients, or a fraction outside (0, 1).
    """
    if n_patients < 2 or not 0.0 < test_fraction < 1.0 or not 0.0 < malignant_fraction < 1.0:
        raise ConfigError(
            f"need n_patients >= 2 and test_fraction, malignant_fraction in (0, 1); got n_patients={n_patients}, "
            f"test_fraction={test_fraction}, malignant_fraction={malignant_fraction}"
        )
    rng = np.random.default_rng(seed)
    patients = [f"P_{number:05d}" for number in range(1, n_patients + 1)]
    fractions = {"train": 1.0 - test_fraction, "test": test_fraction}
    splits = dict(zip(patients, patient_split(patients, fractions, seed), strict=True))
    breasts = []
    for patient in patients:
        sides = ["L", "R"] if rng.random() < 0.2 else [str(rng.choice(["L", "R"]))]
        for side in sides:
            kind = str(rng.choice(FINDING_KINDS))
            malignant = rng.random() < malignant_fraction
            pathologies = ["MALIGNANT" if malignant else str(rng.choice(["BENIGN", "BENIGN_WITHOUT_CALLBACK"]))]
            if rng.random() < 0.25:
                pathologies.append(str(rng.choice(["MALIGNANT", "BENIGN"])) if malignant else "BENIGN")
            views = ("CC", "MLO") if rng.random() < 0.85 else (str(rng.choice(["CC", "MLO"])),)
            density = int(rng.integers(1, 5))
            breasts.append(SyntheticBreast(patient, side, kind, tuple(pathologies), views, density, splits[patient]))
    return breasts


def _uid(*parts: object) -> str:
    return generate_uid(prefix=_UID_PREFIX, entropy_srcs=[str(part) for part in parts])


def write_mammogram_dicom(
    path: str | os.PathLike,
    pixels: np.ndarray,
    patient_id: str,
    laterality: str,
    view: str,
    series_description: str,
    uids: tuple[str, str, str],
) -> Path:
    """Write a 16-bit MONOCHROME2 "For Presentation" digital mammogram as Explicit VR Little Endian.

    Args:
        path: destination ``.dcm`` file (parent folders are created).
        pixels: ``(H, W)`` uint16 image.
        patient_id, laterality, view, series_description: ``PatientID``, ``ImageLaterality`` (L/R),
            ``ViewPosition`` (CC/MLO) and ``SeriesDescription`` (omitted when empty).
        uids: ``(StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID)``.

    Raises:
        ConfigError: ``pixels`` is not a 2-D uint16 array.
    """
    if pixels.ndim != 2 or pixels.dtype != np.uint16:
        raise ConfigError(f"expected a 2-D uint16 image, got shape {pixels.shape} dtype {pixels.dtype}")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = UID(MAMMOGRAPHY_SOP_CLASS_UID), UID(uids[2])
    meta.TransferSyntaxUID, meta.ImplementationClassUID = ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = MAMMOGRAPHY_SOP_CLASS_UID, *uids
    ds.Modality, ds.PresentationIntentType, ds.BodyPartExamined = "MG", "FOR PRESENTATION", "BREAST"
    ds.PatientID, ds.PatientName, ds.ImageLaterality, ds.ViewPosition = patient_id, patient_id, laterality, view
    if series_description:
        ds.SeriesDescription = series_description
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    return atomic_save(path, lambda tmp: ds.save_as(tmp, enforce_file_format=True))


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[object]], delimiter: str = ",") -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _cbis_rows(breast: SyntheticBreast, view: str, rng: np.random.Generator) -> list[list[object]]:
    """CSV rows of one image; paths use UIDs unlike the tree's (the download's folders differ)."""
    folder, rows = breast.folder(view), []
    for number, pathology in enumerate(breast.pathologies, start=1):
        malignant = pathology == "MALIGNANT"
        options = _DESCRIPTORS[breast.kind, malignant]
        first, second = options[int(rng.integers(len(options)))]
        assessment = int(rng.integers(4, 6)) if malignant else int(rng.integers(2, 4))
        full = f"{folder}/{_uid(folder, 'csv-study')}/{_uid(folder, 'csv-series')}/000000.dcm"
        roi = f"{folder}_{number}/{_uid(folder, number, 'csv-study')}/{_uid(folder, number, 'csv-series')}"
        # The released CSVs end some ROI paths with a newline inside the quoted field.
        rows.append([breast.patient_id, breast.density, _SIDE_WORD[breast.laterality], view, number, breast.kind,
                     first, second, assessment, pathology, int(rng.integers(1, 6)), full, f"{roi}/000000.dcm",
                     f"{roi}/000001.dcm\n"])  # fmt: skip
    return rows


def _write_cbis_image(tree: Path, breast: SyntheticBreast, view: str, image_size: int, seed: int) -> None:
    folder = breast.folder(view)
    rng = np.random.default_rng([seed, int(breast.patient_id[2:]), ord(breast.laterality), len(view)])
    pixels, _ = render_mammogram(breast.findings, breast.laterality, view, rng, image_size)
    study, series = _uid(seed, folder, "study"), _uid(seed, folder, "series")
    path = tree / folder / study / series / "1-1.dcm"
    write_mammogram_dicom(path, pixels, folder, breast.laterality, view, "full mammogram images",
                          (study, series, _uid(seed, folder, "image")))  # fmt: skip
    for number in range(1, len(breast.pathologies) + 1):
        if rng.random() < 0.5:  # decoy ROI-mask folder sharing the image folder's prefix
            roi = f"{folder}_{number}"
            mask = np.zeros(mammogram_shape(image_size), np.uint16)
            mask[image_size // 3 : image_size // 2, image_size // 8 : image_size // 4] = 65535
            study, series = _uid(seed, roi, "study"), _uid(seed, roi, "series")
            write_mammogram_dicom(tree / roi / study / series / "1-1.dcm", mask, roi, breast.laterality, view,
                                  "ROI mask images", (study, series, _uid(seed, roi, "image")))  # fmt: skip


def generate_cbis_ddsm(
    output_dir: str | os.PathLike,
    n_patients: int = 60,
    image_size: int = 256,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> Path:
    """Write a synthetic CBIS-DDSM dataset in the native layout (4 CSVs + TCIA-style DICOM tree).

    Args:
        output_dir: destination folder (created); an existing ``CBIS-DDSM/`` tree is replaced whole.
        n_patients: number of patients (``P_00001`` ...), at least 2.
        image_size: image height in pixels (width ``3 * image_size // 4``).
        seed: seed of cases, pixels, UIDs and the official split.
        test_fraction: fraction of patients in the ``*_test_set.csv`` files.

    Returns:
        ``output_dir`` as a Path.

    Example:
        >>> root = generate_cbis_ddsm("/tmp/cbis", n_patients=10, image_size=128)  # doctest: +SKIP
        >>> sorted(p.name for p in root.iterdir())[:2]  # doctest: +SKIP
        ['CBIS-DDSM', 'calc_case_description_test_set.csv']
    """
    root = Path(output_dir)
    breasts = sample_cbis_ddsm_breasts(n_patients, seed, test_fraction)
    rng = np.random.default_rng([seed, 1])
    tables: dict[tuple[str, str], list[list[object]]] = {(k, s): [] for k in FINDING_KINDS for s in ("train", "test")}
    with atomic_directory(root / "CBIS-DDSM") as tree:
        for breast in breasts:
            for view in breast.views:
                _write_cbis_image(tree, breast, view, image_size, seed)
                tables[breast.kind, breast.split].extend(_cbis_rows(breast, view, rng))
    for (kind, split), rows in tables.items():
        name = f"{'mass' if kind == 'mass' else 'calc'}_case_description_{split}_set.csv"
        atomic_write_text(root / name, _csv_text(MASS_CSV_HEADER if kind == "mass" else CALC_CSV_HEADER, rows))
    n_images = sum(len(breast.views) for breast in breasts)
    logger.info("synthetic CBIS-DDSM: %d images of %d patients in %s", n_images, n_patients, root)
    return root


def _findings_for(birads: str, rng: np.random.Generator) -> list[MammoFinding]:
    if birads == "1":
        return []
    return [MammoFinding(str(rng.choice(FINDING_KINDS)), birads not in {"2", "3"})]


def generate_inbreast(
    output_dir: str | os.PathLike, n_patients: int = 30, image_size: int = 256, seed: int = 0
) -> Path:
    """Write a synthetic INbreast dataset: ``AllDICOMs/*.dcm`` and a ``;``-separated ``INbreast.csv``.

    Each patient has two or four images (CC and MLO of one or both breasts); a breast's BI-RADS decides its
    finding: 1 none, 2-3 a benign finding, 4a-6 a malignant one. ``Patient ID`` is written as "removed", as
    in the release; the patient is the hash in the file names.

    Args:
        output_dir: destination folder (created); an existing ``AllDICOMs/`` is replaced whole.
        n_patients: number of patients (at least 1).
        image_size: image height in pixels.
        seed: seed of cases, pixels and UIDs.

    Returns:
        ``output_dir`` as a Path.
    """
    if n_patients < 1:
        raise ConfigError(f"n_patients must be >= 1, got {n_patients}")
    root, rng = Path(output_dir), np.random.default_rng(seed)
    number, rows = 20586908, []
    with atomic_directory(root / "AllDICOMs") as folder:
        for _ in range(n_patients):
            patient = "".join(rng.choice(list("0123456789abcdef"), 16))
            sides = ("L", "R") if rng.random() < 0.8 else (str(rng.choice(["L", "R"])),)
            for side in sides:
                birads = str(rng.choice(list(_BIRADS_P), p=list(_BIRADS_P.values())))
                findings = _findings_for(birads, rng)
                for view, file_view in (("CC", "CC"), ("MLO", "ML")):
                    number += int(rng.integers(1, 40))
                    name = f"{number}_{patient}_MG_{side}_{file_view}_ANON.dcm"
                    pixels, _ = render_mammogram(
                        findings, side, view, np.random.default_rng([seed, number]), image_size
                    )
                    uids = (_uid(seed, patient, "study"), _uid(seed, patient, side, view), _uid(seed, name))
                    write_mammogram_dicom(folder / name, pixels, patient, side, view, "", uids)
                    rows.append(["removed", "", side, view, f"2010{int(rng.integers(1, 13)):02d}", number,
                                 int(rng.integers(1, 5)), birads])  # fmt: skip
    atomic_write_text(root / "INbreast.csv", _csv_text(INBREAST_CSV_HEADER, rows, delimiter=";"))
    logger.info("synthetic INbreast: %d images of %d patients in %s", len(rows), n_patients, root)
    return root
