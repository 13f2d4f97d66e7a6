"""Stage-2 "general medical" pretraining data: many sources, one multi-label datalist with balanced sampling.

Two-stage transfer learning trains a backbone on ImageNet (stage 1), then on a broad mix of medical images
(stage 2, this dataset and the ``medical_general_pretraining`` bundle), then on the target task. The builder
merges any number of sources (see :mod:`common.data.general_medical_spec` for the sources file):

* **Classes** are identified by ``(modality, class name)`` and named ``"modality/class"`` (``"xray/Effusion"``),
  so the same finding from ChestX-ray14 and ChestMNIST is one output. Each item's ``label`` is a multi-hot list
  over the union, with ``null`` (NaN once loaded) for every class its source does not annotate;
  ``MaskedBCEWithLogitsLoss`` and ``MultilabelAUC`` skip those. ``target="modality+class"`` appends one-hot
  ``"modality:<name>"`` outputs, known for every item.
* **Test splits are never included**: a source's ``test`` items (and a MedMNIST file's ``test_*`` arrays) are
  left out and only counted, so stage 2 never sees the images a task bundle is later tested on. A source without
  a validation split gets one drawn with ``val_fraction`` (seeded; by patient for items that name one, as our
  datalists do, else by image: class folders and MedMNIST have no patient identifiers, so images of one patient
  may then fall on both sides).
* **Sampling**: items carry ``source``, ``modality``, ``category`` and ``weight`` (see
  :mod:`common.data.general_medical_sampling`; computed per split, so each split's weights sum to 1); the table
  of the training shares is stored under ``"sampling"`` and logged.

Image paths are stored relative to ``output_dir`` (``../`` included) when possible, absolute otherwise.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from common.data.datalist import MissingInputs
from common.data.general_medical_sampling import (
    balanced_weights,
    format_sampling_table,
    item_categories,
    sampling_report,
)
from common.data.general_medical_sources import MEDMNIST_MARKER, SOURCE_SPLITS, SourceData, read_source
from common.data.general_medical_spec import SourceSpec, parse_sources, read_sources
from common.errors import ConfigError, DataError
from common.io import atomic_write_json, make_directory
from common.staging import atomic_entries

__all__ = ["GENERAL_TARGETS", "build_general_datalist", "read_class_names", "write_class_names",
           "sampling_weights"]  # fmt: skip

logger = logging.getLogger(__name__)

GENERAL_TARGETS = ("class", "modality+class")


def _relative(path: str, base: Path) -> str:
    try:
        return os.path.relpath(os.path.abspath(path), os.path.abspath(base)).replace(os.sep, "/")
    except ValueError:  # another drive on Windows: no relative path exists
        return os.path.abspath(path)


def _check_arguments(val_fraction: float, target: str) -> None:
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    if target not in GENERAL_TARGETS:
        raise ConfigError(f"unknown target {target!r}; choose from: {', '.join(GENERAL_TARGETS)}")


def _merge(data: Sequence[SourceData], output_dir: Path, target: str) -> dict[str, Any]:
    """The datalist splits and class names from the read sources (labels mapped onto the class union)."""
    keys: list[tuple[str, str]] = []
    for source in data:
        keys += [key for key in ((source.spec.modality, n) for n in source.class_names) if key not in keys]
    modalities = list(dict.fromkeys(source.spec.modality for source in data))
    index = {key: i for i, key in enumerate(keys)}
    merged: dict[str, Any] = {split: [] for split in SOURCE_SPLITS}
    for source in data:
        spec, positions = source.spec, [index[(source.spec.modality, n)] for n in source.class_names]
        rows = [(split, item) for split in SOURCE_SPLITS for item in source.splits[split]]
        categories = item_categories([item["label"] for _, item in rows], source.class_names)
        for (split, item), category in zip(rows, categories, strict=True):
            label: list[float | None] = [None] * len(keys)
            for position, value in zip(positions, item["label"], strict=True):
                label[position] = value
            if target == "modality+class":
                label += [1.0 if modality == spec.modality else 0.0 for modality in modalities]
            image = _relative(item["image"], output_dir)
            merged[split].append({"image": image, "label": label, "source": spec.name, "modality": spec.modality,
                                  "category": category, "patient_id": f"{spec.name}:{item['patient_id'] or image}"})
    merged["class_names"] = [f"{m}/{n}" for m, n in keys] + (
        [f"modality:{m}" for m in modalities] if target == "modality+class" else [])  # fmt: skip
    merged["modalities"] = modalities
    return merged


def _check_medmnist_folders(specs: Sequence[SourceSpec], out: Path) -> None:
    """A medmnist source replaces ``out/<name>/``: only ever a folder written for one (it holds the marker)."""
    for spec in specs:
        folder = out / spec.name
        if spec.kind == "medmnist" and folder.exists() and not (folder / MEDMNIST_MARKER).is_file():
            raise DataError(f"source {spec.name!r}: {folder} exists and was not written for a medmnist source; "
                            "refusing to replace it (rename the source or choose another output folder)")  # fmt: skip


def _moved(data: SourceData, staging: Path, out: Path) -> SourceData:
    """``data`` with the image paths its reader wrote under ``staging`` pointing to where they will be, ``out``."""
    base = str(staging) + os.sep
    for items in data.splits.values():
        for item in items:
            if item["image"].startswith(base):
                item["image"] = str(out / item["image"][len(base):])
    return data


def _source_summary(source: SourceData) -> dict[str, Any]:
    spec = source.spec
    return {"name": spec.name, "kind": spec.kind, "path": str(spec.path), "modality": spec.modality,
            "class_names": source.class_names, "multi_label": source.multi_label,
            "training": len(source.splits["training"]), "validation": len(source.splits["validation"]),
            "validation_drawn": source.validation_drawn, "test_excluded": source.n_test_excluded}  # fmt: skip


def build_general_datalist(
    sources: Sequence[Mapping[str, Any] | SourceSpec] | str | os.PathLike,
    output_dir: str | os.PathLike,
    val_fraction: float = 0.1,
    seed: int = 0,
    target: str = "class",
) -> dict[str, Any]:
    """Merge ``sources`` into one weighted multi-label datalist and write ``output_dir/datalist.json`` atomically.

    ``datalist.json`` and the PNG folders of medmnist sources are replaced together
    (:func:`common.staging.atomic_entries`): if a source fails, the previous build stays whole.

    Args:
        sources: source mappings (see :mod:`common.data.general_medical_spec`), or the path of a sources file
            (YAML/JSON; its relative paths start at its folder).
        output_dir: folder receiving ``datalist.json`` (and ``<source name>/`` PNGs of medmnist sources).
        val_fraction: share of a source's training images (patients) drawn as validation when it has no
            validation split.
        seed: seed of those draws.
        target: ``"class"`` (the class union) or ``"modality+class"`` (plus one-hot modality outputs).

    Returns:
        The datalist: ``training`` / ``validation`` items ``{"image", "label", "source", "modality", "category",
        "weight", "patient_id"}`` and ``class_names``, ``modalities``, ``target``, ``sources`` (per-source counts,
        the left-out test items included) and ``sampling`` (the training report rows). No ``test`` split.

    Raises:
        ConfigError: bad arguments or sources, class names unknown where needed.
        DataError: missing files or folders, unreadable data, wrong label widths, a source without items
            (the message names the source and the file).
        OutputError: ``output_dir`` cannot be written (nothing in it changed).

    Example:
        >>> datalist = build_general_datalist("sources.yaml", "/data/general_medical")  # doctest: +SKIP
        >>> datalist["class_names"][:2]  # doctest: +SKIP
        ['xray/Atelectasis', 'xray/Cardiomegaly']
    """
    _check_arguments(val_fraction, target)
    specs = read_sources(sources) if isinstance(sources, str | os.PathLike) else parse_sources(sources)
    absent = [spec for spec in specs if not spec.path.exists()]
    if absent:  # checked up front, before any source writes files
        raise DataError(f"source {absent[0].name!r}: {absent[0].kind} path not found: {absent[0].path}")
    out = make_directory(output_dir)
    _check_medmnist_folders(specs, out)
    # The PNG folders of medmnist sources and datalist.json change together: a failing source, or a crash,
    # never leaves new PNGs under an old datalist (same file names, other images).
    with atomic_entries(out) as staging:
        data = [_moved(read_source(spec, staging, val_fraction, seed), staging, out) for spec in specs]
        datalist = _merge(data, out, target)
        if not datalist["validation"]:
            raise DataError(f"no source has a validation item; raise val_fraction (now {val_fraction}) or add "
                            "images")  # fmt: skip
        for split in SOURCE_SPLITS:
            for item, weight in zip(datalist[split], balanced_weights(datalist[split]), strict=True):
                item["weight"] = weight
        datalist |= {"target": target, "val_fraction": val_fraction, "seed": seed,
                     "sources": [_source_summary(source) for source in data],
                     "sampling": sampling_report(datalist["training"])}  # fmt: skip
        atomic_write_json(staging / "datalist.json", datalist)
    logger.info("general medical datalist %s: %d classes, %d training / %d validation items from %d sources; "
                "training draws:\n%s", out / "datalist.json", len(datalist["class_names"]), len(datalist["training"]),
                len(datalist["validation"]), len(data), format_sampling_table(datalist["sampling"]))  # fmt: skip
    return datalist


def read_class_names(path: str | os.PathLike, default: Sequence[str] | None = None) -> list[str]:
    """The ``class_names`` list of a JSON file: a general datalist, or ``models/class_names.json`` of a bundle.

    Args:
        path: the JSON file.
        default: returned (with a warning) when the file does not exist; None makes a missing file an error.

    Raises:
        DataError: missing file (without ``default``), invalid JSON, no non-empty ``class_names`` list of strings.

    Example:
        >>> read_class_names("/data/general_medical/datalist.json")[:1]  # doctest: +SKIP
        ['xray/Atelectasis']
    """
    file = Path(path)
    if not file.is_file():
        if default is not None:
            logger.warning("%s not found: using the %d default class names", file, len(default))
            return list(default)
        raise DataError(f"class names file not found: {file}; build the datalist with `python -m common "
                        "prepare-data general-medical --sources SOURCES --output DIR`")  # fmt: skip
    try:
        content = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{file}: not valid JSON ({err})") from err
    names = content.get("class_names") if isinstance(content, dict) else None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise DataError(f"{file}: expected a non-empty 'class_names' list of strings (a general medical datalist); "
                        f"found {type(names).__name__ if names is not None else 'no class_names key'}")  # fmt: skip
    return names


def write_class_names(path: str | os.PathLike, class_names: Sequence[str]) -> Path:
    """Write ``{"class_names": [...]}`` atomically (kept beside a checkpoint, read by the inference config)."""
    return atomic_write_json(path, {"class_names": list(class_names)})


def sampling_weights(items: Sequence[Mapping[str, Any]]) -> list[float]:
    """The ``weight`` of every item, for ``torch.utils.data.WeightedRandomSampler``.

    A split whose datalist does not exist (:class:`~common.data.datalist.MissingInputs`, while a workflow is parsed
    without data) weighs 1 per placeholder item; its run stops at ``require_inputs`` before any item is drawn.

    Raises:
        DataError: an item without a positive finite ``weight`` (naming its image).
    """
    if isinstance(items, MissingInputs):
        return [1.0] * len(items)
    weights = []
    for index, item in enumerate(items):
        weight = item.get("weight")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight) or weight <= 0:
            raise DataError(f"item {index} ({item.get('image')}) has weight {weight!r}; expected a positive number "
                            "(build the datalist with `python -m common prepare-data general-medical`)")  # fmt: skip
        weights.append(float(weight))
    return weights
