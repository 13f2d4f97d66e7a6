"""Demo studies for the MONAI Label server: one flat folder of synthetic images for every bundle, some labelled.

:func:`make_studies` runs the embedded-data generators (:mod:`common.synthetic.embedded`: the synthetic ChestX-ray14,
CBIS-DDSM and BCSS layouts, read back by the real adapters) in a scratch folder, copies a few images of each into
a MONAI Label ``LocalDatastore`` and saves the synthetic truth as ``final`` labels for a share of them::

    studies/
      chest_0001.png ...    grey 8-bit radiographs        model chest_xray_classification
      mammo_0001.dcm ...    16-bit DICOM mammograms        model breast_mammo_classification
      histo_0001.png ...    RGB H&E tiles (BCSS-like)      model breast_histology_segmentation_unet
      labels/final/chest_0002.json   {"model": "chest_xray_classification", "findings": ["Effusion", ...]}
      labels/final/mammo_0001.json   {"model": "breast_mammo_classification", "findings": ["malignant"]} (or [])
      labels/final/histo_0003.png    uint8 mask, the tile's height x width, 0 = don't care, 1..5 = tumor,
                                     stroma, inflammatory, necrosis, other (BCSS codes grouped as in training)
      datastore_v2.json              MONAI Label's index; each image's info holds {"model": <bundle>}
      .medxfer_studies.json          marks the folder as made here (a rerun may replace it)

Every image's intended bundle is its image info ``"model"``. The Swin UNETR segmentation bundle serves the same
tiles as the UNet one (the server may run either on any ``histo_`` image); the stage-2 bundle,
medical_general_pretraining, is pretraining for the others and needs no images of its own.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from common.data import BCSS_DEFAULT_CLASS_MAP, CHESTXRAY14_FINDINGS, build_code_lookup, load_bcss_codes
from common.errors import ConfigError, DataError, OutputError
from common.io import atomic_directory, atomic_write_json
from common.synthetic import make_embedded_dataset

__all__ = ["STUDY_EXTENSIONS", "STUDIES_MARKER", "STUDY_TASKS", "DEFAULT_COUNTS", "LABEL_TAG", "StudyTask",
           "is_studies_folder", "make_studies"]  # fmt: skip

logger = logging.getLogger(__name__)

#: Image (and mask) file patterns of the studies datastore: ``LocalDatastore(path, extensions=STUDY_EXTENSIONS)``.
STUDY_EXTENSIONS = ["*.png", "*.dcm", "*.nii.gz", "*.nii"]
#: The file that marks a folder as written by :func:`make_studies` (hidden; not an image extension).
STUDIES_MARKER = ".medxfer_studies.json"
#: MONAI Label's tag of ground-truth labels.
LABEL_TAG = "final"
_MALIGNANT = "malignant"  # the mammography bundle's one class


@dataclass(frozen=True)
class StudyTask:
    """One kind of study image: its id prefix, the bundle it is meant for and its label kind."""

    prefix: str
    bundle: str
    segmentation: bool = False


#: The tasks in the order they are numbered and written.
STUDY_TASKS = (
    StudyTask("chest", "chest_xray_classification"),
    StudyTask("mammo", "breast_mammo_classification"),
    StudyTask("histo", "breast_histology_segmentation_unet", segmentation=True),
)
#: Images per bundle by default (1.5 s of generation on 2 cores, after the imports).
DEFAULT_COUNTS = {"chest_xray_classification": 12, "breast_mammo_classification": 8,
                  "breast_histology_segmentation_unet": 8}  # fmt: skip
_MIN_SIZE = 32
# The adapters split patient-wise; these floors keep every split non-empty (checked over seeds 0..39). Only the
# first n images are used.
_MIN_PATIENTS = {"chest": 10, "mammo": 8, "histo": 6}

#: One generated image and its truth: present finding names (classification) or a 0..5 mask (segmentation).
_Case = tuple[Path, list[str] | np.ndarray]


def _all_items(datalist: Mapping[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return sorted((item for items in datalist.values() for item in items), key=lambda item: item["image"])


def _chest_cases(root: Path, n: int, image_size: int, seed: int) -> list[_Case]:
    generate = {"n_patients": max(n, _MIN_PATIENTS["chest"]), "images_per_patient": (1, 1),
                "image_size": image_size, "seed": seed}  # fmt: skip
    datalist = make_embedded_dataset("chestxray14", root, generate, {"val_fraction": 0.25, "seed": seed})
    return [(root / item["image"], [name for name, value in zip(CHESTXRAY14_FINDINGS, item["label"], strict=True)
                                    if value]) for item in _all_items(datalist)[:n]]  # fmt: skip


def _mammo_cases(root: Path, n: int, image_size: int, seed: int) -> list[_Case]:
    # Every patient has at least one image, so n patients give at least n images.
    datalist = make_embedded_dataset(
        "cbis-ddsm", root, {"n_patients": max(n, _MIN_PATIENTS["mammo"]), "image_size": image_size, "seed": seed},
        {"val_fraction": 0.3, "seed": seed})  # fmt: skip
    return [(root / item["image"], [_MALIGNANT] if item["label"][0] else []) for item in _all_items(datalist)[:n]]


def _histo_cases(root: Path, n: int, tile_size: int, seed: int) -> list[_Case]:
    datalist = make_embedded_dataset(
        "bcss", root, {"n_patients": max(n, _MIN_PATIENTS["histo"]), "tiles_per_patient": 1, "tile_size": tile_size,
                       "seed": seed}, {"val_fraction": 0.2, "test_fraction": 0.2, "seed": seed})  # fmt: skip
    lookup = build_code_lookup(load_bcss_codes(root), BCSS_DEFAULT_CLASS_MAP)
    cases: list[_Case] = []
    for item in _all_items(datalist)[:n]:
        codes = cv2.imread(str(root / item["label"]), cv2.IMREAD_UNCHANGED)
        if codes is None or codes.ndim != 2:
            raise DataError(f"{root / item['label']}: expected a single-channel BCSS mask")
        cases.append((root / item["image"], lookup[codes]))
    return cases


_GENERATORS: dict[str, Callable[[Path, int, int, int], list[_Case]]] = {
    "chest": _chest_cases, "mammo": _mammo_cases, "histo": _histo_cases}  # fmt: skip


def is_studies_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder :func:`make_studies` wrote (it holds :data:`STUDIES_MARKER`)."""
    return (Path(path) / STUDIES_MARKER).is_file()


