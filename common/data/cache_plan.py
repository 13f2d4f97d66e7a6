"""Which items a prepared-image cache holds, and from which bundle config: the bundle's ``configs/train.json`` parsed
with ``monai.bundle.ConfigParser`` (plus overrides) and its own ``train#dataset#data`` expression evaluated for each
split, so the items and their absolute paths are exactly those the bundle will read.

Example:
    >>> parser = parse_bundle(Path("bundles/chest_xray_classification"), "train.json", dl, root, {})  # doctest: +SKIP
    >>> plan = plan_items(parser, "train.json", dl, ["training"])  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

from common.data.cache_read import INDEX_NAME, SHARDS_DIR, item_key
from common.errors import ConfigError

__all__ = ["SPLITS", "parse_bundle", "plan_items", "check_output_folder"]

#: Splits cached when none are named, in this order (the first split an image appears in is the one recorded).
SPLITS = ("training", "validation", "test")


def parse_bundle(bundle: Path, config: str, datalist: Path, dataset_dir: Path,
                 overrides: Mapping[str, Any]) -> ConfigParser:  # fmt: skip
    """The bundle's ``configs/<config>`` with ``bundle_root``, ``dataset_dir``, ``datalist`` and ``overrides`` set.

    Raises:
        ConfigError: the config file is missing or defines no ``load_transforms``.
    """
    config_file = bundle / "configs" / config
    if not config_file.is_file():
        raise ConfigError(f"bundle config {config_file} not found; --bundle must be a bundle folder holding "
                          f"configs/{config}")  # fmt: skip
    parser = ConfigParser()
    parser.read_config(str(config_file))
    parser["bundle_root"] = str(bundle)
    parser["dataset_dir"], parser["datalist"] = str(dataset_dir), str(datalist)
    for key, value in overrides.items():
        parser[key] = value
    if "load_transforms" not in parser:
        raise ConfigError(f"{config_file} has no 'load_transforms' key (the deterministic transforms to cache)")
    return parser


def split_items(parser: ConfigParser, config: str, split: str) -> list[dict[str, Any]]:
    """The items of ``split`` as the bundle loads them: its ``train#dataset#data`` with ``'training'`` -> ``split``.

    Raises:
        ConfigError: ``train#dataset#data`` does not name split ``'training'`` exactly once.
        DataError: the datalist or an image is missing (the bundle's own check).
    """
    from common.data.datalist import require_inputs

    expression = parser.get("train#dataset#data") if "train#dataset#data" in parser else None
    if not isinstance(expression, str) or expression.count("'training'") != 1:
        raise ConfigError(f"configs/{config}: expected 'train#dataset#data' to load split 'training' "
                          f"(load_datalist(@datalist, 'training', ...)); found {expression!r}")  # fmt: skip
    parser[f"cache_items_{split}"] = expression.replace("'training'", repr(split))
    parser.parse(reset=True)
    items = parser.get_parsed_content(f"cache_items_{split}")
    require_inputs(items)
    return list(items)


def plan_items(parser: ConfigParser, config: str, datalist: Path,
               splits: Sequence[str] | None) -> list[tuple[str, dict[str, Any]]]:  # fmt: skip
    """``(split, item)`` for every image of ``splits`` (default: those of :data:`SPLITS` present), each image once.

    Raises:
        ConfigError: no split named and none of :data:`SPLITS` in the datalist.
    """
    present = json.loads(datalist.read_text(encoding="utf-8")) if datalist.is_file() else {}
    chosen = list(splits) if splits else [s for s in SPLITS if s in present]
    if not chosen:
        raise ConfigError(f"{datalist}: no split of {list(SPLITS)} found; name them with --splits")
    plan, seen = [], set()
    for split in chosen:
        for item in split_items(parser, config, split):
            if item_key(item) not in seen:
                seen.add(item_key(item))
                plan.append((split, item))
    return plan


def check_output_folder(root: Path) -> None:
    """Refuse (ConfigError) to write a cache into a non-empty folder that is not one already."""
    if root.exists() and any(root.iterdir()) and not ((root / INDEX_NAME).exists() or (root / SHARDS_DIR).exists()):
        raise ConfigError(f"--output {root} is a non-empty folder that is not a prepared-image cache; choose an empty "
                          f"or new folder")  # fmt: skip
