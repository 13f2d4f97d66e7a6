"""Grid files: what a study compares, read from YAML/JSON and checked before anything runs.

A grid names task bundles, architectures, the stage-1 source (``imagenet`` / ``none``), the stage-2
source (``none``, ``medical`` = the grid's own ``pretraining`` run, or ``bundle:<path>`` of an already
trained stage-2 bundle), fine-tuning strategies (the overlays in ``configs/finetune/`` with parameters),
seeds and overrides. :func:`load_grid` validates every name against the project (bundles, registries,
overlay keys, data folders, ImageNet files) so a typo fails in a second, not after an hour of training.

Example grid::

    name: chest-strategies
    tasks:
      - bundle: chest_xray_classification
        data: {dataset_dir: /data/ChestX-ray14}        # datalist defaults to <dataset_dir>/datalist.json
    architectures: [densenet121, resnet50]
    stage1: [imagenet]
    stage2: [none]
    strategies: [ft, lp, {name: lp_ft, params: {lp_epochs: 2}}]
    seeds: [0, 1, 2, 3, 4]
    exclude: [{arch: resnet50, strategy: lp}]        # optional: drop matching cells
    overrides: {epochs: 20, image_size: 224}

A task whose data is a federation (``data: {sites: {site-1: {dataset_dir: ...}, ...}}``, or the generated
``embedded: sites``) is trained in each mode of the grid's ``training`` axis (``local``: each site alone, one
``local-<site>`` cell per site; ``pooled``; ``federated``) as the ``federated`` block says (``rounds``,
``local_epochs``); every mode is evaluated on all sites' test splits pooled, so the modes are comparable.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from common.errors import ConfigError
from common.experiments.bundles import FINETUNE_DIR, bundle_info
from common.experiments.checks import check_overrides, check_stage1, check_stage2_bundles
from common.experiments.data import SITES_LAYOUT, embedded_layouts
from common.experiments.specs import DataSpec, Grid, PretrainSpec, StrategySpec, TaskSpec
from common.experiments.training import parse_training

__all__ = ["DataSpec", "Grid", "PretrainSpec", "StrategySpec", "TaskSpec", "load_grid", "parse_grid"]

#: Keys a grid sets per cell; overriding them by hand would silently break the comparison.
RESERVED_OVERRIDES = ("arch", "pretrained", "seed", "finetune", "bundle_root", "dataset_dir", "datalist")
_GRID_KEYS = {"name", "tasks", "architectures", "stage1", "stage2", "strategies", "seeds", "repeats", "overrides",
              "pretraining", "baseline", "tracking", "exclude", "training", "federated"}
_CELL_KEYS = ("bundle", "modality", "arch", "stage1", "stage2", "strategy", "seed", "training")
#: what ``embedded: sites`` passes to common.synthetic.sites.generate_sites
_SITES_GENERATE, _SITES_SPLIT = {"n_patients", "image_size", "seed"}, {"val_fraction", "test_fraction"}
_SITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def _as_list(value: Any, key: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, int, dict)):
        return [value]
    if isinstance(value, list):
        return value
    raise ConfigError(f"grid key {key!r}: expected a list, got {type(value).__name__}")


def _mapping(value: Any, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"grid key {key!r}: expected a mapping of key: value, got {type(value).__name__}")
    reserved = sorted(set(value) & set(RESERVED_OVERRIDES))
    if reserved and key.endswith("overrides"):
        raise ConfigError(f"grid key {key!r} sets {', '.join(reserved)}: the grid sets these per cell "
                          f"(use architectures / stage1 / stage2 / strategies / seeds / data instead)")
    return dict(value)


def _parse_strategy(entry: Any, index: int) -> StrategySpec:
    if isinstance(entry, str):
        spec = StrategySpec(entry)
    elif isinstance(entry, dict) and "name" in entry and set(entry) <= {"name", "params", "arch_params"}:
        by_arch = _mapping(entry.get("arch_params"), f"strategies[{index}].arch_params")
        spec = StrategySpec(str(entry["name"]), _mapping(entry.get("params"), f"strategies[{index}].params"),
                            {str(a): _mapping(v, f"strategies[{index}].arch_params.{a}") for a, v in by_arch.items()})
    else:
        raise ConfigError(f"grid key 'strategies[{index}]': expected a name or {{name: ..., params: {{...}}, "
                          f"arch_params: {{arch: {{...}}}}}}, got {entry!r}")
    if not spec.overlay.is_file():
        known = sorted(p.stem for p in FINETUNE_DIR.glob("*.json"))
        raise ConfigError(f"unknown strategy {spec.name!r} in strategies[{index}]; choose from: {', '.join(known)}")
    overlay_keys = set(json.loads(spec.overlay.read_text()))
    given = set(spec.params).union(*[set(v) for v in spec.arch_params.values()])
    unknown = sorted(given - overlay_keys - {"learning_rate", "weight_decay"})
    if unknown:
        raise ConfigError(f"strategy {spec.name!r} has no parameter {', '.join(unknown)}; its overlay "
                          f"{spec.overlay.name} sets: {', '.join(sorted(overlay_keys - {'finetune'}))}")
    return spec


def _parse_data(value: Any, key: str, base: Path) -> DataSpec:
    data = _mapping(value, key)
    unknown = sorted(set(data) - {"dataset_dir", "datalist", "embedded", "generate", "split", "sites"})
    if unknown:
        raise ConfigError(f"grid key {key!r}: unknown {', '.join(unknown)} (use dataset_dir + datalist, embedded, or "
                          f"sites)")
    if "sites" in data:
        return _parse_sites(data, key, base)
    if "embedded" in data:
        if "dataset_dir" in data or "datalist" in data:
            raise ConfigError(f"grid key {key!r}: give either embedded or dataset_dir/datalist, not both")
        return DataSpec(embedded=str(data["embedded"]), generate=_mapping(data.get("generate"), key + ".generate"),
                        split=_mapping(data.get("split"), key + ".split"))
    if "dataset_dir" not in data:
        raise ConfigError(f"grid key {key!r}: dataset_dir is required (the folder in the dataset's own layout)")
    root = (base / os.path.expanduser(str(data["dataset_dir"]))).resolve()
    datalist = (base / os.path.expanduser(str(data["datalist"]))).resolve() if "datalist" in data else (
        root / "datalist.json")
    if not root.is_dir():
        raise ConfigError(f"grid key {key}.dataset_dir: folder not found: {root}")
    if not datalist.is_file():
        raise ConfigError(f"grid key {key}.datalist: file not found: {datalist}; build it with "
                          f"`python -m common prepare-data ...` (see the bundle's docs/README.md)")
    return DataSpec(dataset_dir=root, datalist=datalist)


def _parse_sites(data: dict[str, Any], key: str, base: Path) -> DataSpec:
    """``{sites: {name: <data>, ...}}``: each site with a task's data entry (not another federation)."""
    if set(data) != {"sites"}:
        raise ConfigError(f"grid key {key!r}: sites lists every site's data; give nothing else beside it")
    sites = _mapping(data["sites"], f"{key}.sites")
    if not sites:
        raise ConfigError(f"grid key '{key}.sites' is empty: name at least one site (site-1: {{dataset_dir: ...}})")
    parsed = {}
    for name, entry in sites.items():
        where = f"{key}.sites.{name}"
        if not _SITE_NAME.match(str(name)) or name == "server":
            raise ConfigError(f"grid key {where!r}: a site name is letters, digits, '-' or '_' (not 'server')")
        if isinstance(entry, dict) and "sites" in entry:
            raise ConfigError(f"grid key {where!r}: a site's data cannot itself be a federation")
        parsed[str(name)] = _parse_data(entry, where, base)
        _check_embedded(parsed[str(name)], where)
    return DataSpec(sites=parsed)


