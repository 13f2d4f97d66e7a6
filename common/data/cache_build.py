"""Build a prepared-image cache: run a bundle's own deterministic ``load_transforms`` once per datalist item and
store the results in memory-mappable shards (see :mod:`common.data.cache_read` for the layout).

The transforms come from the bundle config through ``monai.bundle.ConfigParser`` (with the same overrides the
bundle will run with), so the cache holds exactly what the bundle computes before its random augmentation. The
build is resumable and atomic: items are cut into shards of ``shard_size`` in datalist order, each shard is written
as a hidden folder and renamed into place when whole (:func:`common.io.atomic_directory`), a rerun keeps every
shard whose stamp, items and source files are unchanged, and ``cache.json``, which makes the folder usable, is
written last. Samples are prepared by a ``torch`` DataLoader with ``num_workers`` processes.

Example:
    >>> build_cache("bundles/chest_xray_classification", "/data/cxr/datalist.json", "/data/cxr_cache",
    ...             overrides={"image_size": 512}, num_workers=8)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from common.data.cache_codec import ENCODING_MODES, encode_arrays, to_json
from common.data.cache_fingerprint import (
    file_stat,
    item_source_files,
    preprocessing_record,
    source_changes,
    transform_objects,
)
from common.data.cache_plan import check_output_folder, parse_bundle, plan_items
from common.data.cache_read import (
    CACHE_FORMAT,
    INDEX_NAME,
    RECORDS_NAME,
    SHARD_INDEX_NAME,
    SHARDS_DIR,
    item_key,
    preprocessing_sha256,
)
from common.errors import ConfigError
from common.io import atomic_directory, atomic_write_json, atomic_write_text, make_directory

__all__ = ["build_cache", "default_workers", "prepare_sample", "write_shard"]

logger = logging.getLogger(__name__)

def default_workers() -> int:
    """Worker processes for a build: the CPUs this process may use, one left for writing shards, at most 8."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(8, cpus - 1))


def _positions(ops: list[Any], positions: Mapping[int, int]) -> list[Any]:
    """``applied_operations`` with each transform ``id`` replaced by its position in the load transforms."""
    return [{**op, "id": positions.get(op["id"], -1)} if isinstance(op, dict) and "id" in op else op for op in ops]


def prepare_sample(item: Mapping[str, Any], transform: Compose, key: str = "image") -> dict[str, Any]:
    """Run ``transform`` (the bundle's load transforms) on ``item``; return arrays and JSON-able rest separately.

    The source files are stat-ed before they are read, so a file changed during the build shows up as stale.
    """
    positions = {id(obj): number for number, obj in enumerate(transform_objects(transform.transforms))}
    sources = [file_stat(path) for path in item_source_files(item)]
    out = transform(dict(item))
    arrays: dict[str, tuple[np.ndarray, str, Any, Any]] = {}
    values: dict[str, Any] = {}
    for name, value in out.items():
        where = f"{item_key(item, key)} key {name!r}"
        if isinstance(value, MetaTensor):
            arrays[name] = (value.as_tensor().detach().cpu().numpy(), "metatensor",
                            to_json(dict(value.meta), f"{where} meta"),
                            to_json(_positions(list(value.applied_operations), positions),
                                    f"{where} applied_operations"))  # fmt: skip
        elif isinstance(value, torch.Tensor):
            arrays[name] = (value.detach().cpu().numpy(), "tensor", None, None)
        elif isinstance(value, np.ndarray):
            arrays[name] = (value, "ndarray", None, None)
        else:
            values[name] = to_json(value, where)
    return {"key": item_key(item, key), "item": to_json(dict(item)), "sources": sources, "arrays": arrays,
            "values": values}  # fmt: skip


class _Samples(Dataset):
    """The items of the shards to (re)build, prepared one by one (in DataLoader workers when asked)."""

    def __init__(self, items: Sequence[Mapping[str, Any]], transforms: Sequence[Any]) -> None:
        self.items, self.transform = list(items), Compose(list(transforms))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return prepare_sample(self.items[index], self.transform)


def _keep(batch: Any) -> Any:
    return batch


