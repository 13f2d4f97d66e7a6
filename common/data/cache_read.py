"""Read a prepared-image cache: check it against the bundle using it, then hand out samples from memory-mapped shards.

Layout (written by :mod:`common.data.cache_build`)::

    DIR/cache.json                 written last: format, bundle, preprocessing record + sha256, shard names, counts
    DIR/shards/00000/shard.json    settings stamp, encodings, array file names, the samples' keys in order
    DIR/shards/00000/records.jsonl one JSON line per sample: datalist item, source files, offsets, meta
    DIR/shards/00000/a0.npy ...    one flat array per output key, read with ``np.load(mmap_mode="r")``

A sample is a zero-copy slice of a memory-mapped ``.npy`` file decoded to the dtype the bundle's transforms gave
(a uint8 ``k`` becomes ``float32(k) / 255``), wrapped back into a ``MetaTensor`` with its meta and applied operations.

Example:
    >>> cache = PreparedCache("/data/cache")  # doctest: +SKIP
    >>> cache.check(preprocessing, items)  # doctest: +SKIP
    >>> sample = cache.sample(items[0])  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor

from common.data.cache_codec import decode_array, from_json, to_json
from common.data.cache_fingerprint import preprocessing_changes, source_changes
from common.errors import StaleCacheError

__all__ = ["CACHE_FORMAT", "INDEX_NAME", "SHARDS_DIR", "SHARD_INDEX_NAME", "RECORDS_NAME", "PreparedCache", "item_key",
           "preprocessing_sha256"]  # fmt: skip

CACHE_FORMAT = 2  # 2: records as JSON lines
INDEX_NAME = "cache.json"
SHARDS_DIR = "shards"
SHARD_INDEX_NAME = "shard.json"
RECORDS_NAME = "records.jsonl"
#: How many files / items an error message lists before "... and N more".
SHOWN = 5


def preprocessing_sha256(preprocessing: Mapping[str, Any]) -> str:
    """sha256 of a preprocessing record's canonical JSON (what a shard is stamped with)."""
    return hashlib.sha256(json.dumps(preprocessing, sort_keys=True).encode()).hexdigest()


def item_key(item: Mapping[str, Any], key: str = "image") -> str:
    """The cache key of a datalist item: the absolute, normalised path of its ``key`` file."""
    value = item.get(key)
    if not isinstance(value, str | os.PathLike):
        raise StaleCacheError(f"datalist item has no {key!r} path to look up in the prepared-image cache: {item!r}")
    return os.path.normpath(os.path.abspath(value))


def listing(lines: Sequence[str], what: str) -> str:
    """``"N what: a; b; c ... and M more"``."""
    more = f" ... and {len(lines) - SHOWN} more" if len(lines) > SHOWN else ""
    return f"{len(lines)} {what}: {'; '.join(lines[:SHOWN])}{more}"


