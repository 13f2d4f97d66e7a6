"""Image-level labels from segmentation masks: a class is present when at least one pixel of the image shows it.

Value 0 (BCSS ``outside_roi``, and ``exclude`` through the BCSS look-up table) is "don't care", never a class.
An image whose mask holds no class pixel at all was not annotated, so all its labels are unknown (None), not
negative.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from common.data.bcss import validate_bcss_masks
from common.data.bcss_codes import BCSS_DEFAULT_CLASS_MAP, build_code_lookup, load_bcss_codes
from common.data.general_medical_spec import SourceSpec
from common.data.masks import mask_value_counts
from common.errors import ConfigError, DataError

__all__ = ["mask_presence"]


def _index_counts(spec: SourceSpec, masks: Sequence[Path], n_classes: int) -> list[np.ndarray]:
    """Pixel count of each value 0..K per mask whose value ``i`` is class ``i`` (1..K)."""
    counts = []
    for path in masks:
        counts.append(mask_value_counts(path, f"source {spec.name!r}", n_classes,
                                        f"0 (ignored) .. {n_classes} (mask_codes 'index': one per class name)"))
    return counts


def _bcss_counts(spec: SourceSpec, masks: Sequence[Path], base: Path) -> tuple[list[str], list[np.ndarray]]:
    """Class names (the class_map groups) and per-mask pixel counts of ignore + each group."""
    class_map = spec.class_map if spec.class_map is not None else BCSS_DEFAULT_CLASS_MAP
    names = list(class_map)
    if spec.class_names is not None and list(spec.class_names) != names:
        raise ConfigError(f"source {spec.name!r}: class_names {list(spec.class_names)} differ from the class_map "
                          f"groups {names}; with mask_codes 'bcss' the groups are the classes (drop class_names or "
                          "use mask_codes 'index')")  # fmt: skip
    codes = load_bcss_codes(base)
    try:
        lut = build_code_lookup(codes, class_map)
        per_code = validate_bcss_masks(masks, codes)
    except ConfigError as err:
        raise ConfigError(f"source {spec.name!r}: {err}") from err
    except DataError as err:
        raise DataError(f"source {spec.name!r}: {err}") from err
    counts = [np.bincount(lut, weights=per_code[str(path)], minlength=len(names) + 1) for path in masks]
    return names, counts


def mask_presence(spec: SourceSpec, masks: Sequence[Path], base: Path) -> tuple[list[str], list[list[float | None]]]:
    """Read every mask once and return the class names and one presence label per mask.

    Args:
        spec: the source (``mask_codes``, ``class_map``, ``class_names``).
        masks: mask files, in item order.
        base: the datalist's base folder (a BCSS ``meta/gtruth_codes.tsv`` there is used).

    Returns:
        ``(class_names, labels)``: ``labels[i][c]`` is 1.0 when mask ``i`` has a pixel of class ``c``, else 0.0;
        all None when the mask has no class pixel.

    Raises:
        ConfigError: bad ``class_map``, ``class_names`` missing for ``mask_codes: index`` or not matching
            the ``class_map`` groups.
        DataError: a missing or unreadable mask, or values outside the expected codes (naming the file).
    """
    missing = [str(path) for path in masks if not path.is_file()]
    if missing:
        raise DataError(f"source {spec.name!r}: {len(missing)} mask(s) not found, e.g. {missing[:3]}")
    if spec.mask_codes == "index":
        if spec.class_names is None:
            raise ConfigError(f"source {spec.name!r}: mask_codes 'index' needs class_names (mask value i = class i)")
        names, counts = list(spec.class_names), _index_counts(spec, masks, len(spec.class_names))
    else:
        names, counts = _bcss_counts(spec, masks, base)
    labels: list[list[float | None]] = []
    for count in counts:
        present = np.asarray(count[1:]) > 0
        labels.append(present.astype(float).tolist() if present.any() else [None] * len(names))
    return names, labels
