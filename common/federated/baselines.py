"""The two references a federated run is judged against: each site training alone, and all sites' data pooled.

Both train the same bundle with the same strategy and settings for as many epochs as the federation trained in
total (``rounds * local_epochs``), single-site (``configs/train.json``), and are evaluated exactly like the final
global model: on every site's test split through the site evaluation path, then pooled. Their rows join the
federated one in ``results.csv`` (training mode ``local-<site>`` / ``pooled``), so one leaderboard ranks federated vs
local-only vs pooled.

Example:
    >>> rows = run_baselines(spec, "ft", settings)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from common.errors import ConfigError
from common.federated.job import FederationSpec, site_arguments
from common.federated.model import check_pooled_results
from common.federated.results import pooled_metrics, results_row
from common.federated.site import evaluate_weights
from common.io import atomic_write_json, make_directory

__all__ = ["pooled_datalist", "reference_modes", "run_baselines", "run_reference", "train_alone"]


def pooled_datalist(spec: FederationSpec, path: Path) -> Path:
    """One datalist of every site's items, image paths relative to the sites' common folder (written to ``path``)."""
    roots = {site: Path(spec.dataset_dirs.get(site) or Path(datalist).parent) for site, datalist in spec.sites.items()}
    common_root = Path(os.path.commonpath([str(r) for r in roots.values()]))
    merged: dict[str, list[dict[str, Any]]] = {}
    for site, datalist in spec.sites.items():
        prefix = roots[site].relative_to(common_root)
        for split, items in json.loads(Path(datalist).read_text()).items():
            merged.setdefault(split, []).extend({**item, "image": str(prefix / item["image"])} for item in items)
    atomic_write_json(path, merged)
    return common_root


def train_alone(spec: FederationSpec, out: Path, datalist: str, dataset_dir: str) -> dict[str, Any]:
    """Train the bundle alone (``train.json`` + the spec's strategy) for ``rounds * local_epochs`` epochs; the final
    network's state dict (the last epoch, as the final global model is)."""
    from monai.bundle import ConfigWorkflow

    bundle = Path(spec.bundle)
    files = [str(bundle / "configs" / "train.json"), *([spec.strategy] if spec.strategy else [])]
    workflow = ConfigWorkflow(config_file=files, workflow_type="train", logging_file=False,
                              meta_file=str(bundle / "configs" / "metadata.json"),
                              **{**spec.overrides, "bundle_root": str(out), "dataset_dir": dataset_dir,
                                 "datalist": datalist, "epochs": spec.rounds * spec.local_epochs, "resume": "never"})
    workflow.initialize()
    workflow.run()
    state = {k: v.detach().cpu().clone() for k, v in workflow.trainer.network.state_dict().items()}
    workflow.finalize()
    return state


def reference_modes(spec: FederationSpec) -> list[str]:
    """The references of ``spec``: ``local-<site>`` for each site, then ``pooled``.

    Example:
        >>> reference_modes(spec)  # doctest: +SKIP
        ['local-site-1', 'local-site-2', 'pooled']
    """
    return [*(f"local-{site}" for site in spec.sites), "pooled"]


def run_reference(spec: FederationSpec, mode: str, strategy: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Train one reference (``mode``: ``local-<site>`` or ``pooled``) under ``spec.workdir/baselines/<mode>``, evaluate
    it on every site's test split and pooled; its ``results.csv`` row (``training`` = ``mode``), scored by the
    bundle's own test metric (``mean_auc``, ``macro_auc`` or ``mean_dice``) as the federated row is.

    Raises:
        ConfigError: ``mode`` is not one of :func:`reference_modes`, or ``simulate`` cannot pool the bundle's metric.
    """
    import time

    if mode not in reference_modes(spec):
        raise ConfigError(f"unknown reference {mode!r}; expected one of {reference_modes(spec)}")
    metric = check_pooled_results(spec.bundle)  # before training, not after
    root = make_directory(Path(spec.workdir) / "baselines")
    if mode == "pooled":
        pooled_root = pooled_datalist(spec, root / "pooled_datalist.json")
        datalist, dataset_dir = str(root / "pooled_datalist.json"), str(pooled_root)
    else:
        site = mode.removeprefix("local-")
        datalist, dataset_dir = spec.sites[site], str(spec.dataset_dirs.get(site) or Path(spec.sites[site]).parent)
    start = time.monotonic()
    weights = train_alone(spec, root / mode, datalist, dataset_dir)
    eval_spec = FederationSpec(bundle=spec.bundle, sites=spec.sites, overrides=spec.overrides,
                               dataset_dirs=spec.dataset_dirs, workdir=str(root / mode / "evaluation"))
    for site in spec.sites:
        evaluate_weights(site_arguments(eval_spec, site).split(), weights)
    reports = [root / mode / "evaluation" / "sites" / s / "rounds" / "final" for s in spec.sites]
    pooled = pooled_metrics(reports, settings["class_names"], n_boot=int(spec.overrides.get("n_boot", 1000)),
                            seed=int(settings["seed"]), output_dir=root / mode / "pooled_test", metric=metric,
                            title=f"Reference {mode}: pooled test")
    return results_row(name=f"{mode}-{Path(spec.bundle).name}-{strategy}-s{settings['seed']}",
                       bundle=Path(spec.bundle).name, arch=str(settings["arch"]),
                       pretrained=str(settings["pretrained"]), strategy=strategy, seed=int(settings["seed"]),
                       value=pooled[metric], seconds=time.monotonic() - start,
                       eval_dir=str(root / mode / "pooled_test"), val_metric=None, metric=metric, training=mode)


def run_baselines(spec: FederationSpec, strategy: str, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Train and evaluate the local-only (one per site) and pooled references; their ``results.csv`` rows."""
    return [run_reference(spec, mode, strategy, settings) for mode in reference_modes(spec)]