def write_shard(folder: Path, samples: Sequence[dict[str, Any]], splits: Sequence[str], stamp: str,
                mode: str) -> dict[str, Any]:  # fmt: skip
    """Write one shard folder atomically; returns its encodings."""
    names = list(dict.fromkeys(name for sample in samples for name in sample["arrays"]))
    encodings, files, stored = {}, {}, {}
    for number, name in enumerate(names):
        having = [s for s in samples if name in s["arrays"]]
        encodings[name], stored[name] = encode_arrays([s["arrays"][name][0] for s in having], mode,
                                                      f"shard {folder.name}, key {name!r}")  # fmt: skip
        files[name] = f"a{number}.npy"
    records, offsets = [], dict.fromkeys(names, 0)
    for sample, split in zip(samples, splits, strict=True):
        arrays = {}
        for name, (array, kind, meta, ops) in sample["arrays"].items():
            arrays[name] = {"offset": offsets[name], "shape": list(array.shape), "kind": kind, "meta": meta,
                            "ops": ops}  # fmt: skip
            offsets[name] += int(array.size)
        records.append({"key": sample["key"], "split": split, "item": sample["item"], "sources": sample["sources"],
                        "arrays": arrays, "values": sample["values"]})  # fmt: skip
    with atomic_directory(folder) as tmp:
        for name in names:
            flat = [a.reshape(-1) for a in stored[name]]
            np.save(tmp / files[name], np.concatenate(flat) if flat else np.zeros(0, encodings[name]["stored"]))
        atomic_write_text(tmp / RECORDS_NAME, "".join(json.dumps(r, allow_nan=False) + "\n" for r in records))
        atomic_write_json(tmp / SHARD_INDEX_NAME, {"stamp": stamp, "encodings": encodings, "arrays": files,
                                                   "keys": [r["key"] for r in records]})  # fmt: skip
    return encodings


def _shard_valid(folder: Path, chunk: Sequence[tuple[str, Mapping[str, Any]]], stamp: str) -> bool:
    index = folder / SHARD_INDEX_NAME
    if not index.is_file() or not (folder / RECORDS_NAME).is_file():
        return False
    shard = json.loads(index.read_text(encoding="utf-8"))
    if shard.get("stamp") != stamp or shard.get("keys") != [item_key(item) for _, item in chunk]:
        return False
    records = [json.loads(line) for line in (folder / RECORDS_NAME).read_text(encoding="utf-8").splitlines()]
    for record, (_, item) in zip(records, chunk, strict=True):
        if record["key"] != item_key(item) or record["item"] != to_json(dict(item)):
            return False
    return not source_changes([s for r in records for s in r["sources"]])


