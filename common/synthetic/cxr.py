"""Synthetic NIH ChestX-ray14 dataset: chest-radiograph-like PNGs with learnable signs, in the native layout.

:func:`generate_chestxray14` writes ``images/{patient:08d}_{follow:03d}.png``, ``Data_Entry_2017.csv``
(the exact 2017 format: bracketed header columns, trailing comma, 12 fields) and patient-disjoint
``train_val_list.txt`` / ``test_list.txt``, so the real adapter (:mod:`common.data.chestxray14`) and
the bundles run unchanged on it, and ``BBox_List_2017.csv`` (NIH's format) with a box around every
drawn sign of NIH's 8 boxed findings, in pixels of the written image (:mod:`common.synthetic.cxr_boxes`).
Each finding is an independent coin flip with probability ``prevalence`` and, when present, is drawn by its sign
in :data:`FINDING_SIGNS`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from common.data.chestxray14 import CHESTXRAY14_FINDINGS, NO_FINDING
from common.data.chestxray14_boxes import BBOX_CSV_NAME, FindingBox, format_bbox_list
from common.data.splits import group_by_split, patient_split
from common.errors import ConfigError, DataError
from common.io import atomic_directory, atomic_write_text
from common.synthetic.cxr_anatomy import draw_anatomy, sample_anatomy
from common.synthetic.cxr_boxes import BOXED_FINDINGS, sign_boxes
from common.synthetic.cxr_signs import FINDING_SIGNS

__all__ = [
    "SyntheticCase",
    "render_chest",
    "render_chest_with_boxes",
    "sample_cases",
    "generate_chestxray14",
    "DATA_ENTRY_2017_HEADER",
]

logger = logging.getLogger(__name__)

DATA_ENTRY_2017_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)
_NIH_PIXEL_SPACING_MM = 0.143  # at the original 1024 px


@dataclass(frozen=True)
class SyntheticCase:
    """One synthetic image's metadata: what the CSV row says and what :func:`render_chest` draws."""

    image: str
    patient_id: int
    follow_up: int
    labels: tuple[float, ...]
    age: int
    gender: str
    view: str

    @property
    def finding_labels(self) -> str:
        """The ``Finding Labels`` text: present findings joined by ``|`` or ``No Finding``."""
        names = [name for name, value in zip(CHESTXRAY14_FINDINGS, self.labels, strict=True) if value]
        return "|".join(names) or NO_FINDING


def render_chest_with_boxes(
    labels: Sequence[float], rng: np.random.Generator, image_size: int = 128
) -> tuple[np.ndarray, list[tuple[str, tuple[int, int, int, int]]]]:
    """Render one synthetic frontal chest radiograph showing the findings flagged in ``labels``, and box its signs.

    The anatomy, every finding's sign and the noise draw from separate child generators spawned from
    ``rng``, so the same ``rng`` state with and without a finding gives images that differ only by
    that finding's sign.

    Args:
        labels: 14 values in :data:`CHESTXRAY14_FINDINGS` order; non-zero means present.
        rng: seeded generator (not modified beyond spawning children).
        image_size: output side in pixels.

    Returns:
        ``image_size x image_size`` uint8 grey image, and ``(finding, (x, y, w, h))`` boxes in its pixel grid
        around the signs of the :data:`~common.synthetic.cxr_boxes.BOXED_FINDINGS` present (NIH's 8 boxed
        findings; see :func:`~common.synthetic.cxr_boxes.sign_boxes`).
    """
    if len(labels) != len(CHESTXRAY14_FINDINGS):
        raise DataError(f"render_chest needs {len(CHESTXRAY14_FINDINGS)} labels, got {len(labels)}")
    anatomy_rng, noise_rng, *sign_rngs = rng.spawn(2 + len(CHESTXRAY14_FINDINGS))
    anatomy = sample_anatomy(anatomy_rng, image_size)
    img = draw_anatomy(anatomy)
    sign_rng = dict(zip(CHESTXRAY14_FINDINGS, sign_rngs, strict=True))
    present = {name for name, value in zip(CHESTXRAY14_FINDINGS, labels, strict=True) if value}
    boxes: list[tuple[str, tuple[int, int, int, int]]] = []
    for name, draw in FINDING_SIGNS.items():
        if name in present:
            before, img = img, draw(img, anatomy, sign_rng[name])
            if name in BOXED_FINDINGS:
                boxes.extend((name, box) for box in sign_boxes(before, img))
    img = cv2.GaussianBlur(img, (0, 0), max(0.5, 0.004 * image_size))
    img = img + noise_rng.normal(0.0, 0.025, img.shape).astype(np.float32)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), boxes


def render_chest(labels: Sequence[float], rng: np.random.Generator, image_size: int = 128) -> np.ndarray:
    """The image of :func:`render_chest_with_boxes` (same arguments), without the boxes.

    Example:
        >>> img = render_chest([0.0] * 14, np.random.default_rng(0), 64)
        >>> img.shape, img.dtype
        ((64, 64), dtype('uint8'))
    """
    return render_chest_with_boxes(labels, rng, image_size)[0]


