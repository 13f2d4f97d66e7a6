"""Optional MLflow tracking of every cell through MONAI's own bundle tracking (``ConfigWorkflow(tracking=...)``)."""

from __future__ import annotations

import copy
import importlib.util
import os
from pathlib import Path
from typing import Any

from monai.bundle.utils import DEFAULT_MLFLOW_SETTINGS

from common.errors import ConfigError

__all__ = ["mlflow_settings"]


def mlflow_settings(store: Path, experiment: str, run_name: str) -> dict[str, Any]:
    """MONAI's MLflow settings with a local file store ``store`` (``<run folder>/mlruns``), one run per cell.

    MLflow 3 keeps the file store only on request (``MLFLOW_ALLOW_FILE_STORE``); a local folder needs
    no database and no server. Browse it with ``mlflow ui --backend-store-uri <store>`` (full ``mlflow``).

    Raises:
        ConfigError: MLflow is not installed.
    """
    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError("tracking: mlflow needs MLflow: `pip install mlflow-skinny` (or `mlflow` for the UI); "
                          "the leaderboard does not need it (set tracking: none)")
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    settings = copy.deepcopy(DEFAULT_MLFLOW_SETTINGS)
    settings["configs"]["tracking_uri"] = store.resolve().as_uri()
    settings["configs"]["experiment_name"] = experiment
    settings["configs"]["run_name"] = run_name
    return settings