def _check_embedded(spec: DataSpec, key: str) -> None:
    if spec.embedded is not None and spec.embedded not in (known := embedded_layouts()):
        raise ConfigError(f"grid key {key}.embedded: unknown {spec.embedded!r}; choose from: "
                          f"{', '.join(sorted(known))}")
    if spec.embedded == SITES_LAYOUT:
        bad = sorted(set(spec.generate) - _SITES_GENERATE) + sorted(set(spec.split) - _SITES_SPLIT)
        if bad:
            raise ConfigError(f"grid key {key}: embedded sites takes generate {sorted(_SITES_GENERATE)} and split "
                              f"{sorted(_SITES_SPLIT)}; unknown {', '.join(bad)}")


def _site_names(spec: DataSpec) -> tuple[str, ...]:
    """The sites of a federation's data (``()`` for one dataset); ``embedded: sites`` has the generator's."""
    if spec.embedded == SITES_LAYOUT:
        from common.synthetic.sites import DEFAULT_SITES

        return tuple(DEFAULT_SITES)
    return tuple(spec.sites)


def _parse_task(entry: Any, index: int, archs: list[Any], base: Path) -> TaskSpec:
    key = f"tasks[{index}]"
    if isinstance(entry, str):
        entry = {"bundle": entry}
    if not isinstance(entry, dict) or "bundle" not in entry:
        raise ConfigError(f"grid key {key!r}: expected {{bundle: <name or path>, data: {{...}}}}, got {entry!r}")
    unknown = sorted(set(entry) - {"name", "modality", "bundle", "data", "architectures", "overrides", "metric"})
    if unknown:
        raise ConfigError(f"grid key {key!r}: unknown {', '.join(unknown)}")
    info = bundle_info(str(entry["bundle"]), base)
    task_archs = [str(a) for a in _as_list(entry.get("architectures", archs or [info.default_arch]), key)]
    for arch in task_archs:
        info.check_arch(arch)
    if "data" not in entry:
        raise ConfigError(f"grid key {key}: data is required (dataset_dir/datalist, or embedded: <layout>)")
    data = _parse_data(entry["data"], f"{key}.data", base)
    _check_embedded(data, f"{key}.data")
    name = str(entry.get("name", info.name))
    return TaskSpec(info, data, tuple(task_archs), _mapping(entry.get("overrides"), f"{key}.overrides"),
                    str(entry.get("metric", info.metric)), name, str(entry.get("modality", name)), _site_names(data))


