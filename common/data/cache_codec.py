"""Lossless storage of a prepared sample: arrays in the narrowest dtype that gives back the same bits, everything
else (meta, labels lists, patient ids) as strict JSON.

A float image in [0, 1] that is ``k / 255`` for integer ``k`` (a PNG or 8-bit CLAHE output before any resize) is
stored as uint8 and decoded as ``float32(k) / float32(255)``; a mask of integer-valued floats as uint8 or uint16 and
cast back; anything else (an area-resized image, NaN labels) in its own dtype. Each candidate is tried by decoding
it and comparing bit for bit with the original, so a cached value is always exactly the value the bundle computes.
A lossy quantisation to uint8 / uint16 happens only when asked for (``dtype="uint8"``), and its largest error is
returned so the cache can record it.

Example:
    >>> import numpy as np
    >>> image = (np.arange(6, dtype=np.float32) / np.float32(255)).reshape(2, 3)
    >>> encoding, stored = encode_arrays([image])
    >>> encoding["stored"], bool((decode_array(stored[0], encoding) == image).all())
    ('uint8', True)
"""

from __future__ import annotations

import enum
import importlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from common.errors import DataError

__all__ = ["ENCODING_MODES", "encode_arrays", "decode_array", "to_json", "from_json"]

#: ``auto``: the narrowest lossless dtype; ``uint8`` / ``uint16``: quantise [0, 1] floats (lossy, error recorded).
ENCODING_MODES = ("auto", "uint8", "uint16")
#: Lossless candidates for float arrays, narrowest first: (stored dtype, scale); scale None means a plain cast.
_FLOAT_CANDIDATES = (("uint8", None), ("uint8", 255), ("uint16", None), ("uint16", 65535), ("float16", None))
_ENUM_MODULES = ("monai.", "common.")


def decode_array(stored: np.ndarray, encoding: dict[str, Any]) -> np.ndarray:
    """The original array from its stored form: a cast to ``encoding["dtype"]``, divided by ``scale`` if one is set."""
    dtype = np.dtype(encoding["dtype"])
    values = stored.astype(dtype)
    scale = encoding.get("scale")
    return values / dtype.type(scale) if scale is not None else values


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype != b.dtype:
        return False
    if a.dtype.kind == "f":
        width = np.dtype(f"u{a.dtype.itemsize}")
        return bool(np.array_equal(a.view(width), b.view(width)))
    return bool(np.array_equal(a, b))


def _try(arrays: Sequence[np.ndarray], stored_dtype: str, scale: int | None) -> list[np.ndarray] | None:
    target = np.dtype(stored_dtype)
    encoding = {"stored": stored_dtype, "scale": scale, "dtype": str(arrays[0].dtype)}
    out = []
    for array in arrays:
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            return None
        values = array * array.dtype.type(scale) if scale is not None else array
        if target.kind in "ui":
            info = np.iinfo(target)
            if values.size and (values.min() < info.min or values.max() > info.max):
                return None
            stored = np.rint(values).astype(target) if array.dtype.kind == "f" else values.astype(target)
        else:
            stored = values.astype(target)
        if not _same_bits(decode_array(stored, encoding), array):
            return None
        out.append(stored)
    return out


def _quantise(arrays: Sequence[np.ndarray], mode: str, where: str) -> tuple[dict[str, Any], list[np.ndarray]]:
    scale = 255 if mode == "uint8" else 65535
    encoding = {"stored": mode, "scale": scale, "dtype": str(arrays[0].dtype)}
    stored, error = [], 0.0
    for array in arrays:
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise DataError(f"{where}: dtype={mode} quantises floats in [0, 1], found values in "
                            f"[{float(np.nanmin(array)):g}, {float(np.nanmax(array)):g}]; use dtype=auto")  # fmt: skip
        stored.append(np.rint(array * array.dtype.type(scale)).astype(mode))
        error = max(error, float(np.abs(decode_array(stored[-1], encoding) - array).max(initial=0.0)))
    encoding["max_abs_error"] = error
    return encoding, stored


