"""Read one stage-2 source into training / validation items with labels over the source's own classes.

A source's ``test`` split is never read into the result: stage 2 must not see the images a task bundle is later
tested on. Only its size is reported. Masks of segmentation datalists become image-level "class present" labels
here, once, at build time.
"""

from __future__ import annotations

import json
import logging
import math
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from common.data.chestmnist import _check_arrays, write_medmnist_split
from common.data.containment import DatasetDirGuard
from common.data.datalist import IMAGE_SUFFIXES
from common.data.general_medical_masks import mask_presence
from common.data.general_medical_spec import KNOWN_CLASS_SETS, SourceSpec
from common.data.splits import group_by_split, patient_split
from common.errors import ConfigError, DataError
from common.io import atomic_directory, atomic_write_text

__all__ = ["MEDMNIST_MARKER", "SOURCE_SPLITS", "SourceData", "read_source"]

logger = logging.getLogger(__name__)

#: Written into a medmnist source's PNG folder, so a rebuild only ever replaces a folder this module wrote.
MEDMNIST_MARKER = ".medxfer_medmnist_source"
#: The splits a source contributes to stage 2 (never ``test``).
SOURCE_SPLITS = ("training", "validation")


@dataclass
class SourceData:
    """A read source: its classes, whether an image can hold several, and its items per split.

    Items are ``{"image": absolute path, "label": [0/1/None per class], "patient_id": str}``.
    """

    spec: SourceSpec
    class_names: list[str]
    multi_label: bool
    splits: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    n_test_excluded: int = 0
    validation_drawn: bool = False


def _need_class_names(spec: SourceSpec, what: str) -> list[str]:
    if spec.class_names is None:
        raise ConfigError(f"source {spec.name!r} ({spec.path}): class names unknown for {what}; add class_names: "
                          f"[...] to the source (or a known set: {', '.join(KNOWN_CLASS_SETS)})")  # fmt: skip
    return list(spec.class_names)


def _check_label(label: Any, width: int, where: str) -> list[float | None]:
    if not isinstance(label, list) or len(label) != width:
        found = len(label) if isinstance(label, list) else type(label).__name__
        raise DataError(f"{where}: label has {found} values, want {width} (one per class name)")
    values = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in label]
    bad = [v for v in values if v is not None and (isinstance(v, bool) or v not in (0, 1))]
    if bad:
        raise DataError(f"{where}: label values must be 0, 1 or null (unknown), found {bad}")
    return [None if v is None else float(v) for v in values]


def _read_json_datalist(spec: SourceSpec) -> dict[str, Any]:
    if not spec.path.is_file():
        raise DataError(f"source {spec.name!r}: datalist not found (expected a JSON file): {spec.path}")
    try:
        content = json.loads(spec.path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"source {spec.name!r}: {spec.path} is not valid JSON ({err})") from err
    if not isinstance(content, dict) or not isinstance(content.get("training"), list):
        found = sorted(content) if isinstance(content, dict) else type(content).__name__
        raise DataError(f"source {spec.name!r}: {spec.path} has no 'training' list; found {found}")
    return content


def _check_contained(spec: SourceSpec, base: Path, rows: list[tuple[str, int, Any]]) -> None:
    """Refuse image / mask paths that resolve outside the source's folder (``../``, absolute, symlinks out)."""
    guard = DatasetDirGuard(base)
    for split, i, item in rows:
        for key in ("image", "label"):
            value = item[key]
            resolved = guard.outside(base / value) if isinstance(value, str) else None
            if resolved is not None:
                raise DataError(f"source {spec.name!r}: {spec.path}, {split}[{i}] {key!r} path {value!r} resolves to "
                                f"{resolved}, outside the source's folder {base}; set the source's base_dir to a "
                                "folder holding all its files, or pass allow_outside_dataset_dir=True to read_source "
                                "if the datalist is trusted")  # fmt: skip