def _parse_pretraining(value: Any, base: Path) -> PretrainSpec:
    section = _mapping(value, "pretraining")
    unknown = sorted(set(section) - {"bundle", "data", "overrides"})
    if unknown:
        raise ConfigError(f"grid key 'pretraining': unknown {', '.join(unknown)}")
    info = bundle_info(str(section.get("bundle", "medical_general_pretraining")), base)
    if "data" not in section:
        raise ConfigError("grid key 'pretraining': data is required (dataset_dir/datalist, or embedded: "
                          "general_medical)")
    data = _parse_data(section["data"], "pretraining.data", base)
    _check_embedded(data, "pretraining.data")
    if data.sites or data.embedded == SITES_LAYOUT:
        raise ConfigError("grid key 'pretraining.data': stage 2 trains on one dataset, not on sites")
    return PretrainSpec(info, data, _mapping(section.get("overrides"), "pretraining.overrides"))


def _parse_stage2(value: str, base: Path) -> str:
    """``none`` / ``medical`` as they are; ``bundle:<path>`` with the path made absolute against ``base``."""
    if value in ("none", "medical"):
        return value
    if not value.startswith("bundle:"):
        raise ConfigError(f"grid key 'stage2': {value!r}; use none, medical or bundle:<trained stage-2 bundle>")
    folder = (base / os.path.expanduser(value.removeprefix("bundle:"))).resolve()
    model = folder / "models" / "model.pt"
    if not model.is_file():
        raise ConfigError(f"grid key 'stage2': {value} has no trained checkpoint: expected {model}")
    return f"bundle:{folder}"


