"""Optional MLflow tracking of every cell: MONAI's own bundle tracking (``ConfigWorkflow(tracking=...)``) for the
cells one bundle run makes, and :func:`log_cell` for those it does not (a task with sites: federated, pooled and
site-alone cells, whose training runs in NVFlare's simulator or per site)."""

from __future__ import annotations

import copy
import importlib.util
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from monai.bundle.utils import DEFAULT_MLFLOW_SETTINGS
from monai.utils import path_to_sqlite_uri

from common.errors import ConfigError

__all__ = ["log_cell", "mlflow_settings"]


def _store_uri(store: Path) -> str:
    """The SQLite URI of the store in the folder ``store`` (created), once MLflow's install is checked."""
    missing = [m for m in ("mlflow", "sqlalchemy", "alembic") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"tracking: mlflow needs {', '.join(missing)}: `pip install mlflow-skinny sqlalchemy "
                          f"alembic` (or `mlflow`, which includes the UI); the leaderboard does not need it "
                          f"(set tracking: none)")
    store.mkdir(parents=True, exist_ok=True)
    return path_to_sqlite_uri(str(store / "mlflow.db"))


def mlflow_settings(store: Path, experiment: str, run_name: str) -> dict[str, Any]:
    """MONAI's MLflow settings with a local store in the folder ``store`` (``<run folder>/mlruns``), one run per cell.

    The store is a SQLite file, ``<store>/mlflow.db`` (MLflow 3 and MONAI's handler no longer accept the
    plain file store): local, no server. Browse it with ``mlflow ui --backend-store-uri sqlite:///<store>/mlflow.db``
    (the full ``mlflow`` package has the UI).

    Raises:
        ConfigError: MLflow or its SQLite backend (SQLAlchemy, Alembic) is not installed.
    """
    settings = copy.deepcopy(DEFAULT_MLFLOW_SETTINGS)
    settings["configs"]["tracking_uri"] = _store_uri(store)
    settings["configs"]["experiment_name"] = experiment
    settings["configs"]["run_name"] = run_name
    return settings


def log_cell(store: Path, experiment: str, run_name: str, params: Mapping[str, Any], metrics: Mapping[str, float],
             series: Iterable[tuple[str, float, int]] = ()) -> str:
    """One finished MLflow run in the store of :func:`mlflow_settings`: ``params`` (as strings), the final
    ``metrics`` and ``series`` of ``(key, value, step)`` (e.g. a federation's metric per round); its run id.

    Through ``MlflowClient`` on the store's URI, so nothing in this process's MLflow state (tracking URI, active run)
    changes.

    Raises:
        ConfigError: MLflow or its SQLite backend is not installed.
    """
    uri = _store_uri(store)
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        try:
            experiment_id = client.create_experiment(experiment)
        except MlflowException:  # another cell created it meanwhile
            experiment_id = client.get_experiment_by_name(experiment).experiment_id
    else:
        experiment_id = found.experiment_id
    run_id = client.create_run(experiment_id, run_name=run_name).info.run_id
    now = int(time.time() * 1000)
    values = [Metric(key, float(value), now, 0) for key, value in metrics.items()]
    values += [Metric(key, float(value), now, int(step)) for key, value, step in series]
    client.log_batch(run_id, metrics=values, params=[Param(key, str(value)) for key, value in params.items()])
    client.set_terminated(run_id)
    return run_id
