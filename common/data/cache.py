"""Prepared-image cache, the bundle side: one config switch, ``cache_dir``, swaps a bundle's deterministic
``load_transforms`` for a lookup in a cache that ``python -m common prepare-cache`` built from those same transforms.

In a bundle config the transforms of each split start with ``load_stage``::

    "transforms": "$common.data.cache.load_stage(@load_transforms, @cache_dir, @train#dataset#data) + @augmentation
                   + @normalise_transforms"

With ``cache_dir`` null that is ``@load_transforms`` itself (behaviour unchanged); with a folder it is one
:class:`LoadPreparedd`, which refuses a stale or foreign cache before any sample is read
(:class:`~common.errors.StaleCacheError` naming the setting, file or datalist field that changed), and then returns
for each datalist item exactly what ``load_transforms`` would have returned. Random augmentation still runs on it
every epoch.

Example:
    >>> stage = load_stage(load_transforms, "/data/cxr_cache", items)  # doctest: +SKIP
    >>> sample = stage[0](items[0])  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.transforms import Transform

from common.data.cache_fingerprint import preprocessing_record, source_changes, transform_objects
from common.data.cache_read import INDEX_NAME, PreparedCache, listing
from common.errors import ConfigError, StaleCacheError

__all__ = ["LoadPreparedd", "load_stage", "open_cache"]

logger = logging.getLogger(__name__)

_OPENED: dict[tuple[str, int], PreparedCache] = {}


def open_cache(cache_dir: str | os.PathLike) -> PreparedCache:
    """The :class:`PreparedCache` of ``cache_dir``, shared by a process's splits while ``cache.json`` is unchanged."""
    root = Path(cache_dir).resolve()
    index = root / INDEX_NAME
    stamp = index.stat().st_mtime_ns if index.is_file() else -1
    key = (str(root), stamp)
    if key not in _OPENED:
        _OPENED[key] = PreparedCache(root)
    return _OPENED[key]


class LoadPreparedd(Transform):
    """Dictionary transform: a datalist item in, the cached output of the bundle's ``load_transforms`` out.

    Args:
        cache_dir: folder written by ``python -m common prepare-cache``.
        load_transforms: the bundle's deterministic transforms (instantiated); the cache must have been built
            from the same resolved settings and library versions.
        items: datalist items this split will read; checked up front (present, same fields, source files
            unchanged) so a stale cache stops the run before training starts. ``None`` skips the up-front check.
        key: the item key whose path identifies a cache entry.
        check_sources: also check each item's fields and files when it is read (one ``stat`` per file).

    Raises:
        StaleCacheError: at construction, for an incomplete, foreign or stale cache; when called, for an item the
            cache does not hold or whose files changed since.
    """

    def __init__(self, cache_dir: str | os.PathLike, load_transforms: Sequence[Any],
                 items: Sequence[Mapping[str, Any]] | None = None, key: str = "image",
                 check_sources: bool = True) -> None:  # fmt: skip
        self.cache = open_cache(cache_dir)
        self.cache.check_preprocessing(preprocessing_record(load_transforms), "this bundle")
        if items is not None:
            self.cache.check_items(items, key)
        self.key, self.check_sources = key, check_sources
        self.load_transforms = list(load_transforms)
        self._objects: list[Any] | None = None
        encodings = self.cache.index.get("encodings", {})
        lossy = {k: e["max_abs_error"] for k, e in encodings.items() if "max_abs_error" in e}
        if lossy:
            logger.warning("cache_dir %s was built with dtype=%s: cached values differ from the bundle's by up to %s",
                           cache_dir, self.cache.index.get("dtype"), lossy)  # fmt: skip

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_objects": None}  # ids of transform objects are per process

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """The cached sample of the datalist item ``data``."""
        shard, record = self.cache.record(data, self.key)
        if self.check_sources:
            changes = source_changes(record["sources"]) + self.cache.item_changes(data, record)
            if changes:
                raise StaleCacheError(f"cache_dir {self.cache.root} is stale: {listing(changes, 'change(s)')}; "
                                      f"rebuild it with python -m common prepare-cache")  # fmt: skip
        if self._objects is None:
            self._objects = transform_objects(self.load_transforms)
        return self.cache.sample_of_record(data, shard, record, self._objects)


def load_stage(load_transforms: Sequence[Any], cache_dir: str | os.PathLike | None,
               items: Sequence[Mapping[str, Any]] | Any = None, key: str = "image") -> list[Any]:  # fmt: skip
    """The first transforms of a split: ``load_transforms`` itself, or a :class:`LoadPreparedd` when ``cache_dir``.

    Args:
        load_transforms: the bundle's deterministic transforms.
        cache_dir: ``None`` (or ``""``) for no cache, else the cache folder.
        items: the split's datalist items, checked against the cache up front (a not-yet-existing datalist,
            which the bundle reports itself, is skipped).
        key: the item key naming the image file.

    Raises:
        ConfigError: ``cache_dir`` is neither null nor a path string.
        StaleCacheError: see :class:`LoadPreparedd`.
    """
    if cache_dir is None or cache_dir == "":
        return list(load_transforms)
    if not isinstance(cache_dir, str | os.PathLike):
        raise ConfigError(f"setting cache_dir={cache_dir!r} ({type(cache_dir).__name__}) is not valid: expected "
                          f"null or the folder python -m common prepare-cache wrote (override it with "
                          f"--cache_dir DIR)")  # fmt: skip
    checked = list(items) if isinstance(items, list | tuple) else None
    logger.info("reading the deterministic preprocessing from the prepared-image cache %s", cache_dir)
    return [LoadPreparedd(cache_dir, load_transforms, checked, key)]