def build_cache(bundle: str | Path, datalist: str | Path, output: str | Path, splits: Sequence[str] | None = None,
                config: str = "train.json", overrides: Mapping[str, Any] | None = None,
                dataset_dir: str | Path | None = None, num_workers: int = 0, shard_size: int = 512,
                dtype: str = "auto", progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Prepare (or finish preparing) the cache of ``bundle``'s deterministic transforms for ``datalist``.

    Args:
        bundle: bundle folder (its ``configs/<config>`` defines ``load_transforms`` and ``train#dataset#data``).
        datalist: datalist JSON; its image paths are resolved as the bundle resolves them.
        output: cache folder to write (new, empty, or an earlier cache / interrupted build to resume).
        splits: datalist splits to cache (default: those of training, validation, test present).
        config: the bundle config to read.
        overrides: config values the bundle will run with (``{"image_size": 512}``): part of the fingerprint.
        dataset_dir: the bundle's ``dataset_dir`` (default: the datalist's folder).
        num_workers: DataLoader worker processes preparing samples.
        shard_size: samples per shard.
        dtype: ``"auto"`` (lossless) or a lossy ``"uint8"`` / ``"uint16"`` for float images (error recorded).
        progress: show a tqdm progress bar.

    Returns:
        The cache index written to ``output/cache.json``.

    Raises:
        ConfigError: bad arguments, a bundle config without ``load_transforms``, or ``output`` a foreign folder.
        DataError: a datalist item or image cannot be read (already finished shards stay and are reused).
    """
    if dtype not in ENCODING_MODES:
        raise ConfigError(f"unknown dtype {dtype!r}; choose from: {', '.join(ENCODING_MODES)}")
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ConfigError(f"shard_size must be an integer >= 1, got {shard_size!r}")
    bundle, datalist, root = Path(bundle).resolve(), Path(datalist).resolve(), Path(output)
    check_output_folder(root)
    parser = parse_bundle(bundle, config, datalist, Path(dataset_dir or datalist.parent).resolve(), overrides or {})
    plan = plan_items(parser, config, datalist, splits)
    load_transforms = parser.get_parsed_content("load_transforms")
    preprocessing = preprocessing_record(load_transforms)
    stamp = preprocessing_sha256({"preprocessing": preprocessing, "dtype": dtype})
    chunks = [plan[i: i + shard_size] for i in range(0, len(plan), shard_size)]
    names = [f"{i:05d}" for i in range(len(chunks))]
    shards_dir = make_directory(root / SHARDS_DIR)
    todo = [i for i, chunk in enumerate(chunks) if not _shard_valid(shards_dir / names[i], chunk, stamp)]
    leftovers = sorted(p for p in shards_dir.iterdir() if p.is_dir() and p.name not in names)
    if todo or leftovers:  # the folder reads as unfinished until the new cache.json is written
        (root / INDEX_NAME).unlink(missing_ok=True)
    logger.info("prepare-cache %s: %d item(s) in %d shard(s); %d shard(s) to build, %d kept from an earlier build",
                root, len(plan), len(chunks), len(todo), len(chunks) - len(todo))
    _build_shards(shards_dir, [(names[i], chunks[i]) for i in todo], load_transforms, stamp, dtype, num_workers,
                  progress)  # fmt: skip
    for leftover in leftovers:
        shutil.rmtree(leftover)
    encodings = _summarise_encodings([shards_dir / name for name in names])
    counts = {s: sum(1 for split, _ in plan if split == s) for s in dict.fromkeys(split for split, _ in plan)}
    index = {"format": CACHE_FORMAT, "bundle": bundle.name, "config": config, "dtype": dtype,
             "preprocessing": preprocessing, "preprocessing_sha256": preprocessing_sha256(preprocessing),
             "stamp": stamp, "splits": counts, "items": len(plan), "shard_size": shard_size, "shards": names,
             "encodings": encodings}  # fmt: skip
    atomic_write_json(root / INDEX_NAME, index)
    return index


def _summarise_encodings(folders: Sequence[Path]) -> dict[str, Any]:
    """Per key, the shards' common encoding, or the stored dtypes they use (``"float32 / uint8"``) when they differ."""
    found: dict[str, list[dict[str, Any]]] = {}
    for folder in folders:
        shard = json.loads((folder / SHARD_INDEX_NAME).read_text(encoding="utf-8"))
        for key, encoding in shard["encodings"].items():
            found.setdefault(key, []).append(encoding)
    summary = {}
    for key, encodings in found.items():
        summary[key] = dict(encodings[0])
        if any(e != encodings[0] for e in encodings):
            stored = " / ".join(sorted({e["stored"] for e in encodings}))
            summary[key] = {"stored": stored, "dtype": encodings[0]["dtype"]}
        errors = [e["max_abs_error"] for e in encodings if "max_abs_error" in e]
        if errors:
            summary[key]["max_abs_error"] = max(errors)
        logger.info("prepare-cache: %r stored as %s (the bundle's %s, %s)", key, summary[key]["stored"],
                    summary[key]["dtype"], f"lossy: max error {max(errors):.3g}" if errors else "bit-exact")
    return summary


def _build_shards(shards_dir: Path, todo: Sequence[tuple[str, Sequence[tuple[str, Any]]]], load_transforms: Any,
                  stamp: str, dtype: str, num_workers: int, progress: bool) -> None:  # fmt: skip
    """Prepare the samples of the shards in ``todo`` in order and write each shard as soon as it is complete."""
    items = [item for _, chunk in todo for _, item in chunk]
    loader = DataLoader(_Samples(items, load_transforms), batch_size=None, shuffle=False, num_workers=num_workers,
                        collate_fn=_keep)  # fmt: skip
    samples = iter(loader)
    with tqdm(total=len(items), desc="prepare-cache", unit="img", disable=not progress) as bar:
        for name, chunk in todo:
            shard = []
            for _ in chunk:
                shard.append(next(samples))
                bar.update(1)
            write_shard(shards_dir / name, shard, [split for split, _ in chunk], stamp, dtype)
