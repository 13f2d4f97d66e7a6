"""What a prepared-image cache was computed from, and what changed since: settings of the deterministic transforms,
library versions, and the source files (path, size, mtime_ns).

:func:`describe_transforms` turns a bundle's instantiated ``load_transforms`` into plain JSON (class, then every
public attribute, nested transforms included), so a cache records the *resolved* settings (image size, CLAHE clip
limit and tile grid, masking method, crop margin ...) rather than the config text that produced them.
:func:`preprocessing_changes` compares two descriptions and names each setting that differs;
:func:`source_changes` names the files whose size or modification time differ from the recorded ones.

Example:
    >>> from monai.transforms import Resized
    >>> describe_transforms([Resized("image", (4, 4))])[0]["class"]
    'monai.transforms.spatial.dictionary.Resized'
"""

from __future__ import annotations

import enum
import functools
import importlib.metadata
import inspect
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["describe_transforms", "transform_objects", "preprocessing_record", "library_versions",
           "preprocessing_changes", "file_stat", "source_changes", "item_source_files"]  # fmt: skip

#: Attributes that say how a transform is driven, not what it computes: a key that may be absent computes nothing,
#: and whether nvImageCodec is installed only matters for DICOM readers a bundle does not pick.
_IGNORED_ATTRIBUTES = frozenset({"allow_missing_keys", "lazy", "_lazy", "overwriting", "R", "nvimgcodec_available"})
#: Libraries whose version can change a deterministic transform's output.
_LIBRARIES = ("monai", "numpy", "torch", "opencv-python-headless", "pillow", "pydicom", "scikit-image")
_MAX_DEPTH = 8