def _check_dest(dest: Path) -> None:
    """Refuse to replace anything but a new or empty folder or one :func:`make_studies` wrote."""
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise OutputError("write studies to", dest, "it is not a folder; choose a new or empty folder",
                          errno.EEXIST)  # fmt: skip
    if dest.is_dir() and any(dest.iterdir()) and not is_studies_folder(dest):
        raise OutputError("write studies to", dest, "the folder is not empty and was not made by `python -m "
                          f"common.label studies` (no {STUDIES_MARKER}); choose a new or empty folder",
                          errno.ENOTEMPTY)  # fmt: skip


def _check_arguments(counts: Mapping[str, int], sizes: Mapping[str, int], labelled_fraction: float) -> None:
    known = [task.bundle for task in STUDY_TASKS]
    unknown = sorted(set(counts) - set(known))
    if unknown:
        raise ConfigError(f"n_per_bundle names unknown bundle(s) {unknown}; choose from: {', '.join(known)}")
    bad = {name: n for name, n in counts.items() if isinstance(n, bool) or not isinstance(n, int) or n < 0}
    if bad:
        raise ConfigError(f"n_per_bundle counts must be integers >= 0, got {bad}")
    small = {name: size for name, size in sizes.items() if isinstance(size, bool) or not isinstance(size, int)
             or size < _MIN_SIZE}  # fmt: skip
    if small:
        raise ConfigError(f"image sizes must be integers >= {_MIN_SIZE}, got {small}")
    if not 0.0 <= labelled_fraction <= 1.0:
        raise ConfigError(f"labelled_fraction must lie in [0, 1], got {labelled_fraction!r}")


def _labelled_indices(n: int, fraction: float, seed: int, task_index: int) -> set[int]:
    """Which of ``n`` images get a label: ``round(fraction * n)`` of them (halves up), drawn with ``seed``."""
    k = int(fraction * n + 0.5)
    return set(np.random.default_rng([seed, task_index]).choice(n, size=k, replace=False).tolist())


def _write_label(scratch: Path, image_id: str, bundle: str, truth: list[str] | np.ndarray) -> Path:
    """The label file MONAI Label will copy: ``<id>.json`` (findings) or ``<id>.png`` (mask)."""
    if isinstance(truth, np.ndarray):
        path = scratch / f"{image_id}.png"
        if not cv2.imwrite(str(path), truth.astype(np.uint8)):
            raise OutputError("write", path, "OpenCV could not write the PNG mask")
        return path
    path = scratch / f"{image_id}.json"
    path.write_text(json.dumps({"model": bundle, "findings": truth}, indent=2) + "\n", encoding="utf-8")
    return path