def sample_cases(
    n_patients: int, images_per_patient: tuple[int, int] = (1, 3), prevalence: float = 0.25, seed: int = 0
) -> list[SyntheticCase]:
    """Draw the patients, follow-up images and labels of a synthetic dataset (no pixels).

    Args:
        n_patients: number of patients, numbered from 1.
        images_per_patient: inclusive range of images per patient.
        prevalence: probability of each finding, drawn independently per image.
        seed: seed of the draw.

    Returns:
        Cases in patient / follow-up order.
    """
    low, high = images_per_patient
    if n_patients < 1 or not 1 <= low <= high:
        raise ConfigError(
            f"need n_patients >= 1 and 1 <= images_per_patient[0] <= images_per_patient[1], "
            f"got n_patients={n_patients}, images_per_patient={images_per_patient}"
        )
    if not 0.0 <= prevalence <= 1.0:
        raise ConfigError(f"prevalence must lie in [0, 1], got {prevalence}")
    rng = np.random.default_rng(seed)
    cases: list[SyntheticCase] = []
    for patient in range(1, n_patients + 1):
        age, gender = int(rng.integers(18, 90)), str(rng.choice(["M", "F"]))
        for follow in range(int(rng.integers(low, high + 1))):
            labels = tuple(float(v) for v in rng.random(len(CHESTXRAY14_FINDINGS)) < prevalence)
            view = str(rng.choice(["PA", "AP"], p=[0.6, 0.4]))
            name = f"{patient:08d}_{follow:03d}.png"
            cases.append(SyntheticCase(name, patient, follow, labels, age + follow // 2, gender, view))
    return cases


def _data_entry_text(cases: Sequence[SyntheticCase], image_size: int) -> str:
    """``Data_Entry_2017.csv`` content in the 2017 format (trailing comma on every line)."""
    spacing = f"{_NIH_PIXEL_SPACING_MM * 1024 / image_size:.3f}"
    rows = [DATA_ENTRY_2017_HEADER]
    for c in cases:
        fields = [c.image, c.finding_labels, c.follow_up, c.patient_id, c.age, c.gender, c.view]
        rows.append(",".join(map(str, [*fields, image_size, image_size, spacing, spacing, ""])))
    return "\n".join(rows) + "\n"


def generate_chestxray14(
    output_dir: str | os.PathLike,
    n_patients: int = 150,
    images_per_patient: tuple[int, int] = (1, 3),
    image_size: int = 128,
    seed: int = 0,
    prevalence: float = 0.25,
    test_fraction: float = 0.2,
) -> Path:
    """Write a synthetic ChestX-ray14 dataset in the native layout.

    Args:
        output_dir: destination folder (created); an existing ``images/`` folder is replaced whole.
        n_patients: number of patients.
        images_per_patient: inclusive range of follow-up images per patient.
        image_size: PNG side in pixels.
        seed: seed of labels, pixels and the split.
        prevalence: probability of each finding per image.
        test_fraction: fraction of patients listed in ``test_list.txt``.

    Returns:
        ``output_dir`` as a Path.

    Raises:
        ConfigError: on invalid counts or fractions, or too few patients for both split lists.

    Example:
        >>> root = generate_chestxray14("/tmp/cxr14", n_patients=20, image_size=64)  # doctest: +SKIP
        >>> sorted(p.name for p in root.iterdir())  # doctest: +SKIP
        ['BBox_List_2017.csv', 'Data_Entry_2017.csv', 'images', 'test_list.txt', 'train_val_list.txt']
    """
    root = Path(output_dir)
    cases = sample_cases(n_patients, images_per_patient, prevalence, seed)
    fractions = {"train_val": 1 - test_fraction, "test": test_fraction}
    assignment = patient_split([str(c.patient_id) for c in cases], fractions, seed)
    groups = group_by_split(cases, assignment, ["train_val", "test"])
    if not groups["train_val"] or not groups["test"]:
        raise ConfigError(
            f"{n_patients} patient(s) with test_fraction={test_fraction} leave a split list empty; add patients"
        )
    boxes: list[FindingBox] = []
    with atomic_directory(root / "images") as image_dir:
        for case in cases:
            rng = np.random.default_rng([seed, case.patient_id, case.follow_up])
            image, signs = render_chest_with_boxes(case.labels, rng, image_size)
            if not cv2.imwrite(str(image_dir / case.image), image):
                raise DataError(f"could not write {image_dir / case.image}")
            boxes.extend(FindingBox(case.image, name, *box) for name, box in signs)
    atomic_write_text(root / "Data_Entry_2017.csv", _data_entry_text(cases, image_size))
    atomic_write_text(root / BBOX_CSV_NAME, format_bbox_list(boxes))
    for split, name in (("train_val", "train_val_list.txt"), ("test", "test_list.txt")):
        atomic_write_text(root / name, "".join(f"{c.image}\n" for c in groups[split]))
    logger.info("synthetic ChestX-ray14: %d images of %d patients in %s", len(cases), n_patients, root)
    return root
