"""Run a bundle's configs through MONAI's ``ConfigWorkflow``, the API behind ``python -m monai.bundle run``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monai.bundle import ConfigWorkflow
from torch.utils.data import DataLoader

from common.errors import ConfigError

__all__ = ["copy_bundle", "release_loader_workers", "run_bundle"]


def run_bundle(
    bundle_root: str | os.PathLike,
    configs: Sequence[str | os.PathLike],
    workflow_type: str,
    *,
    state_root: str | os.PathLike | None = None,
    **override: Any,
) -> ConfigWorkflow:
    """Initialise, run and finalise ``configs`` of the bundle at ``bundle_root`` with ``override``.

    Args:
        bundle_root: the bundle folder (``configs/`` inside it).
        configs: config file names under ``configs/``, merged in order (e.g. ``["train.json", "evaluate.json"]``);
            an absolute path is taken as it is (an overlay such as ``configs/finetune/lp_ft.json``).
        state_root: the ``bundle_root`` the run sees (``models/``, ``eval/``, ``logs/`` go there); default
            ``bundle_root``. The MONAI Label app trains the repository's configs into its workspace this way.
        workflow_type: ``"train"``, ``"eval"`` or ``"infer"`` (MONAI's workflow types).
        override: id-value pairs, as ``--key value`` on the ``monai.bundle run`` command line.

    Returns:
        The finished workflow (its parsed content stays readable, e.g. ``workflow.parser``).

    Example:
        >>> run_bundle("bundles/chest_xray_classification", ["train.json"], "train", epochs=1)  # doctest: +SKIP
    """
    root = Path(bundle_root)
    files = [Path(name) if Path(name).is_absolute() else root / "configs" / name for name in configs]
    for file in files:
        if not file.is_file():
            raise ConfigError(f"bundle config not found: {file}")
    workflow = ConfigWorkflow(
        config_file=[str(f) for f in files],
        meta_file=str(root / "configs" / "metadata.json"),
        logging_file=str(root / "configs" / "logging.conf"),
        workflow_type=workflow_type,
        bundle_root=str(state_root if state_root is not None else root),
        **override,
    )
    workflow.initialize()
    try:
        workflow.run()
    finally:
        workflow.finalize()
        release_loader_workers(workflow)
    return workflow


def release_loader_workers(workflow: ConfigWorkflow) -> int:
    """Stop the persistent worker processes of every DataLoader ``workflow`` built; return how many loaders.

    Bundles keep their loaders' workers alive across epochs (``persistent_workers``, :mod:`common.data.loader`).
    A process that runs many workflows (an in-process grid, the demo, the MONAI Label app) would otherwise keep each
    run's workers, about 1 GB each, until the garbage collector happens to break the engines' reference cycles.
    PyTorch has no public call for this: dropping the loader's ``_iterator`` is what its own ``__del__`` relies on
    (the iterator's finaliser shuts its workers down); the loaders stay usable and start new workers if iterated.
    """
    resolved = getattr(getattr(workflow.parser, "ref_resolver", None), "resolved_content", {}) or {}
    released = 0
    for value in resolved.values():
        iterator = getattr(value, "_iterator", None) if isinstance(value, DataLoader) else None
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
            value._iterator = None
            released += 1
    return released


def copy_bundle(
    source: str | os.PathLike, destination: str | os.PathLike, overlay: str | os.PathLike | None = None
) -> Path:
    """Copy a bundle's shareable files (``configs/``, ``docs/``, ``LICENSE``) from ``source`` to ``destination``.

    Runs then write models, logs and reports into the copy, never into the repository's bundle.

    Args:
        source: the bundle folder.
        destination: the copy's folder (created; existing files with the same names are replaced).
        overlay: optional config file copied in as ``configs/finetune.json`` (a strategy overlay).

    Returns:
        ``destination`` as a Path.
    """
    src, dest = Path(source), Path(destination)
    dest.mkdir(parents=True, exist_ok=True)
    for part in ("configs", "docs"):
        if (src / part).is_dir():
            shutil.copytree(src / part, dest / part, dirs_exist_ok=True)
    if (src / "LICENSE").is_file():
        shutil.copy2(src / "LICENSE", dest / "LICENSE")
    if overlay is not None:
        shutil.copy2(overlay, dest / "configs" / "finetune.json")
    return dest
