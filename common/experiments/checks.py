"""Checks of a parsed grid against the project: weight sources that must exist, override keys bundles define."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from common.errors import ConfigError
from common.experiments.bundles import BundleInfo
from common.experiments.specs import Grid

__all__ = ["check_overrides", "check_stage1", "check_stage2_bundles"]


def _check_imagenet(backbone: str, where: str) -> None:
    from common.networks import get_arch, imagenet_weights_file

    spec = get_arch(backbone)
    if spec.imagenet_loader is not None:
        return
    if spec.imagenet_weights is None:
        raise ConfigError(f"{where}: {backbone} has no ImageNet weights source; use stage1: none")
    file = imagenet_weights_file(backbone)
    if not file.is_file():
        raise ConfigError(
            f"{where}: stage1 imagenet needs {backbone}'s ImageNet file {file} (medxfer never downloads). Copy "
            f"{file.name} into {file.parent} or set TORCH_HOME to a folder holding hub/checkpoints/{file.name}; "
            f"or drop imagenet from stage1"
        )


def check_stage1(grid: Grid) -> None:
    """Raise ``ConfigError`` if a cell would need ImageNet weights or a stage-2 backbone that cannot exist.

    ``stage1: imagenet`` needs the backbone's ImageNet file in the torch hub cache (or a registry loader);
    ``stage2: medical`` needs an architecture with a classifier backbone the pretraining bundle can build.
    """
    for task in grid.tasks:
        for arch in task.architectures:
            backbone = task.bundle.backbone(arch)
            where = f"bundle {task.bundle.name}, architecture {arch}"
            uses_stage1 = any(s in ("none", "medical") for s in grid.stage2)
            if "imagenet" in grid.stage1 and uses_stage1:
                if backbone is None:
                    raise ConfigError(f"{where}: no classifier backbone, so no ImageNet weights; use stage1: none")
                _check_imagenet(backbone, where)
            if "medical" in grid.stage2:
                if backbone is None:
                    raise ConfigError(f"{where}: no classifier backbone to take stage-2 weights; drop stage2: medical")
                if grid.pretraining is not None:  # parse_grid refuses stage2: medical without it
                    grid.pretraining.bundle.check_arch(backbone)


def _check_keys(keys: Iterable[str], bundle: BundleInfo, where: str, ids: set[str] | frozenset[str]) -> None:
    for key in keys:
        if key not in ids:
            close = difflib.get_close_matches(key, sorted(ids), n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise ConfigError(f"{where}: bundle {bundle.name} has no config id {key!r}, so the override would do "
                              f"nothing{hint}")


def check_overrides(grid: Grid) -> None:
    """Raise ``ConfigError`` for an override key the bundle does not define (MONAI would add it silently).

    Task overrides must be top-level ids of the task bundle's ``train.json`` or ``evaluate.json``; stage-2
    overrides, of the pretraining bundle's ``train.json`` (stage 2 is trained, not evaluated, by the runner).
    """
    for i, task in enumerate(grid.tasks):
        keys: Mapping[str, Any] = {**grid.overrides, **task.overrides}
        _check_keys(keys, task.bundle, f"overrides of tasks[{i}]", task.bundle.config_ids)
    if grid.pretraining is not None:
        bundle = grid.pretraining.bundle
        _check_keys(grid.pretraining.overrides, bundle, "pretraining.overrides", bundle.train_ids)


def check_stage2_bundles(grid: Grid) -> None:
    """Raise ``ConfigError`` if a ``stage2: bundle:<path>`` checkpoint does not fit a task architecture.

    The hand-off runs exactly as in the cell (:func:`common.networks.load_pretrained` into a freshly built
    network of the task's architecture), once per (checkpoint, bundle factory, architecture), so a DenseNet
    cell pointed at a ResNet stage-2 bundle fails here, not after other cells have trained.
    """
    from common.errors import WeightsError
    from common.networks import load_pretrained

    checked: set[tuple[str, str, str]] = set()
    for value in (s for s in grid.stage2 if s.startswith("bundle:")):
        for task in grid.tasks:
            for arch in task.architectures:
                key = (value, task.bundle.factory, arch)
                if key in checked:
                    continue
                checked.add(key)
                if task.bundle.backbone(arch) is None:
                    raise ConfigError(f"bundle {task.bundle.name}, architecture {arch}: no classifier backbone to "
                                      f"take the stage-2 weights of {value}")
                network = task.bundle.build_network(arch)
                try:
                    load_pretrained(network, value, arch)
                except WeightsError as err:
                    raise ConfigError(f"grid key 'stage2': {value} does not fit bundle {task.bundle.name} with "
                                      f"architecture {arch}: {err}") from err
