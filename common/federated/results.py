"""Per-round, per-site and pooled test metrics of a federated run, and its row in the runner's ``results.csv``.

Each site keeps, for every round ``r``, the report of the global model it received (``rounds/round_<r>``: the
global model after ``r`` aggregations; round 0 is the starting model). The final global model is evaluated the same
way after the last round (``final``). Pooled ("global") metrics are computed from the sites' saved predictions
(the test splits are patient-disjoint, so pooling predictions equals evaluating on the union).

Example:
    >>> rows = collect_rounds("runs/fl/sites", ["site-1", "site-2"], class_names)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import DataError
from common.io import atomic_write_text

__all__ = ["ROUND_COLUMNS", "collect_rounds", "pooled_metrics", "results_row", "write_csv"]

ROUND_COLUMNS = ("round", "site", "metric", "value", "n_images")
#: results.csv columns (common.experiments.runner.RESULT_COLUMNS; kept equal by a test, not imported: the
#: experiments package imports the bundles' machinery and must not become a dependency of a site)
RESULT_COLUMNS = ("cell", "bundle", "arch", "stage1", "stage2", "strategy", "seed", "metric", "value", "seconds",
                  "eval_dir", "val_metric", "modality", "training")


def pooled_metrics(report_dirs: Sequence[Path], class_names: Sequence[str], n_boot: int = 0,
                   seed: int = 0, output_dir: Path | None = None) -> dict[str, Any]:
    """The bundle's classification metrics on the pooled predictions of ``report_dirs`` (optionally written)."""
    from common.metrics import compute_classification_metrics
    from common.metrics.report import load_predictions, write_classification_report

    trues, probs = [], []
    for folder in report_dirs:
        y_true, y_prob, names = load_predictions(folder / "predictions.npz")
        if list(names) != list(class_names):
            raise DataError(f"{folder}/predictions.npz has classes {names}, expected {list(class_names)}")
        trues.append(y_true)
        probs.append(y_prob)
    y_true, y_prob = np.concatenate(trues), np.concatenate(probs)
    metrics = compute_classification_metrics(y_true, y_prob, list(class_names), n_boot=n_boot, seed=seed)
    if output_dir is not None:
        write_classification_report(metrics, output_dir, y_true, y_prob, title="Federated global model: pooled test")
    return metrics


def _report_dirs(site_root: Path, sites: Sequence[str], stage: str) -> list[Path]:
    return [site_root / site / "rounds" / stage for site in sites]


def collect_rounds(site_root: str | os.PathLike, sites: Sequence[str], class_names: Sequence[str], rounds: int,
                   metric: str = "mean_auc") -> list[dict[str, Any]]:
    """Rows ``round, site, metric, value, n_images`` (``site`` = ``pooled`` for all sites together).

    Row ``round = r`` is the global model after ``r`` aggregations: ``rounds/round_<r>`` for ``r < rounds``
    (what each site received at the start of round ``r``) and ``rounds/final`` for ``r = rounds``.
    """
    root = Path(site_root)
    rows: list[dict[str, Any]] = []
    for label in range(rounds + 1):
        stage = "final" if label == rounds else f"round_{label:03d}"
        folders = _report_dirs(root, sites, stage)
        if not all((f / "metrics.json").is_file() for f in folders):
            continue
        for site, folder in zip(sites, folders, strict=True):
            report = json.loads((folder / "metrics.json").read_text())
            rows.append({"round": label, "site": site, "metric": metric, "value": report.get(metric),
                         "n_images": report.get("n_images")})
        pooled = pooled_metrics(folders, class_names)
        rows.append({"round": label, "site": "pooled", "metric": metric, "value": pooled.get(metric),
                     "n_images": pooled.get("n_images")})
    return rows


def results_row(*, name: str, bundle: str, arch: str, pretrained: str, strategy: str, seed: int, value: float,
                seconds: float, eval_dir: str, val_metric: float | None, metric: str = "mean_auc",
                training: str = "federated") -> dict[str, Any]:
    """One ``results.csv`` row: a model evaluated on the sites' pooled test splits.

    ``training`` is the results' training-mode column: ``"federated"``, ``"pooled"`` or ``"local-<site>"`` (one site
    alone), so the leaderboard compares the modes of one strategy side by side.
    """
    return {"cell": name, "bundle": bundle, "arch": arch, "stage1": pretrained, "stage2": "none",
            "strategy": strategy, "seed": seed, "metric": metric, "value": value,
            "seconds": round(seconds, 1), "eval_dir": eval_dir, "val_metric": "" if val_metric is None else val_metric,
            "modality": "", "training": training}


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    """Write ``rows`` as CSV with ``columns``, atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    return atomic_write_text(path, buffer.getvalue())
