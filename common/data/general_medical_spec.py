"""The sources of the stage-2 general medical dataset: what a sources file holds and how each entry is checked.

A sources file (YAML or JSON) is a list of sources, or ``{"sources": [...]}``; each source is a mapping:

``name`` (required)
    unique folder-safe name (letters, digits, ``_ . -``), recorded on every item as ``source``.
``kind`` (required)
    ``datalist`` (one of our datalist JSONs), ``medmnist`` (a MedMNIST ``.npz``) or ``folder``
    (``path/<class name>/<images>``, single-label).
``path`` (required)
    the datalist JSON, the npz file or the class-folder root; relative paths start at the sources file's folder.
``modality`` (required)
    e.g. ``xray``, ``histology``, ``mammography``; classes are identified by ``modality/class``.
``class_names`` (optional)
    a list, or the name of a known set (:data:`KNOWN_CLASS_SETS`: ``chestxray14``, ``bcss``, ...).
``base_dir`` (optional, datalist only)
    folder the datalist's relative paths start from; default: the datalist's folder.
``mask_codes``, ``class_map`` (optional, segmentation datalists only)
    ``mask_codes: bcss`` (default) reads masks as BCSS detailed codes grouped by ``class_map`` (default: the
    BCSS main groups tumor, stroma, inflammatory, necrosis, other); ``mask_codes: index`` reads mask value
    ``i`` (1..K) as ``class_names[i - 1]``. Value 0 (and BCSS ``exclude``) is never a class.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from common.data.bcss_codes import BCSS_DEFAULT_CLASS_MAP
from common.data.chestxray14 import CHESTXRAY14_FINDINGS
from common.errors import ConfigError, DataError

__all__ = ["SOURCE_KINDS", "MASK_CODES", "KNOWN_CLASS_SETS", "SourceSpec", "parse_source", "parse_sources",
           "read_sources"]  # fmt: skip

SOURCE_KINDS = ("datalist", "medmnist", "folder")
MASK_CODES = ("bcss", "index")
#: Class-name sets a source may name instead of listing them (label order of our adapters).
KNOWN_CLASS_SETS: dict[str, tuple[str, ...]] = {
    "chestxray14": tuple(CHESTXRAY14_FINDINGS),
    "chestmnist": tuple(CHESTXRAY14_FINDINGS),
    "bcss": tuple(BCSS_DEFAULT_CLASS_MAP),
    "cbis-ddsm": ("malignant",),
    "inbreast": ("malignant",),
}
_REQUIRED = ("name", "kind", "path", "modality")
_OPTIONAL = ("class_names", "base_dir", "mask_codes", "class_map")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class SourceSpec:
    """One checked source entry (see the module docstring for the meaning of each field)."""

    name: str
    kind: str
    path: Path
    modality: str
    class_names: tuple[str, ...] | None = None
    base_dir: Path | None = None
    mask_codes: str = "bcss"
    class_map: dict[str, list[str]] | None = None


def _choice(value: Any, choices: Sequence[str], what: str) -> str:
    if value not in choices:
        close = difflib.get_close_matches(str(value), list(choices), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"{what}: unknown value {value!r}; {hint}choose from: {', '.join(choices)}")
    return str(value)


def _class_names(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return KNOWN_CLASS_SETS[_choice(value, list(KNOWN_CLASS_SETS), f"{where} class_names (a known set)")]
    if not isinstance(value, Sequence) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: class_names must be a non-empty list of names or a known set "
                          f"({', '.join(KNOWN_CLASS_SETS)}); got {value!r}")  # fmt: skip
    repeated = sorted({v for v in value if list(value).count(v) > 1})
    if repeated:
        raise ConfigError(f"{where}: class_names repeat {repeated}; each class must appear once")
    return tuple(value)


def _path(value: Any, base: Path | None, where: str, key: str) -> Path:
    if not isinstance(value, str | os.PathLike) or not str(value):
        raise ConfigError(f"{where}: {key} must be a path, got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() or base is None else base / path


def parse_source(raw: Mapping[str, Any] | SourceSpec, index: int = 0, base: Path | None = None) -> SourceSpec:
    """Check one source mapping and return it as a :class:`SourceSpec`.

    Args:
        raw: the mapping (keys in the module docstring), or an already parsed spec (returned as is).
        index: its position in the list, for messages.
        base: folder relative paths start from (the sources file's folder); None keeps them as given.

    Raises:
        ConfigError: a missing or unknown key, a bad name, kind, modality, class list or mask setting.
    """
    if isinstance(raw, SourceSpec):
        return raw
    if not isinstance(raw, Mapping):
        raise ConfigError(f"source {index}: expected a mapping with keys {', '.join(_REQUIRED)}; got {raw!r}")
    name = raw.get("name")
    where = f"source {index} ({name!r})" if name else f"source {index}"
    missing = [key for key in _REQUIRED if key not in raw]
    unknown = [key for key in raw if key not in _REQUIRED + _OPTIONAL]
    if missing or unknown:
        raise ConfigError(f"{where}: missing key(s) {missing}, unknown key(s) {unknown}; "
                          f"required: {', '.join(_REQUIRED)}; optional: {', '.join(_OPTIONAL)}")  # fmt: skip
    if not isinstance(name, str) or not _SAFE_NAME.match(name):
        raise ConfigError(f"{where}: name must be letters, digits, '_', '.' or '-' (a folder name); got {name!r}")
    modality = raw["modality"]
    if not isinstance(modality, str) or not modality.strip() or "/" in modality:
        raise ConfigError(f"{where}: modality must be a non-empty name without '/', got {modality!r}")
    kind = _choice(raw["kind"], SOURCE_KINDS, f"{where} kind")
    if kind != "datalist" and any(key in raw for key in ("base_dir", "mask_codes", "class_map")):
        raise ConfigError(f"{where}: base_dir, mask_codes and class_map apply to kind 'datalist' only")
    class_map = raw.get("class_map")
    if class_map is not None and (not isinstance(class_map, Mapping) or not class_map):
        raise ConfigError(f"{where}: class_map must map group names to lists of BCSS label names, got {class_map!r}")
    return SourceSpec(
        name=name, kind=kind, path=_path(raw["path"], base, where, "path"), modality=modality.strip(),
        class_names=_class_names(raw.get("class_names"), where),
        base_dir=_path(raw["base_dir"], base, where, "base_dir") if raw.get("base_dir") is not None else None,
        mask_codes=_choice(raw.get("mask_codes", "bcss"), MASK_CODES, f"{where} mask_codes"),
        class_map={str(k): list(v) for k, v in class_map.items()} if class_map is not None else None,
    )  # fmt: skip


def parse_sources(sources: Sequence[Mapping[str, Any] | SourceSpec], base: Path | None = None) -> list[SourceSpec]:
    """Check every source and that their names are unique.

    Raises:
        ConfigError: no source, a bad source (see :func:`parse_source`) or a repeated name.
    """
    if isinstance(sources, Mapping | str) or not isinstance(sources, Sequence) or not sources:
        raise ConfigError(f"expected a non-empty list of sources, got {sources!r}")
    specs = [parse_source(raw, index, base) for index, raw in enumerate(sources)]
    names = [spec.name for spec in specs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"source names must be unique; repeated: {repeated}")
    return specs


def read_sources(path: str | os.PathLike) -> list[SourceSpec]:
    """Read a sources file (YAML or JSON: a list of sources, or ``{"sources": [...]}``).

    Relative ``path`` / ``base_dir`` entries start at the sources file's folder.

    Raises:
        DataError: the file is missing or not valid YAML/JSON.
        ConfigError: its content is not a valid list of sources.

    Example:
        >>> specs = read_sources("sources.yaml")  # doctest: +SKIP
        >>> [spec.name for spec in specs]  # doctest: +SKIP
        ['chestxray14', 'bcss']
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(f"sources file not found: {file}")
    try:
        text = file.read_text(encoding="utf-8")
        content = json.loads(text) if file.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as err:
        raise DataError(f"{file}: not valid {'JSON' if file.suffix.lower() == '.json' else 'YAML'} ({err})") from err
    if isinstance(content, Mapping) and set(content) == {"sources"}:
        content = content["sources"]
    try:
        return parse_sources(content, base=file.parent)
    except ConfigError as err:
        raise ConfigError(f"{file}: {err}") from err