def _add_task(datastore: Any, task: StudyTask, cases: list[_Case], labelled: set[int], scratch: Path) -> None:
    """Register ``cases`` as ``<prefix>_0001`` ... and save the labels of the ``labelled`` ones."""
    for index, (image, truth) in enumerate(cases):
        image_id = f"{task.prefix}_{index + 1:04d}"
        datastore.add_image(image_id, str(image), {"model": task.bundle})
        if index in labelled:
            label = _write_label(scratch, image_id, task.bundle, truth)
            # the info common.label.datastore records for a submitted label: the bundle, and findings if any
            info: dict[str, Any] = {"model": task.bundle}
            if not task.segmentation:
                info["findings"] = truth
            datastore.save_label(image_id, str(label), LABEL_TAG, info)


def make_studies(
    dest: str | os.PathLike,
    *,
    image_size_cxr: int = 256,
    image_size_mammo: int = 256,
    tile_size: int = 256,
    n_per_bundle: Mapping[str, int] | None = None,
    labelled_fraction: float = 0.5,
    seed: int = 0,
) -> dict[str, Any]:
    """Write a flat MONAI Label studies folder with synthetic images for every bundle (see the module docstring).

    The folder is built next to ``dest`` and swapped in whole (:func:`common.io.atomic_directory`): a failure
    leaves ``dest`` as it was. Images and labels depend only on the arguments (the datastore index records the
    time each was added).

    Args:
        dest: the studies folder: new, empty, or one this function wrote (replaced whole, labels included).
        image_size_cxr: side of the square chest radiographs in pixels.
        image_size_mammo: height of the mammograms (width ``3 * height // 4``).
        tile_size: side of the square histology tiles (BCSS ROIs are cut into such tiles for training).
        n_per_bundle: images per bundle name of :data:`STUDY_TASKS` (0 skips one); default
            :data:`DEFAULT_COUNTS`, and a bundle not named keeps its default.
        labelled_fraction: share of each bundle's images given a ``final`` label (rounded half up).
        seed: seed of the generators and of which images are labelled.

    Returns:
        ``{"studies": str, "seed": int, "bundles": {bundle: {"prefix", "images", "labelled"}}, "images": int,
        "labelled": int}``.

    Raises:
        ConfigError: an unknown bundle, a negative count, a size below 32 or a fraction outside [0, 1].
        OutputError: ``dest`` is a file, or a non-empty folder this function did not write (the path named);
            or it cannot be written.

    Example:
        >>> make_studies("/tmp/studies", n_per_bundle={"chest_xray_classification": 4})["images"]  # doctest: +SKIP
        20
    """
    from monailabel.datastore.local import LocalDatastore  # here: importing it loads MONAI (several seconds)

    root = Path(dest)
    counts = {**DEFAULT_COUNTS, **(n_per_bundle or {})}
    sizes = {"chest": image_size_cxr, "mammo": image_size_mammo, "histo": tile_size}
    _check_arguments(counts, {"image_size_cxr": image_size_cxr, "image_size_mammo": image_size_mammo,
                              "tile_size": tile_size}, labelled_fraction)  # fmt: skip
    _check_dest(root)
    started = time.perf_counter()
    summary: dict[str, Any] = {"studies": str(root), "seed": seed, "bundles": {}}
    with tempfile.TemporaryDirectory(prefix="medxfer-studies-") as scratch, atomic_directory(root) as tmp:
        datastore = LocalDatastore(str(tmp), extensions=list(STUDY_EXTENSIONS), auto_reload=False)
        for task_index, task in enumerate(STUDY_TASKS):
            n = counts[task.bundle]
            cases = _GENERATORS[task.prefix](Path(scratch) / task.prefix, n, sizes[task.prefix], seed) if n else []
            labelled = _labelled_indices(n, labelled_fraction, seed, task_index)
            _add_task(datastore, task, cases, labelled, Path(scratch))
            summary["bundles"][task.bundle] = {"prefix": task.prefix, "images": n, "labelled": len(labelled)}
        summary["images"] = sum(entry["images"] for entry in summary["bundles"].values())
        summary["labelled"] = sum(entry["labelled"] for entry in summary["bundles"].values())
        (tmp / ".lock").unlink(missing_ok=True)  # LocalDatastore's file lock; the server makes its own
        marker = {"made_by": "common.label.studies", "format": 1, "labelled_fraction": labelled_fraction,
                  "summary": summary}  # fmt: skip
        atomic_write_json(tmp / STUDIES_MARKER, marker)
    logger.info("studies: %d images (%d labelled) in %s, %.1f s", summary["images"], summary["labelled"], root,
                time.perf_counter() - started)  # fmt: skip
    return summary