def _read_datalist(spec: SourceSpec, allow_outside_dataset_dir: bool = False) -> SourceData:
    content = _read_json_datalist(spec)
    base = spec.base_dir if spec.base_dir is not None else spec.path.parent
    splits = {split: content.get(split) or [] for split in SOURCE_SPLITS}
    rows = [(split, i, item) for split in SOURCE_SPLITS for i, item in enumerate(splits[split])]
    if not splits["training"]:
        raise DataError(f"source {spec.name!r}: {spec.path} has no training item; it needs at least one image")
    for split, i, item in rows:
        if not isinstance(item, dict) or not isinstance(item.get("image"), str) or "label" not in item:
            raise DataError(f"source {spec.name!r}: {spec.path}, {split}[{i}] needs 'image' and 'label': {item!r}")
    if not allow_outside_dataset_dir:
        _check_contained(spec, base, rows)
    images = [base / item["image"] for _, _, item in rows]
    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        raise DataError(f"source {spec.name!r}: {len(missing)} image(s) listed in {spec.path} not found "
                        f"(base_dir {base}), e.g. {missing[:3]}")  # fmt: skip
    is_mask = [isinstance(item["label"], str) for _, _, item in rows]
    if any(is_mask) and not all(is_mask):
        raise DataError(f"source {spec.name!r}: {spec.path} mixes mask paths and label lists in 'label'")
    if all(is_mask) and rows:
        class_names, labels = mask_presence(spec, [base / item["label"] for _, _, item in rows], base)
    else:
        if spec.class_map is not None:
            raise ConfigError(f"source {spec.name!r}: class_map applies to segmentation datalists (mask paths in "
                              f"'label') only; {spec.path} holds label lists")  # fmt: skip
        recorded = content.get("class_names")
        if spec.class_names is None and isinstance(recorded, list) and recorded:
            spec = replace(spec, class_names=tuple(str(n) for n in recorded))
        class_names = _need_class_names(spec, f"the classification datalist {spec.path}")
        labels = [_check_label(item["label"], len(class_names), f"source {spec.name!r}: {spec.path}, {split}[{i}] "
                               f"({item['image']})") for split, i, item in rows]  # fmt: skip
    data = SourceData(spec, class_names, multi_label=True, n_test_excluded=len(content.get("test") or []))
    for split in SOURCE_SPLITS:
        data.splits[split] = []
    for (split, _, item), image, label in zip(rows, images, labels, strict=True):
        data.splits[split].append({"image": str(image), "label": label, "patient_id": str(item.get("patient_id", ""))})
    return data


def _medmnist_labels(labels: np.ndarray, class_names: list[str], where: str) -> tuple[np.ndarray, bool]:
    """(multi-hot / one-hot float labels, multi_label) from MedMNIST N x L or N x 1 class-index labels."""
    width = len(class_names)
    labels = labels.reshape(-1, 1) if labels.ndim == 1 else labels
    if labels.ndim == 2 and labels.shape[1] == 1 and width > 1:
        index = labels[:, 0]
        if not np.all((index >= 0) & (index < width) & (index == np.round(index))):
            raise DataError(f"{where}: class indices must be integers 0..{width - 1} (one per class name), found "
                            f"{sorted(set(index.tolist()) - set(range(width)))[:5]}")  # fmt: skip
        return np.eye(width, dtype=np.float64)[index.astype(np.int64)], False
    if labels.ndim != 2 or labels.shape[1] != width:
        raise DataError(f"{where}: labels of shape {labels.shape} do not fit {width} class names; expected N x "
                        f"{width} (multi-label) or N x 1 class indices (multi-class)")  # fmt: skip
    if not np.isin(labels, (0, 1)).all():
        raise DataError(f"{where}: multi-label values must be 0 or 1, found {sorted(set(labels.ravel().tolist()))[:5]}")
    return labels.astype(np.float64), True