def encode_arrays(arrays: Sequence[np.ndarray], mode: str = "auto",
                  where: str = "arrays") -> tuple[dict[str, Any], list[np.ndarray]]:  # fmt: skip
    """One encoding for ``arrays`` (the values of one key in one shard) and their stored forms.

    Args:
        arrays: arrays of one dtype (shapes may differ).
        mode: one of :data:`ENCODING_MODES`; the lossy modes apply to float arrays only.
        where: what the arrays are, for error messages (``"shard 3, key 'image'"``).

    Returns:
        ``(encoding, stored)``: ``encoding`` is ``{"stored": dtype, "scale": int | None, "dtype": original dtype}``
        (plus ``max_abs_error`` when lossy); ``decode_array(stored[i], encoding)`` equals ``arrays[i]`` bit for bit
        in ``auto`` mode.

    Raises:
        DataError: the arrays mix dtypes, or a lossy mode meets values outside [0, 1].
    """
    dtypes = {str(a.dtype) for a in arrays}
    if len(dtypes) != 1:
        raise DataError(f"{where}: every sample must give the same dtype, found {sorted(dtypes)}")
    dtype = arrays[0].dtype
    if dtype.kind == "f" and mode != "auto":
        return _quantise(arrays, mode, where)
    candidates = _FLOAT_CANDIDATES if dtype.kind == "f" else (("uint8", None), ("int8", None), ("uint16", None),
                                                               ("int16", None), ("int32", None))  # fmt: skip
    for stored_dtype, scale in candidates:
        if np.dtype(stored_dtype).itemsize >= dtype.itemsize:
            break
        stored = _try(arrays, stored_dtype, scale)
        if stored is not None:
            return {"stored": stored_dtype, "scale": scale, "dtype": str(dtype)}, stored
    return {"stored": str(dtype), "scale": None, "dtype": str(dtype)}, [np.asarray(a) for a in arrays]


def to_json(value: Any, where: str = "value") -> Any:
    """``value`` as strict JSON, tagging what JSON lacks (tuples, arrays, tensors, enums, NaN) so
    :func:`from_json` gives it back with its type.

    Raises:
        DataError: ``value`` holds a type with no JSON form (the message names ``where`` and the type).
    """
    if isinstance(value, enum.Enum):  # before str: MONAI's keys and spaces are str enums
        return {"__enum__": f"{type(value).__module__}:{type(value).__qualname__}", "value": to_json(value.value)}
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, np.generic):
        return {"__npscalar__": to_json(value.item(), where), "dtype": str(value.dtype)}
    if isinstance(value, torch.Tensor):
        array = value.detach().cpu().numpy()
        return {"__tensor__": to_json(array.tolist(), where), "dtype": str(value.dtype).removeprefix("torch.")}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": to_json(value.tolist(), where), "dtype": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, tuple):
        return {"__tuple__": [to_json(v, where) for v in value]}
    if isinstance(value, list):
        return [to_json(v, where) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"__dict__": {k: to_json(v, f"{where}.{k}") for k, v in value.items()}}
    raise DataError(f"{where}: cannot store a {type(value).__module__}.{type(value).__qualname__} in the "
                    f"prepared-image cache (numbers, strings, lists, dicts, arrays and tensors only)")  # fmt: skip


def _enum(name: str, value: Any) -> enum.Enum:
    module, _, qualname = name.partition(":")
    if not module.startswith(_ENUM_MODULES):
        raise DataError(f"cache record names enum {name!r} outside {_ENUM_MODULES}: refusing to import it")
    owner: Any = importlib.import_module(module)
    for part in qualname.split("."):
        owner = getattr(owner, part)
    return owner(value)


def from_json(value: Any) -> Any:
    """Inverse of :func:`to_json`."""
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__dict__" in value:
        return {k: from_json(v) for k, v in value["__dict__"].items()}
    if "__tuple__" in value:
        return tuple(from_json(v) for v in value["__tuple__"])
    if "__float__" in value:
        return float(value["__float__"])
    if "__npscalar__" in value:
        return np.dtype(value["dtype"]).type(from_json(value["__npscalar__"]))
    if "__ndarray__" in value:
        return np.asarray(from_json(value["__ndarray__"]), dtype=value["dtype"]).reshape(value["shape"])
    if "__tensor__" in value:
        return torch.tensor(from_json(value["__tensor__"]), dtype=getattr(torch, value["dtype"]))
    if "__enum__" in value:
        return _enum(value["__enum__"], from_json(value["value"]))
    raise DataError(f"unreadable cache record value {value!r}")