def _describe(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON-able data: numbers, strings, lists and dicts; objects as their class and public attributes."""
    if depth > _MAX_DEPTH:
        return f"<{type(value).__qualname__}>"
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if np.isfinite(value) else repr(value)
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if isinstance(value, np.generic):
        return _describe(value.item(), depth)
    if isinstance(value, np.ndarray | torch.Tensor):
        return {"array": np.asarray(value).tolist(), "dtype": str(value.dtype)}
    if isinstance(value, torch.dtype | np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _describe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [_describe(v, depth + 1) for v in items]
    if isinstance(value, functools.partial):
        return {"partial": _describe(value.func, depth + 1), "args": _describe(value.args, depth + 1),
                "keywords": _describe(value.keywords, depth + 1)}  # fmt: skip
    if isinstance(value, type) or inspect.isroutine(value) or callable(value) and not hasattr(value, "__dict__"):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
    state = {k: v for k, v in sorted(vars(value).items()) if not k.startswith("__") and k not in _IGNORED_ATTRIBUTES}
    described = {"class": f"{type(value).__module__}.{type(value).__qualname__}"}
    described.update({k.lstrip("_"): _describe(v, depth + 1) for k, v in state.items()})
    return described


def describe_transforms(transforms: Sequence[Any]) -> list[Any]:
    """The resolved settings of each transform of a bundle's deterministic ``load_transforms``, in order.

    Args:
        transforms: instantiated transforms (what ``@load_transforms`` evaluates to).

    Returns:
        One JSON-able dict per transform: ``{"class": "module.Class", <attribute>: <value>, ...}``; nested
        transforms (``CLAHEd`` holding a ``CLAHE``) are described the same way. ``allow_missing_keys`` is left
        out: training and inference load the same image whether or not the label key is present.
    """
    return [_describe(t) for t in transforms]


def transform_objects(transforms: Sequence[Any]) -> list[Any]:
    """Every transform object in ``transforms``, nested ones included, in a fixed depth-first order.

    A cached ``applied_operations`` entry names the transform that pushed it by its position in this list instead
    of by ``id()``, which only means something in the process that built the cache; the reader maps the position
    back to its own instance, so ``resize.inverse(sample)`` works on a cached sample as on a computed one.
    """
    found: list[Any] = []
    seen: set[int] = set()

    def walk(value: Any) -> None:
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, list | tuple):
            children = list(value)
        elif isinstance(value, dict):
            children = list(value.values())
        elif hasattr(value, "__dict__") and type(value).__module__.startswith(("monai.", "common.")):
            found.append(value)
            children = list(vars(value).values())
        else:
            return
        for child in children:
            walk(child)

    walk(list(transforms))
    return found


def preprocessing_record(load_transforms: Sequence[Any]) -> dict[str, Any]:
    """What a cache is fingerprinted by: the resolved deterministic transforms and the library versions."""
    return {"transforms": describe_transforms(load_transforms), "versions": library_versions()}


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries the deterministic transforms run on (``"absent"`` when not installed)."""
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _differences(path: str, cached: Any, current: Any, out: list[str]) -> None:
    if isinstance(cached, dict) and isinstance(current, dict) and cached.get("class") == current.get("class"):
        for key in sorted(set(cached) | set(current)):
            if cached.get(key, "<absent>") != current.get(key, "<absent>"):
                _differences(f"{path}.{key}", cached.get(key, "<absent>"), current.get(key, "<absent>"), out)
    elif cached != current:
        out.append(f"{path}: cache has {_short(cached)}, bundle has {_short(current)}")


def _class_name(described: Any) -> str:
    if isinstance(described, dict):
        return str(described.get("class", "?")).rsplit(".", 1)[-1]
    return type(described).__name__


def preprocessing_changes(cached: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Every setting that differs between two preprocessing records (``{"transforms": [...], "versions": {...}}``).

    Returns:
        Lines such as ``"load_transforms[2] (CLAHEd).clahe.clip_limit: cache has 2.0, bundle has 3.0"``; empty when
        the two are the same.
    """
    out: list[str] = []
    old, new = list(cached.get("transforms", [])), list(current.get("transforms", []))
    if [_class_name(t) for t in old] != [_class_name(t) for t in new]:
        out.append(f"load_transforms: cache has [{', '.join(map(_class_name, old))}], bundle has "
                   f"[{', '.join(map(_class_name, new))}]")  # fmt: skip
    else:
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            _differences(f"load_transforms[{index}] ({_class_name(a)})", a, b, out)
    for name in sorted(set(cached.get("versions", {})) | set(current.get("versions", {}))):
        a, b = cached.get("versions", {}).get(name), current.get("versions", {}).get(name)
        if a != b:
            out.append(f"library {name}: cache built with {a}, installed is {b}")
    for key in sorted((set(cached) | set(current)) - {"transforms", "versions"}):
        if cached.get(key) != current.get(key):
            out.append(f"{key}: cache has {_short(cached.get(key))}, bundle has {_short(current.get(key))}")
    return out


def file_stat(path: str | os.PathLike) -> list[Any]:
    """``[path, size, mtime_ns]`` of a source file, the record a cache keeps of it."""
    stat = os.stat(path)
    return [os.fspath(path), int(stat.st_size), int(stat.st_mtime_ns)]


def item_source_files(item: Mapping[str, Any]) -> list[str]:
    """The files a datalist item's transforms read: its top-level string values that are absolute paths of existing
    files (the bundles' datalist loaders make every path absolute, so an id such as ``"2"`` is never taken)."""
    return [v for v in item.values() if isinstance(v, str) and os.path.isabs(v) and Path(v).is_file()]


def source_changes(records: Iterable[Sequence[Any]]) -> list[str]:
    """The recorded source files (``[path, size, mtime_ns]``) that are missing or changed since, one line each."""
    out = []
    for path, size, mtime_ns in records:
        try:
            now = file_stat(path)
        except OSError:
            out.append(f"{path} (missing)")
            continue
        if now[1] != size:
            out.append(f"{path} (size {size} -> {now[1]} bytes)")
        elif now[2] != mtime_ns:
            out.append(f"{path} (modified: mtime_ns {mtime_ns} -> {now[2]})")
    return out
