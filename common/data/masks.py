"""Read a label mask (one channel of integer codes) and count its pixels per code, with errors naming the file."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from common.errors import DataError

__all__ = ["mask_value_counts"]


def mask_value_counts(path: str | os.PathLike, owner: str, max_value: int, expected: str) -> np.ndarray:
    """Pixel count of every value ``0..max_value`` in the mask image at ``path``.

    Args:
        path: a single-channel PNG (or any format Pillow reads) of non-negative integer codes.
        owner: who reads it, the start of every error message (e.g. ``"BCSS"``, ``"source 'bcss'"``).
        max_value: the largest valid code.
        expected: what the codes should be, for the error message (e.g. ``"codes 0..255"``).

    Returns:
        ``int64`` array of length ``max_value + 1``.

    Raises:
        DataError: unreadable file, more than one channel, or values outside ``0..max_value``.
    """
    try:
        with Image.open(path) as image:
            values = np.asarray(image)
    except OSError as err:
        raise DataError(f"{owner}: cannot read mask {path}: {err}") from err
    if values.ndim != 2 or values.min(initial=0) < 0 or values.max(initial=0) > max_value:
        raise DataError(f"{owner}: mask {path} has shape {values.shape} and values up to {values.max(initial=0)}; "
                        f"expected one channel of {expected}")
    return np.bincount(values.ravel().astype(np.int64), minlength=max_value + 1)
