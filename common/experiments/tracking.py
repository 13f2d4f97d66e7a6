"""Optional MLflow tracking of every cell through MONAI's own bundle tracking (``ConfigWorkflow(tracking=...)``)."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

from monai.bundle.utils import DEFAULT_MLFLOW_SETTINGS
from monai.utils import path_to_sqlite_uri

from common.errors import ConfigError

__all__ = ["mlflow_settings"]


def mlflow_settings(store: Path, experiment: str, run_name: str) -> dict[str, Any]:
    """MONAI's MLflow settings with a local store in the folder ``store`` (``<run folder>/mlruns``), one run per cell.

    The store is a SQLite file, ``<store>/mlflow.db`` (MLflow 3 and MONAI's handler no longer accept the
    plain file store): local, no server. Browse it with ``mlflow ui --backend-store-uri sqlite:///<store>/mlflow.db``
    (the full ``mlflow`` package has the UI).

    Raises:
        ConfigError: MLflow or its SQLite backend (SQLAlchemy, Alembic) is not installed.
    """
    missing = [m for m in ("mlflow", "sqlalchemy", "alembic") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"tracking: mlflow needs {', '.join(missing)}: `pip install mlflow-skinny sqlalchemy "
                          f"alembic` (or `mlflow`, which includes the UI); the leaderboard does not need it "
                          f"(set tracking: none)")
    store.mkdir(parents=True, exist_ok=True)
    settings = copy.deepcopy(DEFAULT_MLFLOW_SETTINGS)
    settings["configs"]["tracking_uri"] = path_to_sqlite_uri(str(store / "mlflow.db"))
    settings["configs"]["experiment_name"] = experiment
    settings["configs"]["run_name"] = run_name
    return settings