class PreparedCache:
    """A complete prepared-image cache folder, opened for reading.

    Args:
        cache_dir: the folder ``python -m common prepare-cache`` wrote.

    Raises:
        StaleCacheError: the folder is not a cache, an interrupted build (resume it), or of another format.
    """

    def __init__(self, cache_dir: str | os.PathLike) -> None:
        self.root = Path(cache_dir)
        index = self.root / INDEX_NAME
        if not index.is_file():
            hint = ("its build did not finish: rerun python -m common prepare-cache to resume it"
                    if (self.root / SHARDS_DIR).is_dir() else "it is not a prepared-image cache (no cache.json)")
            raise StaleCacheError(f"cache_dir {self.root}: {hint}")
        self.index = json.loads(index.read_text(encoding="utf-8"))
        if self.index.get("format") != CACHE_FORMAT:
            raise StaleCacheError(f"{index}: cache format {self.index.get('format')!r}, this medxfer reads "
                                  f"{CACHE_FORMAT}; rebuild it with python -m common prepare-cache")  # fmt: skip
        self.shards: list[dict[str, Any]] = []
        # Records stay JSON text until a sample is read: one string each instead of a tree of objects per item, so
        # 100k items cost tens of MB, and DataLoader workers forked from this process do not copy them by touching.
        self.records: list[list[str]] = []
        self.lookup: dict[str, tuple[int, int]] = {}
        for number, name in enumerate(self.index["shards"]):
            folder = self.root / SHARDS_DIR / name
            try:
                shard = json.loads((folder / SHARD_INDEX_NAME).read_text(encoding="utf-8"))
                self.shards.append(shard)
                self.records.append((folder / RECORDS_NAME).read_text(encoding="utf-8").splitlines())
            except (OSError, ValueError) as err:
                raise StaleCacheError(f"cache_dir {self.root}: shard {name} is missing or unreadable ({err}); rerun "
                                      f"python -m common prepare-cache to rebuild it") from err  # fmt: skip
            for position, key in enumerate(shard["keys"]):
                self.lookup.setdefault(key, (number, position))
        self._arrays: dict[tuple[int, str], np.ndarray] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_arrays"] = {}  # memory maps are reopened in each DataLoader worker
        return state

    def __len__(self) -> int:
        return len(self.lookup)

    def check_preprocessing(self, preprocessing: Mapping[str, Any], bundle: str = "the bundle") -> None:
        """Refuse when ``preprocessing`` (the using bundle's record) differs from the one the cache was built with.

        Raises:
            StaleCacheError: naming every setting (or library version) that differs.
        """
        cached = self.index["preprocessing"]
        if preprocessing_sha256(cached) == preprocessing_sha256(preprocessing):
            return
        changes = preprocessing_changes(cached, preprocessing) or ["(records differ; no named setting)"]
        raise StaleCacheError(f"cache_dir {self.root} was built by {self.index.get('bundle')!r} with other "
                              f"preprocessing than {bundle} uses; {listing(changes, 'difference(s)')}; rebuild it "
                              f"with python -m common prepare-cache (or set cache_dir to null)")  # fmt: skip

    def record(self, item: Mapping[str, Any], key: str = "image") -> tuple[int, dict[str, Any]]:
        """``(shard number, record)`` of a datalist item; StaleCacheError when the cache does not hold it."""
        found = self.lookup.get(item_key(item, key))
        if found is None:
            raise StaleCacheError(f"cache_dir {self.root} has no entry for {item_key(item, key)} (built from splits "
                                  f"{sorted(self.index.get('splits', {}))}); rebuild it with --splits covering "
                                  f"this datalist")  # fmt: skip
        return found[0], json.loads(self.records[found[0]][found[1]])

    def item_changes(self, item: Mapping[str, Any], record: Mapping[str, Any]) -> list[str]:
        """Fields of ``item`` whose value differs from the datalist item the cache entry was built from."""
        stored, current_json = record["item"].get("__dict__", {}), to_json(dict(item)).get("__dict__", {})
        if all(stored.get(name, "<absent>") == value for name, value in current_json.items()):
            return []  # the common case, without decoding either side
        cached = from_json(record["item"])
        current = json.loads(json.dumps(from_json(to_json(dict(item)))))
        cached = json.loads(json.dumps(cached))
        return [f"{record['key']} field {name!r} (cache {cached.get(name, '<absent>')!r}, datalist "
                f"{current.get(name)!r})" for name in current if cached.get(name, "<absent>") != current.get(name)]

    def check_items(self, items: Sequence[Mapping[str, Any]], key: str = "image") -> None:
        """Refuse when an item is missing from the cache, differs from the one cached, or its files changed since.

        Raises:
            StaleCacheError: naming the first few missing items, changed fields and changed files (path, size,
                mtime_ns) and how many there are.
        """
        missing, fields, sources = [], [], []
        for item in items:
            found = self.lookup.get(item_key(item, key))
            if found is None:
                missing.append(item_key(item, key))
                continue
            record = json.loads(self.records[found[0]][found[1]])
            fields += self.item_changes(item, record)
            sources += source_changes(record["sources"])
        problems = [listing(lines, what) for lines, what in ((sources, "source file(s) changed since the build"),
                    (fields, "datalist field(s) changed"), (missing, "datalist item(s) not in the cache")) if lines]
        if problems:
            raise StaleCacheError(f"cache_dir {self.root} is stale: {'; '.join(problems)}; rebuild it with python -m "
                                  f"common prepare-cache (completed shards that are still valid are kept)")  # fmt: skip

    def _array(self, shard: int, name: str) -> np.ndarray:
        opened = self._arrays.get((shard, name))
        if opened is None:
            path = self.root / SHARDS_DIR / self.index["shards"][shard] / name
            opened = self._arrays[(shard, name)] = np.load(path, mmap_mode="r")
        return opened

    def sample(self, item: Mapping[str, Any], key: str = "image", objects: Sequence[Any] = ()) -> dict[str, Any]:
        """The cached output of the bundle's ``load_transforms`` for ``item``.

        Keys the cached datalist item had but ``item`` lacks (an inference item has no label) are left out, as the
        bundle's transforms would have nothing to load for them. ``objects`` (see
        :func:`~common.data.cache_fingerprint.transform_objects`) are the reader's transforms that the applied
        operations of restored MetaTensors name.
        """
        shard_number, record = self.record(item, key)
        return self.sample_of_record(item, shard_number, record, objects)

    def sample_of_record(self, item: Mapping[str, Any], shard_number: int, record: Mapping[str, Any],
                         objects: Sequence[Any] = ()) -> dict[str, Any]:  # fmt: skip
        """:meth:`sample` for a record already looked up (see :meth:`record`)."""
        shard = self.shards[shard_number]
        cached_fields = from_json(record["item"])
        out: dict[str, Any] = {}
        for name, value in record["values"].items():
            if name in item or name not in cached_fields:
                out[name] = from_json(value)
        for name, where in record["arrays"].items():
            if name in cached_fields and name not in item:
                continue
            flat = self._array(shard_number, shard["arrays"][name])
            count = int(np.prod(where["shape"], dtype=np.int64))
            stored = np.asarray(flat[where["offset"]: where["offset"] + count]).reshape(where["shape"])
            out[name] = _restore(decode_array(stored, shard["encodings"][name]), where, objects)
        return out


def _restore(array: np.ndarray, where: Mapping[str, Any], objects: Sequence[Any]) -> Any:
    kind = where["kind"]
    if kind == "ndarray":
        return array
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if kind == "tensor":
        return tensor
    restored = MetaTensor(tensor)
    restored.meta = from_json(where["meta"])  # as cached: MetaTensor(meta=...) would add a default "space"
    ops = from_json(where["ops"])
    for op in ops:
        if isinstance(op, dict) and isinstance(op.get("id"), int) and 0 <= op["id"] < len(objects):
            op["id"] = id(objects[op["id"]])
    restored.applied_operations = ops
    return restored
