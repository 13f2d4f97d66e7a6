"""Run a federated job offline with NVFlare's simulator, then evaluate the final global model at every site.

Outputs under ``--output``::

    initial_model.pt        the first global model (the bundle's pretrained weights)
    nvflare/<job>/          the simulator workspace (server: FL_global_model.pt, best_FL_global_model.pt; logs)
    sites/<site>/           what each site wrote: models/ (model.pt, model_final.pt), rounds/round_<r>/ and
                            rounds/final/ (the bundle's evaluation report of the global model on the local test
                            split), rounds/*/sent.json (names + scalars of what the site sent)
    final_pooled/           the final global model's report on all sites' test splits pooled (the bundle's own
                            report format: classification, single-label or segmentation)
    rounds.csv              round, site (or "pooled"), metric, value, n_images; round r = the global model after r
                            aggregations (0: the starting model, --rounds: the final one)
    results.csv             one row in the experiment runner's format (python -m common.experiments report)
    summary.json            metric, final_pooled and sites (per-site values) in it, baselines, timing

The metric is the bundle's own test metric (:func:`~common.federated.model.check_pooled_results`): ``mean_auc``
(multi-label), ``macro_auc`` (single-label) or ``mean_dice`` (segmentation); pooled values are exact on the union
of the sites' test splits (:func:`~common.federated.results.pooled_metrics`).

Example:
    >>> spec = FederationSpec(bundle="bundles/chest_xray_classification", sites={"site-1": "/d1/datalist.json",
    ...                       "site-2": "/d2/datalist.json"}, rounds=2, workdir="runs/fl")  # doctest: +SKIP
    >>> simulate(spec)["final_pooled"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from common.errors import ConfigError, DataError
from common.federated.baselines import run_baselines
from common.federated.job import INITIAL_MODEL, FederationSpec, build_recipe, site_arguments, validate_job_folder
from common.federated.model import bundle_key_metric, bundle_parser, check_pooled_results, write_initial_model
from common.federated.results import (
    RESULT_COLUMNS,
    ROUND_COLUMNS,
    collect_rounds,
    pooled_metrics,
    results_row,
    write_csv,
)
from common.federated.site import FL_EVAL_OVERLAY, FL_TRAIN_OVERLAY, evaluate_weights
from common.federated.strategies import check_strategy
from common.io import atomic_write_json, make_directory
from common.threads import thread_share

__all__ = ["check_spec", "export_job", "load_global_model", "prepare", "simulate"]

logger = logging.getLogger(__name__)


def check_spec(spec: FederationSpec) -> tuple[str, dict[str, Any]]:
    """Check the bundle's FL overlays, the sites' datalists and the strategy; ``(strategy name, bundle settings)``.

    Writes nothing: what a pooled or site-alone reference needs (:func:`common.federated.baselines.run_reference`).
    """
    bundle = Path(spec.bundle)
    for overlay in (FL_TRAIN_OVERLAY, FL_EVAL_OVERLAY):
        if not (bundle / overlay).is_file():
            raise ConfigError(f"bundle {bundle} has no {overlay}; federated bundles: those with both FL overlays")
    for site, datalist in spec.sites.items():
        if not Path(datalist).is_file():
            raise DataError(f"site {site!r}: datalist {datalist} does not exist")
    parser = bundle_parser(bundle, spec.overrides)
    settings = {key: parser.get_parsed_content(key) for key in ("arch", "pretrained", "class_names", "seed")}
    return check_strategy(spec.strategy, spec.local_epochs, settings["pretrained"]), settings


def prepare(spec: FederationSpec) -> tuple[Any, str, dict[str, Any]]:
    """:func:`check_spec`, then write the initial model; ``(recipe, strategy name, bundle settings)``.

    Call it, and export or run the recipe, inside ``contextlib.chdir(spec.workdir)`` (see :func:`build_recipe`).
    """
    strategy, settings = check_spec(spec)
    workdir = make_directory(Path(spec.workdir).resolve())
    write_initial_model(Path(spec.bundle), spec.overrides, workdir / INITIAL_MODEL)
    return build_recipe(spec, workdir), strategy, settings


def export_job(spec: FederationSpec, export_dir: str | Path) -> Path:
    """Write the job folder for ``nvflare simulator`` or a provisioned federation (see docs/federated.md)."""
    export_dir = Path(export_dir).resolve()
    with contextlib.chdir(make_directory(Path(spec.workdir).resolve())):
        recipe, _, _ = prepare(spec)
        recipe.export(str(export_dir))
    validate_job_folder(export_dir / spec.name)
    return export_dir / spec.name


def load_global_model(path: str | Path) -> dict[str, torch.Tensor]:
    """The server's saved global model as a state dict, read with ``weights_only=True``."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as error:
        raise DataError(f"cannot read the global model {path}: {error}") from error
    state = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{path} holds no state dict of tensors under 'model'")
    return state


