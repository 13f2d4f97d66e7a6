"""The grid's training axis (``local`` / ``pooled`` / ``federated``) and its ``federated`` block, checked.

A task whose data is a federation (sites given one by one, or ``embedded: sites``) has cells in every mode of the
grid's ``training`` axis: ``local`` becomes one ``local-<site>`` cell per site (the site alone), ``pooled`` trains on
all sites' data together and ``federated`` runs FedAvg over the sites (NVFlare simulator). All of them train
``rounds * local_epochs`` epochs and are evaluated on every site's test split pooled, so they compare. A task on one
dataset has ``local`` cells only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from common.errors import ConfigError
from common.experiments.specs import TRAINING_MODES, FederatedSpec, TaskSpec

__all__ = ["FL_OVERLAYS", "parse_training"]

#: files a bundle needs to be trained federated (common.federated.site.FL_TRAIN_OVERLAY / FL_EVAL_OVERLAY)
FL_OVERLAYS = ("fl_train.json", "fl_evaluate.json")


def parse_training(modes: Sequence[Any], block: Mapping[str, Any] | None,
                   tasks: Sequence[TaskSpec]) -> tuple[tuple[str, ...], FederatedSpec | None]:  # fmt: skip
    """The grid's ``training`` axis and ``federated`` block, checked against the tasks that have sites.

    Args:
        modes: the ``training`` list (default ``[local]``).
        block: the ``federated`` mapping, or ``None`` when the grid has none.
        tasks: the parsed tasks (``TaskSpec.sites`` says which have sites).

    Raises:
        ConfigError: an unknown or repeated mode; an unknown key or a value below 1 in the block; ``pooled`` /
            ``federated`` without the block or without a task with sites; a task with sites without the block (its
            cells train ``rounds * local_epochs`` epochs); the block without a task with sites; a task with sites
            whose bundle has no federated overlays. Each message names the grid key.

    Example:
        >>> parse_training(["local"], None, [plain_task])  # doctest: +SKIP
        (('local',), None)
    """
    training = tuple(str(m) for m in modes)
    for mode in training:
        if mode not in TRAINING_MODES:
            raise ConfigError(f"grid key 'training': unknown mode {mode!r}; choose from: {', '.join(TRAINING_MODES)}")
    if not training or len(set(training)) != len(training):
        raise ConfigError(f"grid key 'training' must list distinct modes, got {list(training)}")
    federated = None
    if block is not None:
        unknown = sorted(set(block) - {"rounds", "local_epochs"})
        if unknown:
            raise ConfigError(f"grid key 'federated': unknown {', '.join(unknown)}; valid keys: local_epochs, rounds")
        for key in block:
            if isinstance(block[key], bool) or not isinstance(block[key], int) or block[key] < 1:
                raise ConfigError(f"grid key 'federated.{key}': expected a whole number >= 1, got {block[key]!r}")
        federated = FederatedSpec(**dict(block))
    with_sites = [t for t in tasks if t.sites]
    pooled = sorted(set(training) - {"local"})
    if pooled and federated is None:
        raise ConfigError(f"grid key 'training' lists {', '.join(pooled)} but the grid has no 'federated' block "
                          f"(federated: {{rounds: 2, local_epochs: 1}})")
    if pooled and not with_sites:
        raise ConfigError(f"grid key 'training' lists {', '.join(pooled)} but no task's data has sites "
                          f"(data: {{sites: {{site-1: {{dataset_dir: ...}}, ...}}}} or embedded: sites)")
    if with_sites and federated is None:
        raise ConfigError(f"grid key 'federated' is required: task {with_sites[0].name!r} has sites, whose cells train "
                          f"rounds x local_epochs epochs in every training mode")
    if federated is not None and not with_sites:
        raise ConfigError("grid key 'federated' is set but no task's data has sites; it would change nothing")
    for task in with_sites:
        missing = [f for f in FL_OVERLAYS if not (task.bundle.path / "configs" / f).is_file()]
        if missing:
            raise ConfigError(f"task {task.name!r} has sites, but bundle {task.bundle.name} has no configs/"
                              f"{' or configs/'.join(missing)}: it cannot be trained federated")
    return training, federated