def parse_grid(raw: Any, base: str | os.PathLike = ".", source: Path | None = None) -> Grid:
    """Validate a grid given as a mapping (as read from YAML); relative paths are resolved against ``base``.

    Raises:
        ConfigError: unknown keys, bundles, architectures, strategies or parameters, missing data folders,
            a stage-1 source an architecture has no weights for, ``stage2: medical`` without ``pretraining``,
            override keys a bundle does not define, a baseline that is not one of the strategies, an unknown
            training mode, ``pooled`` / ``federated`` without a ``federated`` block or a task with sites.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"a grid file must hold a mapping of keys, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _GRID_KEYS)
    if unknown:
        raise ConfigError(f"unknown grid keys: {', '.join(unknown)}; valid keys: {', '.join(sorted(_GRID_KEYS))}")
    base_path = Path(base).resolve()
    archs = _as_list(raw.get("architectures"), "architectures")
    tasks = [_parse_task(t, i, archs, base_path) for i, t in enumerate(_as_list(raw.get("tasks"), "tasks"))]
    if not tasks:
        raise ConfigError("grid key 'tasks' is empty: name at least one task bundle")
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ConfigError(f"grid key 'tasks': two tasks are both named {max(names, key=names.count)!r}; give each "
                          f"task on the same bundle its own name: (e.g. name: chest_site_a)")
    stage1 = tuple(str(s) for s in _as_list(raw.get("stage1", ["imagenet"]), "stage1"))
    stage2 = tuple(_parse_stage2(str(s), base_path) for s in _as_list(raw.get("stage2", ["none"]), "stage2"))
    strategies = tuple(_parse_strategy(s, i) for i, s in enumerate(_as_list(raw.get("strategies", ["ft"]),
                                                                             "strategies")))
    if "seeds" in raw and "repeats" in raw:
        raise ConfigError("grid keys 'seeds' and 'repeats' both set: give the seed list or a repeat count")
    seeds = tuple(int(s) for s in _as_list(raw["seeds"], "seeds")) if "seeds" in raw else tuple(
        range(int(raw.get("repeats", 1))))
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"grid key 'seeds' must list distinct seeds, got {list(seeds)}")
    if len({s.label for s in strategies}) != len(strategies):
        raise ConfigError("grid key 'strategies' lists the same strategy and parameters twice")
    for value in stage1:
        if value not in ("imagenet", "none"):
            raise ConfigError(f"grid key 'stage1': {value!r} is not a stage-1 source; use imagenet or none")
    pretraining = _parse_pretraining(raw["pretraining"], base_path) if raw.get("pretraining") else None
    if "medical" in stage2 and pretraining is None:
        raise ConfigError("grid key 'stage2' lists 'medical' but the grid has no 'pretraining' section")
    exclude = []
    for i, rule in enumerate(_as_list(raw.get("exclude"), "exclude")):
        if not isinstance(rule, dict) or not rule or not set(rule) <= set(_CELL_KEYS):
            raise ConfigError(f"grid key 'exclude[{i}]': expected a mapping of {', '.join(_CELL_KEYS)} to values, "
                              f"got {rule!r}")
        exclude.append({k: str(v) for k, v in rule.items()})
    block = _mapping(raw["federated"], "federated") if raw.get("federated") is not None else None
    training, federated = parse_training(_as_list(raw.get("training", ["local"]), "training"), block, tasks)
    tracking = str(raw.get("tracking", "none"))
    if tracking not in ("none", "mlflow"):
        raise ConfigError(f"grid key 'tracking': {tracking!r}; use none or mlflow")
    grid = Grid(
        name=str(raw.get("name", source.stem if source else "grid")), tasks=tuple(tasks), stage1=stage1,
        stage2=stage2, strategies=strategies, seeds=seeds, overrides=_mapping(raw.get("overrides"), "overrides"),
        baseline=str(raw.get("baseline", "ft")), tracking=tracking, pretraining=pretraining, source=source,
        exclude=tuple(exclude), training=training, federated=federated,
    )
    labels = [s.label for s in strategies]
    if grid.baseline not in labels:
        raise ConfigError(f"grid key 'baseline': {grid.baseline!r} is not one of the grid's strategies "
                          f"({', '.join(labels)}); the paired tests compare every strategy with it")
    check_stage1(grid)
    check_overrides(grid)
    check_stage2_bundles(grid)
    return grid


def load_grid(path: str | os.PathLike) -> Grid:
    """Read and validate the grid file at ``path`` (YAML or JSON); relative data paths are against its folder."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"grid file not found: {file}")
    try:
        raw = yaml.safe_load(file.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"grid file {file} is not valid YAML: {err}") from err
    return parse_grid(raw, file.parent, source=file.resolve())