def _read_medmnist(spec: SourceSpec, output_dir: Path) -> SourceData:
    class_names = _need_class_names(spec, f"the MedMNIST file {spec.path}")
    if not spec.path.is_file():
        raise DataError(f"source {spec.name!r}: MedMNIST file not found: {spec.path}")
    folder = output_dir / spec.name
    if folder.exists() and not (folder / MEDMNIST_MARKER).is_file():
        raise DataError(f"source {spec.name!r}: {folder} exists and was not written for a medmnist source; refusing "
                        "to replace it (rename the source or choose another output folder)")  # fmt: skip
    try:
        archive = np.load(spec.path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DataError(f"source {spec.name!r}: cannot read MedMNIST file {spec.path}: {err}") from err
    data = SourceData(spec, class_names, multi_label=True)
    with archive, atomic_directory(folder) as tmp:
        if "train_images" not in archive.files:
            raise DataError(f"source {spec.name!r}: {spec.path} has no key 'train_images'; found "
                            f"{sorted(archive.files)}")  # fmt: skip
        # The test arrays are never decompressed: only their label count is reported.
        data.n_test_excluded = len(archive["test_labels"]) if "test_labels" in archive.files else 0
        for prefix, split in (("train", "training"), ("val", "validation")):
            if f"{prefix}_images" not in archive.files and f"{prefix}_labels" not in archive.files:
                data.splits[split] = []  # no validation arrays: drawn from training below
                continue
            for key in (f"{prefix}_images", f"{prefix}_labels"):
                if key not in archive.files:
                    raise DataError(f"source {spec.name!r}: {spec.path} has no key {key!r}; found "
                                    f"{sorted(archive.files)}")  # fmt: skip
            images, raw = archive[f"{prefix}_images"], archive[f"{prefix}_labels"]
            where = f"source {spec.name!r}: {spec.path}, key '{prefix}_labels'"
            labels, data.multi_label = _medmnist_labels(raw, class_names, where)
            _check_arrays(images, labels, prefix, spec.path, len(class_names))
            items = write_medmnist_split(images, labels, prefix, tmp)
            data.splits[split] = [{**item, "image": str(folder / Path(item["image"]).name)} for item in items]
        atomic_write_text(tmp / MEDMNIST_MARKER, f"PNGs of source {spec.name!r} from {spec.path}\n")
    return data


def _read_folder(spec: SourceSpec) -> SourceData:
    root = spec.path
    if not root.is_dir():
        raise DataError(f"source {spec.name!r}: class folder root not found: {root}")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    class_names = list(spec.class_names) if spec.class_names is not None else found
    if not class_names:
        raise DataError(f"source {spec.name!r}: no class folders in {root}; expected {root}/<class name>/<images>")
    ignored = sorted(set(found) - set(class_names))
    if ignored:
        logger.warning("source %r: folders %s in %s are not in class_names and are ignored", spec.name, ignored, root)
    items = []
    for index, name in enumerate(class_names):
        folder = root / name
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES) \
            if folder.is_dir() else []  # fmt: skip
        if not files:
            raise DataError(f"source {spec.name!r}: class folder {folder} is missing or holds no image "
                            f"({', '.join(IMAGE_SUFFIXES)})")  # fmt: skip
        label = [1.0 if i == index else 0.0 for i in range(len(class_names))]
        items += [{"image": str(p), "label": label, "patient_id": str(p.relative_to(root))} for p in files]
    return SourceData(spec, class_names, multi_label=False, splits={"training": items, "validation": []})


def _draw_validation(data: SourceData, val_fraction: float, seed: int) -> None:
    """Seeded split of the training items: by patient for items naming one (our datalists do), else by image."""
    items = data.splits["training"]
    ids = [item["patient_id"] or item["image"] for item in items]
    assignment = patient_split(ids, {"training": 1.0 - val_fraction, "validation": val_fraction}, seed)
    data.splits = group_by_split(items, assignment, list(SOURCE_SPLITS))
    data.validation_drawn = True


def read_source(
    spec: SourceSpec, output_dir: Path, val_fraction: float, seed: int, *, allow_outside_dataset_dir: bool = False
) -> SourceData:
    """Read ``spec`` into training / validation items; draw validation (seeded) when the source has none.

    Args:
        spec: the checked source.
        output_dir: the general dataset's folder (a medmnist source writes its PNGs to ``output_dir/<name>/``).
        val_fraction: fraction of the source's training images (or patients) drawn as validation when it has
            no validation split of its own.
        seed: seed of that draw.
        allow_outside_dataset_dir: accept a ``datalist`` source whose image or mask paths resolve outside its
            folder (``base_dir``, else the datalist's folder); refused by default, as in
            :func:`common.data.datalist.load_datalist`.

    Raises:
        ConfigError: class names unknown where they are needed.
        DataError: missing or unreadable files, paths outside a datalist source's folder, wrong label widths or
            values, no training item.
    """
    reader = {"datalist": lambda: _read_datalist(spec, allow_outside_dataset_dir),
              "medmnist": lambda: _read_medmnist(spec, output_dir), "folder": lambda: _read_folder(spec)}[spec.kind]
    data = reader()
    if not data.splits.get("validation"):
        _draw_validation(data, val_fraction, seed)
    if not data.splits["training"]:
        raise DataError(f"source {spec.name!r} ({spec.path}) has no training item; it needs at least one image")
    logger.info("source %r (%s, %s): %d training, %d validation%s; %d test item(s) left out (stage 2 never sees "
                "a task's test split)", spec.name, spec.kind, spec.modality, len(data.splits["training"]),
                len(data.splits["validation"]), " (drawn here)" if data.validation_drawn else "",
                data.n_test_excluded)  # fmt: skip
    return data
