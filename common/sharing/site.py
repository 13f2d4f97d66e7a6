"""A receiving site's adaptation of a shared bundle: ``site.json``, plain settings only, never code.

A site runs a received bundle on its own data without editing it (its files stay as signed). What differs at
the site goes into a ``site.json`` kept beside the received bundle (or given with ``--site``)::

    {
      "dataset_dir": "/data/our_cxr",               # the site's dataset folder (or --dataset-dir)
      "datalist": "/data/our_cxr/datalist.json",    # default: <dataset_dir>/datalist.json
      "labels": {                                   # only when the site's labels are spelled or ordered differently
        "names": ["Pleural effusion", "Cardiomegaly", "Mass"],   # the site datalist's label order
        "map": {"Pleural effusion": "Effusion"}                  # site name -> the bundle's name
      },
      "settings": {"num_workers": 2, "val_batch_size": 8}        # literal values of the bundle's own settings
    }

Why settings only: a site file is not covered by the sender's signature, so it must not be able to run code.
``settings`` may only set top-level keys the bundle's ``train.json`` already holds as literals, to a JSON literal
(no ``$`` expression, ``@`` reference or ``%`` macro anywhere in it). The preprocessing a model was trained with
comes from its checkpoint card and a site setting cannot change it (evaluation refuses the mismatch by name).
With ``labels``, the site datalist's label vectors are re-ordered into the bundle's classes (from the checkpoint
card): a bundle class the site does not label is unknown (``null``, skipped by the metrics), a site label the
bundle does not know is dropped; both are reported.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

from common.errors import ConfigError
from common.io import atomic_write_json

__all__ = ["SITE_FILE", "load_site", "remap_datalist", "site_settings"]

SITE_FILE = "site.json"
_KEYS = {"dataset_dir", "datalist", "labels", "settings"}
_RESERVED = {"bundle_root", "ckpt_dir", "output_dir", "log_dir", "dataset_dir", "datalist", "class_names"}


def load_site(path: str | os.PathLike | None) -> dict[str, Any]:
    """The site file at ``path`` (``{}`` when ``path`` is None), checked for shape.

    Raises:
        ConfigError: not a JSON object, an unknown key, or a malformed ``labels`` block (named).
    """
    if path is None:
        return {}
    file = Path(path)
    try:
        site = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{file}: site file not found") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{file}: not valid JSON ({exc})") from exc
    if not isinstance(site, dict):
        raise ConfigError(f"{file}: expected a JSON object with keys among {sorted(_KEYS)}")
    unknown = sorted(set(site) - _KEYS)
    if unknown:
        raise ConfigError(f"{file}: unknown key(s) {unknown}; a site file holds {sorted(_KEYS)}")
    labels = site.get("labels")
    if labels is not None:
        names, mapping = labels.get("names") if isinstance(labels, dict) else None, (labels or {}).get("map", {})
        if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
            raise ConfigError(f"{file}: labels.names must be the site datalist's label names, in its order")
        if not (isinstance(mapping, dict) and all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in mapping.items())):
            raise ConfigError(f"{file}: labels.map must map site label names to the bundle's names")
        stray = sorted(set(mapping) - set(names))
        if stray:
            raise ConfigError(f"{file}: labels.map names {stray}, which are not in labels.names")
    return site


def _has_code(value: Any) -> bool:
    if isinstance(value, str):
        return value.startswith(("$", "@", "%")) or "@" in value or "%" in value
    if isinstance(value, list):
        return any(_has_code(v) for v in value)
    if isinstance(value, dict):
        return any(_has_code(k) or _has_code(v) for k, v in value.items())
    return False


def site_settings(bundle_dir: str | os.PathLike, site: dict[str, Any], where: str = SITE_FILE) -> dict[str, Any]:
    """The checked ``settings`` of ``site`` for the bundle at ``bundle_dir``.

    Raises:
        ConfigError: a key the bundle's ``train.json`` does not hold as a literal (or reserves), or a value that
            is not a JSON literal (an expression, a reference or a macro).
    """
    settings = site.get("settings") or {}
    if not isinstance(settings, dict):
        raise ConfigError(f"{where}: settings must be an object of bundle settings")
    config = ConfigParser.load_config_file(str(Path(bundle_dir) / "configs" / "train.json"))
    literal = {k for k, v in config.items() if not _has_code(v) and not isinstance(v, dict)}
    for key, value in settings.items():
        if key in _RESERVED or key not in literal:
            allowed = ", ".join(sorted(literal - _RESERVED))
            raise ConfigError(f"{where}: settings.{key} is not a literal setting of this bundle; allowed: {allowed}")
        if _has_code(value) or not isinstance(value, (str, int, float, bool, list)):
            raise ConfigError(f"{where}: settings.{key} = {value!r} must be a plain JSON value (no $, @ or %)")
    return dict(settings)


def _reorder(label: Any, site_index: dict[str, int], n_site: int, bundle_classes: list[str], where: str) -> list[Any]:
    if not isinstance(label, list) or len(label) != n_site:
        raise ConfigError(f"{where}: label {label!r} has not the {n_site} values of labels.names")
    out: list[Any] = []
    for name in bundle_classes:
        value = label[site_index[name]] if name in site_index else None
        out.append(None if isinstance(value, float) and math.isnan(value) else value)
    return out


def remap_datalist(datalist: str | os.PathLike, site: dict[str, Any], bundle_classes: list[str],
                   output: str | os.PathLike) -> dict[str, Any]:
    """Write ``datalist`` with labels in ``bundle_classes`` order to ``output``; returns what was mapped.

    Returns:
        ``{"mapped": {bundle name: site name}, "unknown_at_site": [...], "dropped": [...]}``.

    Raises:
        ConfigError: a mapping onto a name the bundle does not have, or an item whose label length is wrong.
    """
    labels = site["labels"]
    mapping: dict[str, str] = labels.get("map", {})
    to_bundle = {name: mapping.get(name, name) for name in labels["names"]}
    wrong = sorted(f"{s} -> {b}" for s, b in to_bundle.items() if s in mapping and b not in bundle_classes)
    if wrong:
        raise ConfigError(f"labels.map: {wrong} name classes the bundle does not have; it has {bundle_classes}")
    site_index = {b: i for i, (_, b) in enumerate(to_bundle.items()) if b in bundle_classes}
    content = json.loads(Path(datalist).read_text(encoding="utf-8"))
    for split, items in content.items():
        if not isinstance(items, list):
            continue
        for index, item in enumerate(items):
            if isinstance(item, dict) and "label" in item:
                item["label"] = _reorder(item["label"], site_index, len(to_bundle), bundle_classes,
                                         f"{datalist} {split}[{index}]")
    atomic_write_json(output, content)
    return {"mapped": {b: s for s, b in to_bundle.items() if b in bundle_classes},
            "unknown_at_site": [c for c in bundle_classes if c not in site_index],
            "dropped": [s for s, b in to_bundle.items() if b not in bundle_classes]}
