"""Bootstrap resampling of a test set: images, or whole patients (a cluster bootstrap).

Images of one patient are not independent (same anatomy, same scanner, often the same findings): resampling
images treats them as if they were and gives intervals that are too narrow. When the images carry a patient
id, whole patients are drawn with replacement and each drawn patient brings all of its images (Field & Welsh
2007, "Bootstrapping clustered data"; the standard choice for patient-level inference on ChestX-ray14, whose
112,120 images come from 30,805 patients). A resample is expressed as per-image counts, which the weighted
rank AUC (:func:`common.metrics.classification.rank_auc`) takes directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from common.errors import DataError

__all__ = ["resample_counts", "resampling_unit"]


def resampling_unit(groups: Sequence[object] | None, n_items: int) -> tuple[np.ndarray | None, int]:
    """``(group index of each item, number of groups)``, or ``(None, n_items)`` when resampling items.

    Raises:
        DataError: ``groups`` does not have one entry per item, or an entry is empty.
    """
    if groups is None:
        return None, n_items
    values = [str(g) if g is not None else "" for g in groups]
    if len(values) != n_items:
        raise DataError(f"bootstrap groups: {len(values)} patient ids for {n_items} images")
    missing = [i for i, g in enumerate(values) if not g.strip()]
    if missing:
        raise DataError(f"bootstrap groups: image {missing[0]} has no patient id ({len(missing)} without)")
    _, codes = np.unique(np.asarray(values), return_inverse=True)
    return codes.reshape(-1), int(codes.max()) + 1


def resample_counts(rng: np.random.Generator, size: int, n_items: int, codes: np.ndarray | None = None,
                    n_groups: int | None = None) -> np.ndarray:
    """``(size, n_items)`` counts: how often each item is in each of ``size`` bootstrap resamples.

    Without ``codes`` every resample draws ``n_items`` items with replacement. With ``codes`` (each item's
    group index, see :func:`resampling_unit`) it draws ``n_groups`` groups with replacement and every item
    counts as often as its group was drawn.
    """
    units = n_items if codes is None else int(n_groups or 0)
    draws = rng.integers(0, units, size=(size, units)) + units * np.arange(size)[:, None]
    per_unit = np.bincount(draws.ravel(), minlength=size * units).reshape(size, units)
    return per_unit if codes is None else per_unit[:, codes]
