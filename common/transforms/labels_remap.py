"""Group detailed segmentation codes into training classes with a look-up table (BCSS codes by default).

Masks stay on disk with their detailed codes (BCSS: 0..21); :class:`RemapLabels` maps them at load time, so a
bundle changes the grouping with one top-level ``class_map`` in its config. Output: 0 = ignore (codes in no
group, by default ``outside_roi`` and ``exclude``), 1..K = the groups of ``class_map`` in order.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_data_type, convert_to_dst_type

from common.data.bcss_codes import BCSS_DEFAULT_CLASS_MAP, BCSS_GTRUTH_CODES, build_code_lookup, read_gtruth_codes
from common.errors import ConfigError, DataError

__all__ = ["RemapLabels", "RemapLabelsd"]


def _source_of(img: Any, fallback: str) -> str:
    """The file ``img`` names or was loaded from (a path string or a MetaTensor), for error messages."""
    if isinstance(img, str | os.PathLike):
        return str(img)
    meta = getattr(img, "meta", None) or {}
    return str(meta.get("filename_or_obj", fallback))


class RemapLabels(Transform):
    """Array transform: detailed mask codes -> training classes (0 = ignore, 1..K = ``class_map`` groups).

    Any shape is accepted (``(1, H, W)`` after ``LoadImage`` + ``EnsureChannelFirst``, or ``(H, W)``). The
    output has the input's type (numpy, torch on the same device, ``MetaTensor`` with its meta) and dtype.

    Args:
        class_map: group name -> detailed label names; the order gives classes 1..K. Default
            :data:`~common.data.bcss.BCSS_DEFAULT_CLASS_MAP` (tumor, stroma, inflammatory, necrosis, other).
        codes: label name -> code, or the path of a ``gtruth_codes.tsv``; default the documented BCSS codes.

    Raises:
        ConfigError: (constructor) a bad ``class_map`` or code table, see
            :func:`~common.data.bcss.build_code_lookup`.
        DataError: (call) values that are not whole numbers (a mask resampled with interpolation) or codes
            missing from the table, naming the file and the codes.

    Example:
        >>> import numpy as np
        >>> RemapLabels()(np.array([[0, 1, 2, 3, 10, 7, 9]], dtype=np.uint8)).tolist()
        [[0, 1, 2, 3, 3, 0, 5]]
    """

    backend = [TransformBackends.NUMPY]

    def __init__(
        self,
        class_map: Mapping[str, Sequence[str]] | None = None,
        codes: Mapping[str, int] | str | os.PathLike | None = None,
    ) -> None:
        if codes is None:
            codes = BCSS_GTRUTH_CODES
        elif isinstance(codes, str | os.PathLike):
            codes = read_gtruth_codes(codes)
        elif not isinstance(codes, Mapping):
            raise ConfigError(f"codes must be a label -> code mapping or a gtruth_codes.tsv path, got {codes!r}")
        self.codes = dict(codes)
        self.lut = build_code_lookup(self.codes, class_map)
        self.known = np.zeros(256, dtype=bool)
        self.known[list(self.codes.values())] = True
        self.class_names = list(BCSS_DEFAULT_CLASS_MAP if class_map is None else class_map)

    def __call__(self, img: NdarrayOrTensor, source: str | None = None) -> NdarrayOrTensor:
        """Remap ``img``; ``source`` names the mask in errors (default: a MetaTensor's file name)."""
        array = convert_data_type(img, np.ndarray)[0]
        where = source or _source_of(img, "mask")
        if array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
            example = array[array != np.round(array)].flat[0]
            raise DataError(f"{where}: mask values must be whole-number codes, found {example}; "
                            "resample masks with mode='nearest'")  # fmt: skip
        values = np.unique(array)
        outside = values[(values < 0) | (values > 255)]
        inside = values[(values >= 0) & (values <= 255)].astype(np.int64)
        unknown = [*outside.tolist(), *inside[~self.known[inside]].tolist()]
        if unknown:
            raise DataError(f"{where}: mask holds code(s) {[int(v) for v in unknown]} not in the code table; "
                            f"known: {sorted(self.codes.values())}")  # fmt: skip
        out = self.lut[array.astype(np.int64)]
        return convert_to_dst_type(out, dst=img, dtype=array.dtype)[0]


class RemapLabelsd(MapTransform):
    """Dictionary twin of :class:`RemapLabels`; errors name the key's file (MetaTensor) or the item's image.

    Args:
        keys: keys of the masks to remap (usually ``"label"``).
        class_map: see :class:`RemapLabels`.
        codes: see :class:`RemapLabels`.
        allow_missing_keys: skip keys that are absent instead of raising ``KeyError``.

    Example:
        >>> import numpy as np
        >>> RemapLabelsd("label")({"label": np.array([[1, 4, 7]], dtype=np.uint8)})["label"].tolist()
        [[1, 4, 0]]
    """

    backend = RemapLabels.backend

    def __init__(
        self,
        keys: KeysCollection,
        class_map: Mapping[str, Sequence[str]] | None = None,
        codes: Mapping[str, int] | str | os.PathLike | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.remap = RemapLabels(class_map, codes)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            fallback = f"{_source_of(d.get('image'), 'item')} [{key}]"
            d[key] = self.remap(d[key], source=_source_of(d[key], fallback))
        return d
