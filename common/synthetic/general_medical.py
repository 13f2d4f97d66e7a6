"""Synthetic sources for the embedded stage-2 dataset that no public-layout generator writes.

* :func:`write_synthetic_chestmnist`: a ChestMNIST-style ``.npz`` (grey, 14 multi-hot NIH labels) rendered by the
  chest X-ray generator, so its findings merge with a ChestX-ray14 source's (``xray/Effusion`` ...).
* :func:`write_synthetic_mammo_folder`: ``root/<benign|malignant>/*.dcm`` 16-bit DICOM mammograms, a class-folder
  source whose label is the appearance of its finding (round mass / coarse calcifications vs spiculated mass /
  clustered micro-calcifications).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import yaml
from pydicom.uid import generate_uid

from common.data.general_medical import build_general_datalist
from common.errors import ConfigError
from common.io import atomic_directory, atomic_save, atomic_write_text
from common.synthetic.cxr import render_chest, sample_cases
from common.synthetic.embedded import make_embedded_dataset
from common.synthetic.mammo import write_mammogram_dicom
from common.synthetic.mammo_render import FINDING_KINDS, MammoFinding, render_mammogram

__all__ = [
    "make_general_medical_dataset",
    "write_synthetic_chestmnist",
    "write_synthetic_mammo_folder",
    "MAMMO_FOLDER_CLASSES",
]

logger = logging.getLogger(__name__)

MAMMO_FOLDER_CLASSES = ("benign", "malignant")
_NPZ_SPLITS = (("train", 0.7), ("val", 0.15), ("test", 0.15))


def write_synthetic_chestmnist(
    path: str | os.PathLike, n_images: int = 60, image_size: int = 28, seed: int = 0, prevalence: float = 0.25
) -> Path:
    """Write a ChestMNIST-layout npz: ``{train,val,test}_images`` (N x S x S uint8) and ``_labels`` (N x 14 uint8).

    Args:
        path: the ``.npz`` file to write.
        n_images: images over the three splits (70 / 15 / 15 %, each at least one).
        image_size: side in pixels (MedMNIST uses 28, 64, 128 or 224).
        seed: seed of labels and pixels.
        prevalence: probability of each finding per image.

    Raises:
        ConfigError: fewer than 3 images.
    """
    if n_images < 3:
        raise ConfigError(f"a synthetic ChestMNIST file needs n_images >= 3 (one per split), got {n_images}")
    cases = sample_cases(n_images, (1, 1), prevalence, seed)
    counts = [max(1, round(n_images * fraction)) for _, fraction in _NPZ_SPLITS[1:]]
    bounds = [0, n_images - sum(counts), n_images - counts[1], n_images]
    arrays: dict[str, np.ndarray] = {}
    for (prefix, _), start, stop in zip(_NPZ_SPLITS, bounds[:-1], bounds[1:], strict=True):
        chosen = cases[start:stop]
        arrays[f"{prefix}_images"] = np.stack([render_chest(case.labels, np.random.default_rng([seed, index]),
                                                            image_size) for index, case in enumerate(chosen, start)])
        arrays[f"{prefix}_labels"] = np.asarray([case.labels for case in chosen], dtype=np.uint8)
    out = Path(path)
    atomic_save(out, lambda tmp: np.savez_compressed(tmp, **arrays))
    logger.info("synthetic ChestMNIST: %d images of %d px in %s", n_images, image_size, out)
    return out


def write_synthetic_mammo_folder(
    root: str | os.PathLike, n_images: int = 24, image_size: int = 64, seed: int = 0
) -> Path:
    """Write ``root/benign/*.dcm`` and ``root/malignant/*.dcm``: one finding per mammogram, half of each class.

    Args:
        root: the class-folder root (replaced as a whole).
        n_images: images over both classes (at least 2).
        image_size: image height in pixels (at least 64; the width is three quarters of it).
        seed: seed of breasts, findings and pixels.

    Raises:
        ConfigError: fewer than 2 images or ``image_size < 64``.
    """
    if n_images < 2:
        raise ConfigError(f"a synthetic mammography folder needs n_images >= 2 (one per class), got {n_images}")
    out, rng = Path(root), np.random.default_rng(seed)
    with atomic_directory(out) as tmp:
        for index in range(n_images):
            malignant = index % 2 == 1
            laterality, view = str(rng.choice(["L", "R"])), str(rng.choice(["CC", "MLO"]))
            finding = MammoFinding(str(rng.choice(FINDING_KINDS)), malignant)
            pixels, _ = render_mammogram([finding], laterality, view, np.random.default_rng([seed, index]), image_size)
            name = f"MAMMO_{index:05d}"
            study, series, image = (generate_uid(entropy_srcs=[str(seed), name, part])
                                    for part in ("study", "series", "image"))  # fmt: skip
            write_mammogram_dicom(tmp / MAMMO_FOLDER_CLASSES[int(malignant)] / f"{name}.dcm", pixels, name,
                                  laterality, view, "", (study, series, image))  # fmt: skip
    logger.info("synthetic mammography folder: %d DICOMs in %s", n_images, out)
    return out


def make_general_medical_dataset(
    root: str | os.PathLike,
    seed: int = 0,
    image_size: int = 32,
    n_images: int = 48,
    val_fraction: float = 0.2,
    target: str = "class",
) -> Path:
    """Build a small embedded multi-source dataset in ``root`` and return its ``datalist.json``.

    Four synthetic sources of about ``n_images`` images each are written under ``root/sources/`` and listed in
    ``root/sources.yaml``: a ChestX-ray14-layout dataset (datalist, ``xray``, its test split left out), a BCSS
    dataset (segmentation datalist -> presence labels, ``histology``), a ChestMNIST npz (``xray``: merges with
    the ChestX-ray14 findings) and a ``benign`` / ``malignant`` folder of DICOM mammograms (``mammography``).
    With ``target="class"`` the classes are the 14 ``xray/`` findings, 5 ``histology/`` groups and 2
    ``mammography/`` classes, the default class list of the ``medical_general_pretraining`` bundle.

    Args:
        root: dataset folder (created).
        seed: seed of every generator and split (experiment grids pass it under ``generate``).
        image_size: chest and ChestMNIST side, BCSS tile side (at least 32) and mammogram height (at least 64).
        n_images: images per source, about.
        val_fraction: validation share drawn for sources without a validation split (``split``).
        target: ``"class"`` or ``"modality+class"`` (``split``).

    Example:
        >>> datalist = make_general_medical_dataset("/tmp/general", seed=0)  # doctest: +SKIP
        >>> datalist.name  # doctest: +SKIP
        'datalist.json'
    """
    out, sources = Path(root), Path(root) / "sources"
    make_embedded_dataset("chestxray14", sources / "chestxray14", {"n_patients": max(8, n_images // 2),
                          "image_size": image_size, "seed": seed}, {"val_fraction": 0.25, "seed": seed})  # fmt: skip
    make_embedded_dataset("bcss", sources / "bcss", {"n_patients": max(5, -(-n_images // 4)), "tiles_per_patient": 4,
                          "tile_size": max(32, image_size), "seed": seed},
                          {"val_fraction": 0.2, "test_fraction": 0.2, "seed": seed})  # fmt: skip
    write_synthetic_chestmnist(sources / "chestmnist.npz", n_images, image_size, seed + 1)
    write_synthetic_mammo_folder(sources / "mammography", n_images, max(64, image_size), seed)
    spec = [
        {"name": "chestxray14", "kind": "datalist", "path": "sources/chestxray14/datalist.json", "modality": "xray",
         "class_names": "chestxray14"},
        {"name": "bcss", "kind": "datalist", "path": "sources/bcss/datalist.json", "modality": "histology"},
        {"name": "chestmnist", "kind": "medmnist", "path": "sources/chestmnist.npz", "modality": "xray",
         "class_names": "chestmnist"},
        {"name": "mammography", "kind": "folder", "path": "sources/mammography", "modality": "mammography"},
    ]  # fmt: skip
    atomic_write_text(out / "sources.yaml", yaml.safe_dump({"sources": spec}, sort_keys=False))
    build_general_datalist(out / "sources.yaml", out, val_fraction=val_fraction, seed=seed, target=target)
    return out / "datalist.json"
