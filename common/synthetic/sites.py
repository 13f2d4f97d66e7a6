"""Synthetic hospitals for federated learning: the chest generator seen through different scanners.

Each site is a complete ChestX-ray14-layout folder (``images/``, ``Data_Entry_2017.csv``, split lists,
``BBox_List_2017.csv``, ``datalist.json`` from the real adapter), drawn by :mod:`common.synthetic.cxr` and then
passed through the site's :class:`ScannerProfile`: a gamma curve, a contrast / brightness change and additive
detector noise, plus its own finding prevalence. Patient ids are disjoint by construction (site ``k`` numbers its
patients from ``k * 100000 + 1``) and checked after the datalists are built (:func:`check_patients_disjoint`), so a
patient is at one site only.

Default shift (:data:`DEFAULT_SITES`): ``site-1`` is a clean, high-prevalence referral hospital; ``site-2`` a
community hospital with a noisier, flatter, brighter scanner and a third of the prevalence, where a model trained
at one site alone transfers poorly and federation helps.

Example:
    >>> manifest = generate_sites("/tmp/fl_data", n_patients=40, image_size=64)  # doctest: +SKIP
    >>> sorted(manifest["sites"])  # doctest: +SKIP
    ['site-1', 'site-2']
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from common.data.chestxray14 import load_chestxray14_datalist
from common.data.chestxray14_boxes import BBOX_CSV_NAME, FindingBox, format_bbox_list
from common.data.splits import group_by_split, patient_split
from common.errors import ConfigError, DataError
from common.io import atomic_directory, atomic_write_json, atomic_write_text
from common.synthetic.cxr import _data_entry_text, render_chest_with_boxes, sample_cases

__all__ = ["DEFAULT_SITES", "ScannerProfile", "add_sites_parser", "apply_scanner", "check_patients_disjoint",
           "generate_sites"]

logger = logging.getLogger(__name__)

#: site k numbers its patients from k * PATIENT_ID_STRIDE + 1 (8-digit NIH image names allow 999 sites)
PATIENT_ID_STRIDE = 100_000


@dataclass(frozen=True)
class ScannerProfile:
    """One site's acquisition: intensity curve, contrast, brightness, detector noise, and finding prevalence.

    Pixel values ``x`` in [0, 1] become ``clip(((x ** gamma) - 0.5) * contrast + 0.5 + brightness + noise)``,
    ``noise ~ N(0, noise_sd)`` per pixel.

    Example:
        >>> ScannerProfile(gamma=0.7, noise_sd=0.05).gamma
        0.7
    """

    gamma: float = 1.0
    contrast: float = 1.0
    brightness: float = 0.0
    noise_sd: float = 0.0
    prevalence: float = 0.25

    def __post_init__(self) -> None:
        if self.gamma <= 0 or self.contrast <= 0 or self.noise_sd < 0:
            raise ConfigError(f"scanner needs gamma > 0, contrast > 0, noise_sd >= 0; got {self}")
        if not 0.0 <= self.prevalence <= 1.0:
            raise ConfigError(f"scanner prevalence must lie in [0, 1], got {self.prevalence}")


DEFAULT_SITES: dict[str, ScannerProfile] = {
    "site-1": ScannerProfile(gamma=1.0, contrast=1.0, brightness=0.0, noise_sd=0.0, prevalence=0.3),
    "site-2": ScannerProfile(gamma=0.6, contrast=0.7, brightness=0.08, noise_sd=0.06, prevalence=0.1),
}


def apply_scanner(image: np.ndarray, scanner: ScannerProfile, rng: np.random.Generator) -> np.ndarray:
    """``image`` (uint8) as ``scanner`` would record it (uint8, same shape).

    Example:
        >>> img = np.full((4, 4), 128, np.uint8)
        >>> int(apply_scanner(img, ScannerProfile(brightness=0.1), np.random.default_rng(0))[0, 0])
        154
    """
    x = image.astype(np.float32) / 255.0
    x = (np.power(x, scanner.gamma) - 0.5) * scanner.contrast + 0.5 + scanner.brightness
    if scanner.noise_sd:
        x = x + rng.normal(0.0, scanner.noise_sd, x.shape).astype(np.float32)
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _write_site(root: Path, index: int, scanner: ScannerProfile, n_patients: int, image_size: int, seed: int,
                test_fraction: float) -> None:
    cases = [replace(c, patient_id=c.patient_id + index * PATIENT_ID_STRIDE,
                     image=f"{c.patient_id + index * PATIENT_ID_STRIDE:08d}_{c.follow_up:03d}.png")
             for c in sample_cases(n_patients, (1, 2), scanner.prevalence, seed)]
    assignment = patient_split([str(c.patient_id) for c in cases], {"train_val": 1 - test_fraction,
                                                                     "test": test_fraction}, seed)
    groups = group_by_split(cases, assignment, ["train_val", "test"])
    if not groups["train_val"] or not groups["test"]:
        raise ConfigError(f"{n_patients} patient(s) per site leave a split of {root} empty; add patients")
    boxes: list[FindingBox] = []
    with atomic_directory(root / "images") as image_dir:
        for case in cases:
            rng = np.random.default_rng([seed, case.patient_id, case.follow_up])
            image, signs = render_chest_with_boxes(case.labels, rng, image_size)
            if not cv2.imwrite(str(image_dir / case.image), apply_scanner(image, scanner, rng)):
                raise DataError(f"could not write {image_dir / case.image}")
            boxes.extend(FindingBox(case.image, name, *box) for name, box in signs)
    atomic_write_text(root / "Data_Entry_2017.csv", _data_entry_text(cases, image_size))
    atomic_write_text(root / BBOX_CSV_NAME, format_bbox_list(boxes))
    for split, name in (("train_val", "train_val_list.txt"), ("test", "test_list.txt")):
        atomic_write_text(root / name, "".join(f"{c.image}\n" for c in groups[split]))


def check_patients_disjoint(datalists: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]]) -> None:
    """Raise :class:`DataError` naming the patient and both sites when a patient appears at two sites.

    Example:
        >>> check_patients_disjoint({"a": {"training": [{"patient_id": "1"}]}, "b": {"test": [{"patient_id": "2"}]}})
    """
    owner: dict[str, str] = {}
    for site, datalist in datalists.items():
        for items in datalist.values():
            for item in items:
                patient = str(item.get("patient_id"))
                if owner.setdefault(patient, site) != site:
                    raise DataError(f"patient {patient} appears at sites {owner[patient]!r} and {site!r}; "
                                    "a patient must belong to one site only")


def generate_sites(output_dir: str | os.PathLike, n_patients: int = 60, image_size: int = 128, seed: int = 0,
                   sites: Mapping[str, ScannerProfile] | None = None, val_fraction: float = 0.2,
                   test_fraction: float = 0.25) -> dict[str, Any]:
    """Write one ChestX-ray14-layout folder + ``datalist.json`` per site under ``output_dir``; ``sites.json``.

    Args:
        output_dir: parent folder; site ``s`` goes to ``output_dir/s``.
        n_patients: patients per site.
        image_size: PNG side in pixels.
        seed: seed of the draw (site ``k`` uses ``seed * 1000 + k``).
        sites: site name -> scanner (default :data:`DEFAULT_SITES`).
        val_fraction: validation share of each site's train_val patients.
        test_fraction: test share of each site's patients.

    Returns:
        The manifest: per site its folder, datalist (absolute paths), scanner, split sizes. ``sites.json`` holds the
        same with the folder and datalist relative to ``output_dir``, so it stays right when the folder is moved.

    Raises:
        ConfigError: bad counts / fractions / scanner values. DataError: a patient at two sites.
    """
    profiles = dict(sites or DEFAULT_SITES)
    if not profiles:
        raise ConfigError("generate_sites needs at least one site")
    root = Path(output_dir)
    datalists, manifest = {}, {"seed": seed, "image_size": image_size, "sites": {}}
    for index, (name, scanner) in enumerate(profiles.items(), start=1):
        _write_site(root / name, index, scanner, n_patients, image_size, seed * 1000 + index, test_fraction)
        datalist = load_chestxray14_datalist(root / name, val_fraction=val_fraction, seed=seed)
        atomic_write_json(root / name / "datalist.json", datalist)
        datalists[name] = datalist
        manifest["sites"][name] = {"dataset_dir": str(root / name), "datalist": str(root / name / "datalist.json"),
                                   "scanner": asdict(scanner), **{k: len(v) for k, v in datalist.items()}}
    check_patients_disjoint(datalists)
    relative = {name: {**info, "dataset_dir": name, "datalist": f"{name}/datalist.json"}
                for name, info in manifest["sites"].items()}
    atomic_write_json(root / "sites.json", {**manifest, "sites": relative})
    logger.info("synthetic sites %s under %s", ", ".join(profiles), root)
    return manifest


def _generate_sites_command(args: argparse.Namespace) -> None:
    manifest = generate_sites(args.output_dir, n_patients=args.patients, image_size=args.image_size, seed=args.seed)
    sites = ",".join(f"{name}={info['datalist']}" for name, info in manifest["sites"].items())
    sys.stdout.write(f"wrote {len(manifest['sites'])} synthetic sites to {args.output_dir}\n"
                     f"federate them with: python -m common.federated simulate --sites {sites} --bundle ...\n")


def add_sites_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``sites`` to ``python -m common generate-data``'s sub-commands (handler set as ``func``).

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> sub = add_sites_parser(parser.add_subparsers(dest="dataset"))
        >>> parser.parse_args(["sites", "--output-dir", "/tmp/s"]).patients
        60
    """
    sites = subparsers.add_parser("sites", help="two synthetic hospitals (chest radiographs, different scanners and "
                                                "prevalence, disjoint patients) for federated learning")
    sites.add_argument("--output-dir", required=True, type=Path)
    sites.add_argument("--patients", type=int, default=60, help="patients per site")
    sites.add_argument("--image-size", type=int, default=128)
    sites.add_argument("--seed", type=int, default=0)
    sites.set_defaults(func=_generate_sites_command)
    return sites