def simulate(spec: FederationSpec, export_dir: str | Path | None = None, baselines: bool = False) -> dict[str, Any]:
    """Build, (export,) run and evaluate the federation of ``spec``; returns the summary written to summary.json.

    ``baselines``: also train each site alone and all sites pooled (:mod:`common.federated.baselines`) and add their
    rows to ``results.csv``.
    """
    from nvflare.recipe.sim_env import SimEnv

    metric = check_pooled_results(spec.bundle)  # before the federation runs, not after
    start = time.monotonic()
    workdir = make_directory(Path(spec.workdir).resolve())
    export_dir = Path(export_dir).resolve() if export_dir is not None else None
    with contextlib.chdir(workdir):
        recipe, strategy, settings = prepare(spec)
        if export_dir is not None:
            recipe.export(str(export_dir))
            validate_job_folder(export_dir / spec.name)
        env = SimEnv(clients=list(spec.sites), num_threads=len(spec.sites), workspace_root=str(workdir / "nvflare"))
        with _cpu_share(len(spec.sites)):
            recipe.run(env)
    server_app = workdir / "nvflare" / spec.name / "server" / "simulate_job" / "app_server"
    weights = load_global_model(server_app / "FL_global_model.pt")
    finals = {site: evaluate_weights(site_arguments(spec, site).split(), weights) for site in spec.sites}
    seconds = time.monotonic() - start
    class_names = list(settings["class_names"])
    sites_root = workdir / "sites"
    rows = collect_rounds(sites_root, list(spec.sites), class_names, spec.rounds, metric=metric)
    pooled = pooled_metrics([sites_root / s / "rounds" / "final" for s in spec.sites], class_names,
                            n_boot=int(spec.overrides.get("n_boot", 1000)), seed=int(settings["seed"]),
                            output_dir=workdir / "final_pooled", metric=metric)
    write_csv(workdir / "rounds.csv", rows, ROUND_COLUMNS)
    key_metric = spec.key_metric or bundle_key_metric(spec.bundle)
    val = [r["metrics"].get(key_metric) for r in _sent(sites_root, spec)]
    row = results_row(name=f"federated-{Path(spec.bundle).name}-{strategy}-s{settings['seed']}",
                      bundle=Path(spec.bundle).name, arch=str(settings["arch"]), pretrained=str(settings["pretrained"]),
                      strategy=strategy, seed=int(settings["seed"]), value=pooled[metric], seconds=seconds,
                      eval_dir=str(workdir / "final_pooled"), val_metric=max(v for v in val if v is not None) if any(
                          v is not None for v in val) else None, metric=metric)
    references = run_baselines(spec, strategy, settings) if baselines else []
    write_csv(workdir / "results.csv", [row, *references], RESULT_COLUMNS)
    summary = {"rounds": spec.rounds, "local_epochs": spec.local_epochs, "strategy": strategy, "metric": metric,
               "sites": {s: f.get(metric) for s, f in finals.items()}, "final_pooled": pooled.get(metric),
               "seconds": round(seconds, 1), "global_model": str(server_app / "FL_global_model.pt"),
               "baselines": {r["training"]: r["value"] for r in references}}  # local-<site> / pooled
    atomic_write_json(workdir / "summary.json", summary)
    return summary


@contextlib.contextmanager
def _cpu_share(n_sites: int) -> Iterator[None]:
    """Give each simulated site's process its share of this machine's cores (``OMP_NUM_THREADS``, see
    :func:`common.threads.thread_share`) while the simulator runs; a value the user set is kept."""
    share = thread_share(n_sites, os.environ)
    os.environ.update(share)
    try:
        yield
    finally:
        for key in share:
            os.environ.pop(key, None)


def _sent(sites_root: Path, spec: FederationSpec) -> list[dict[str, Any]]:
    import json

    files = sorted(sites_root.glob("*/rounds/round_*/sent.json"))
    return [json.loads(f.read_text()) for f in files]
