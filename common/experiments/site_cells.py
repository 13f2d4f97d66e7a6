"""A grid cell of a task with sites: a federation (NVFlare simulator), all sites pooled, or one site alone.

Every mode is evaluated the same way, on every site's test split through the site evaluation path and then pooled
(:func:`common.federated.simulate.simulate` for ``federated``, :func:`common.federated.baselines.run_reference` for
``pooled`` and ``local-<site>``), so their values are comparable with each other; each trains for
``rounds * local_epochs`` epochs. The cell's folder is the federation's ``workdir``: ``final_pooled/`` (federated)
or ``baselines/<mode>/pooled_test/`` (a reference) holds the pooled report the leaderboard points at.

Example:
    >>> run_site_cell(Path("cells/c.partial"), "bundles/chest_xray_classification", "configs/finetune/ft.json",
    ...               {"arch": "resnet18", "seed": 0}, {"training": "pooled", "rounds": 2, "local_epochs": 1,
    ...               "sites": {"site-1": ["/d/1", "/d/1/datalist.json"]}})  # doctest: +SKIP
    {'metric': 'mean_auc', 'value': 0.61, 'val_metric': None, 'eval_dir': 'baselines/pooled/pooled_test'}
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from common.errors import DataError
from common.io import make_directory

__all__ = ["run_site_cell", "track_site_cell"]

#: settings a grid gives every bundle run that a federation takes per site instead
_PER_SITE = ("dataset_dir", "datalist")


def _spec(workdir: Path, bundle: str, overlay: str | None, settings: dict[str, Any],
          federation: dict[str, Any]) -> Any:  # fmt: skip
    from common.federated.job import FederationSpec

    sites = {str(site): (str(folder), str(datalist)) for site, (folder, datalist) in federation["sites"].items()}
    return FederationSpec(bundle=bundle, sites={s: d for s, (_, d) in sites.items()},
                          dataset_dirs={s: f for s, (f, _) in sites.items()}, rounds=int(federation["rounds"]),
                          local_epochs=int(federation["local_epochs"]), strategy=overlay,
                          overrides={k: v for k, v in settings.items() if k not in _PER_SITE}, workdir=str(workdir))


def _federated_row(workdir: Path) -> dict[str, str]:
    """The federated row of the ``results.csv`` :func:`~common.federated.simulate.simulate` wrote."""
    file = workdir / "results.csv"
    with file.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if (r.get("training") or "federated") == "federated"]
    if len(rows) != 1:
        raise DataError(f"{file}: expected one federated row, found {len(rows)}")
    return rows[0]


def run_site_cell(workdir: Path, bundle: str, overlay: str | None, settings: dict[str, Any],
                  federation: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Run one cell of a task with sites in ``workdir``; its result (``metric``, ``value``, ``val_metric``,
    ``eval_dir`` relative to ``workdir``).

    Args:
        workdir: the cell's folder (created).
        bundle: the task bundle's folder.
        overlay: the strategy overlay (``configs/finetune/<name>.json``).
        settings: the cell's bundle overrides (``arch``, ``pretrained``, ``seed``, the grid's overrides ...).
        federation: ``training`` (``federated``, ``pooled`` or ``local-<site>``), ``rounds``, ``local_epochs``,
            ``sites`` (name -> ``[dataset_dir, datalist]``).

    Raises:
        ConfigError: a bundle or strategy that cannot be federated, an unknown reference mode.
        DataError: a site's datalist is missing, or the run wrote no result.
    """
    workdir = make_directory(Path(workdir).resolve())
    spec = _spec(workdir, bundle, overlay, settings, federation)
    mode = str(federation["training"])
    if mode == "federated":
        from common.federated.simulate import simulate

        simulate(spec)
        row: dict[str, Any] = _federated_row(workdir)
    else:
        from common.federated.baselines import run_reference
        from common.federated.simulate import check_spec

        strategy, bundle_settings = check_spec(spec)
        row = run_reference(spec, mode, strategy, bundle_settings)
    val = row.get("val_metric")
    return {"metric": str(row["metric"]), "value": float(row["value"]),
            "val_metric": None if val in (None, "") else float(val),
            "eval_dir": str(Path(row["eval_dir"]).resolve().relative_to(workdir))}


def _round_series(workdir: Path) -> list[tuple[str, float, int]]:
    """``(round_<metric>_<site or pooled>, value, round)`` from a federation's ``rounds.csv`` (none for a reference);
    a metric undefined at a site that round is left out, not logged as NaN."""
    file = workdir / "rounds.csv"
    if not file.is_file():
        return []
    with file.open(newline="") as handle:
        rows = [(f"round_{r['metric']}_{r['site']}", float(r["value"] or "nan"), int(r["round"]))
                for r in csv.DictReader(handle)]
    return [row for row in rows if not math.isnan(row[1])]


def track_site_cell(workdir: Path, tracking: tuple[str, str], run_name: str, settings: dict[str, Any],
                    overlay: str | None, federation: dict[str, Any], result: dict[str, Any]) -> None:
    """The MLflow run of a site cell (no bundle run tracks it): its settings, training mode and schedule, its test
    value and, for a federation, each round's metric per site and pooled (``rounds.csv``, step = round).

    Args:
        workdir: the cell's folder (:func:`run_site_cell`'s).
        tracking: ``(mlruns folder, experiment name)``.
        run_name: the MLflow run's name (the cell's folder name).
        settings, overlay, federation: as given to :func:`run_site_cell`.
        result: :func:`run_site_cell`'s result with ``seconds``.
    """
    from common.experiments.tracking import log_cell

    params = {**{k: v for k, v in settings.items() if isinstance(v, (str, int, float, bool))},
              "strategy": "" if overlay is None else Path(overlay).stem,
              **{k: federation[k] for k in ("training", "rounds", "local_epochs") if k in federation}}
    metrics = {f"test_{result['metric']}": result["value"], "seconds": result["seconds"]}
    if result.get("val_metric") is not None:
        metrics["val_metric"] = result["val_metric"]
    log_cell(Path(tracking[0]), tracking[1], run_name, params, metrics, _round_series(workdir))
