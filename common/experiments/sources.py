"""Weight sources of a cell: check before running that every stage-1 source exists, resolve ``pretrained``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.errors import ConfigError

if TYPE_CHECKING:
    from common.experiments.grid import Grid

__all__ = ["check_stage1"]


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
                assert grid.pretraining is not None  # parse_grid checked it
                grid.pretraining.bundle.check_arch(backbone)
