"""Per-round, per-site and pooled test metrics of a federated run, and its row in the runner's ``results.csv``.

Each site keeps, for every round ``r``, the report of the global model it received (``rounds/round_<r>``: the
global model after ``r`` aggregations; round 0 is the starting model). The final global model is evaluated the same
way after the last round (``final``). Pooled ("global") metrics are the bundle's own test metric on the union of the
sites' test splits (patient-disjoint), computed from what each site's report saved; :func:`pooled_metrics` says how
for each kind of bundle.

Example:
    >>> rows = collect_rounds("runs/fl/sites", ["site-1", "site-2"], class_names, rounds=2, metric="mean_dice")
    ... # doctest: +SKIP
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

from common.errors import ConfigError, DataError
from common.io import atomic_write_text

__all__ = ["POOLED_METRICS", "ROUND_COLUMNS", "collect_rounds", "pooled_metrics", "results_row", "write_csv"]

ROUND_COLUMNS = ("round", "site", "metric", "value", "n_images")
#: results.csv columns (common.experiments.runner.RESULT_COLUMNS; kept equal by a test, not imported: the
#: experiments package imports the bundles' machinery and must not become a dependency of a site)
RESULT_COLUMNS = ("cell", "bundle", "arch", "stage1", "stage2", "strategy", "seed", "metric", "value", "seconds",
                  "eval_dir", "val_metric", "modality", "training")
#: the test metrics :func:`pooled_metrics` can pool (common.federated.model.POOLED_TEST_METRICS maps bundles to them)
POOLED_METRICS = ("mean_auc", "macro_auc", "mean_dice")
_TITLE = "Federated global model: pooled test"
#: what a site's segmentation report keeps per class that pooling needs (common.metrics.segmentation)
_SEGMENTATION_CLASS_KEYS = frozenset({"dice_per_image", "dice_images", "hd95", "hd95_images", "hd95_missed_images"})


def pooled_metrics(report_dirs: Sequence[Path], class_names: Sequence[str], n_boot: int = 0, seed: int = 0,
                   output_dir: Path | None = None, metric: str = "mean_auc", title: str = _TITLE) -> dict[str, Any]:
    """The bundle's test metrics on the union of the sites' test splits, from the reports in ``report_dirs``.

    How each kind is pooled, exactly (not an average of the sites' values, which would weigh a small site as much
    as a large one and is not the metric of the union for AUC):

    * ``mean_auc`` (multi-label classification): every site's ``predictions.npz`` concatenated, then
      :func:`~common.metrics.compute_classification_metrics` (mean over classes of each class's AUC).
    * ``macro_auc`` (single-label classification): every site's ``predictions.npz`` (one-hot ``y_true``)
      concatenated, then :func:`~common.metrics.single_label.compute_single_label_metrics` (one-vs-rest macro AUC).
    * ``mean_dice`` (segmentation): the bundle's Dice is *pixel-pooled* (``common.engines.MeanDice`` and the
      segmentation report sum one confusion matrix over all images, then Dice per class, then the mean over the
      defined classes), not a mean of per-image Dice. The sites' confusion matrices (``metrics.json``) are summed
      and Dice recomputed from the sum: exactly the union's value. See :func:`_pool_segmentation` for the rest.

    Bootstrap intervals of the pooled classification metrics resample images: the saved predictions carry no
    patient ids (a site's own report resamples patients when its datalist has them).

    Args:
        report_dirs: one evaluation report folder per site (``metrics.json``, and ``predictions.npz`` for
            classification).
        class_names: the bundle's classes; every report must have exactly these.
        n_boot: bootstrap resamples for classification intervals (0: none; segmentation has none).
        seed: bootstrap seed.
        output_dir: write the pooled report (the bundle kind's own report format) here.
        metric: the bundle's test metric, one of :data:`POOLED_METRICS`
            (:func:`common.federated.model.check_pooled_results`).
        title: heading of the written report.

    Returns:
        The metrics dict of the kind's report (``metric`` and ``n_images`` among its keys).

    Raises:
        ConfigError: ``metric`` is not one of :data:`POOLED_METRICS`.
        DataError: a report is missing or unreadable, or has other classes than ``class_names``.

    Example:
        >>> pooled_metrics([Path("sites/site-1/rounds/final"), Path("sites/site-2/rounds/final")],
        ...                ["tumor", "stroma"], metric="mean_dice")["mean_dice"]  # doctest: +SKIP
    """
    if metric not in POOLED_METRICS:
        raise ConfigError(f"cannot pool test metric {metric!r}; choose from: {', '.join(POOLED_METRICS)}")
    if not report_dirs:
        raise DataError("no site reports to pool")
    if metric == "mean_dice":
        metrics = _pool_segmentation(report_dirs, class_names)
        if output_dir is not None:
            from common.metrics.segmentation_report import write_segmentation_report

            write_segmentation_report(metrics, output_dir, title=title)
        return metrics
    y_true, y_prob = _pooled_predictions(report_dirs, class_names, one_hot=metric == "macro_auc")
    if metric == "macro_auc":
        from common.metrics.single_label import compute_single_label_metrics
        from common.metrics.single_label_report import write_single_label_report

        labels = np.argmax(y_true, axis=1)
        metrics = compute_single_label_metrics(labels, y_prob, list(class_names), n_boot=n_boot, seed=seed)
        if output_dir is not None:
            write_single_label_report(metrics, output_dir, labels, y_prob, title=title)
        return metrics
    from common.metrics import compute_classification_metrics
    from common.metrics.report import write_classification_report

    metrics = compute_classification_metrics(y_true, y_prob, list(class_names), n_boot=n_boot, seed=seed)
    if output_dir is not None:
        write_classification_report(metrics, output_dir, y_true, y_prob, title=title)
    return metrics


def _pooled_predictions(report_dirs: Sequence[Path], class_names: Sequence[str],
                        one_hot: bool) -> tuple[np.ndarray, np.ndarray]:
    """The sites' ``predictions.npz`` concatenated; ``one_hot``: every ``y_true`` row must be one class."""
    from common.metrics.report import PREDICTIONS_FILE, load_predictions

    trues, probs = [], []
    for folder in report_dirs:
        path = Path(folder) / PREDICTIONS_FILE
        y_true, y_prob, names = load_predictions(path)
        if list(names) != list(class_names):
            raise DataError(f"{path} has classes {names}, expected {list(class_names)}")
        if one_hot and not (np.isin(y_true, (0.0, 1.0)).all() and (y_true.sum(axis=1) == 1).all()):
            raise DataError(f"{path}: y_true is not one-hot (one class per image), as a single-label report saves it")
        trues.append(y_true)
        probs.append(y_prob)
    return np.concatenate(trues), np.concatenate(probs)


def _read_report(folder: Path) -> dict[str, Any]:
    path = Path(folder) / "metrics.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read the site report {path}: {error}") from error


def _weighted_mean(entries: Sequence[Mapping[str, Any]], value: str, count: str) -> float | None:
    """``sum(value * count) / sum(count)`` over the entries whose ``value`` is defined (``count`` images each)."""
    pairs = [(float(e[value]), int(e[count])) for e in entries if e.get(value) is not None and int(e[count]) > 0]
    total = sum(n for _, n in pairs)
    return sum(v * n for v, n in pairs) / total if total else None


def _pool_segmentation(report_dirs: Sequence[Path], class_names: Sequence[str]) -> dict[str, Any]:
    """The segmentation report of the union of the sites' test images, from their ``metrics.json``.

    Exact from what a report saves: the confusion matrix (summed: Dice, IoU, pixel accuracy, support), per class
    the mean HD95 over ``hd95_images`` images and the per-image Dice mean over ``dice_images`` images (pooled as
    means weighted by those counts). ``mean_dice_per_image`` (each image's mean over its classes, then over the
    images with any annotated class) is ``None``: a report does not save how many of its images entered that mean.
    """
    from common.metrics.formatting import finite_or_none, mean_or_none
    from common.metrics.segmentation import dice_iou_from_confusion

    names, reports = list(class_names), [_read_report(f) for f in report_dirs]
    counts = []
    for folder, report in zip(report_dirs, reports, strict=True):
        where = Path(folder) / "metrics.json"
        if report.get("class_names") != names:
            raise DataError(f"{where} has classes {report.get('class_names')}, expected {names}")
        for key in ("ignore_index", "hd95_missed"):
            if report.get(key) != reports[0].get(key):
                raise DataError(f"{where} has {key}={report.get(key)!r}, the first site {reports[0].get(key)!r}")
        matrix = report.get("confusion_matrix")
        matrix = np.asarray(matrix.get("counts") if isinstance(matrix, dict) else None, dtype=object)
        if matrix.shape != (len(names), len(names)):
            raise DataError(f"{where}: confusion_matrix.counts must be {len(names)}x{len(names)} pixel counts "
                            f"(a segmentation report); found {matrix.shape}")
        counts.append(matrix.astype(np.int64))
        entries = report.get("per_class") or []
        if len(entries) != len(names) or not all(_SEGMENTATION_CLASS_KEYS <= set(e) for e in entries):
            raise DataError(f"{where}: per_class must hold {len(names)} entries with "
                            f"{', '.join(sorted(_SEGMENTATION_CLASS_KEYS))} (a segmentation report)")
    total = np.sum(counts, axis=0)
    dice, iou = dice_iou_from_confusion(total)
    per_class = []
    for c, name in enumerate(names):
        entries = [r["per_class"][c] for r in reports]
        per_class.append({
            "name": name, "label": c + 1, "dice": finite_or_none(dice[c]),
            "dice_per_image": _weighted_mean(entries, "dice_per_image", "dice_images"),
            "dice_images": sum(int(e["dice_images"]) for e in entries), "iou": finite_or_none(iou[c]),
            "hd95": _weighted_mean(entries, "hd95", "hd95_images"),
            "hd95_images": sum(int(e["hd95_images"]) for e in entries),
            "hd95_missed_images": sum(int(e["hd95_missed_images"]) for e in entries),
            "support": int(total[c].sum()), "predicted": int(total[:, c].sum()),
        })
    n_pixels = int(total.sum())
    return {
        "class_names": names, "ignore_index": reports[0].get("ignore_index"),
        "n_images": sum(int(r["n_images"]) for r in reports), "n_pixels": n_pixels, "per_class": per_class,
        "mean_dice": mean_or_none([e["dice"] for e in per_class]), "mean_dice_per_image": None,
        "mean_iou": mean_or_none([e["iou"] for e in per_class]),
        "mean_hd95": mean_or_none([e["hd95"] for e in per_class]), "hd95_missed": reports[0].get("hd95_missed"),
        "hd95_missed_images": sum(e["hd95_missed_images"] for e in per_class),
        "pixel_accuracy": float(np.trace(total) / n_pixels) if n_pixels else None,
        "undefined_classes": [e["name"] for e in per_class if e["dice"] is None],
        "confusion_matrix": {"rows": "truth", "columns": "prediction", "class_names": names,
                             "counts": total.tolist()},
    }


def _report_dirs(site_root: Path, sites: Sequence[str], stage: str) -> list[Path]:
    return [site_root / site / "rounds" / stage for site in sites]


def collect_rounds(site_root: str | os.PathLike, sites: Sequence[str], class_names: Sequence[str], rounds: int,
                   metric: str = "mean_auc") -> list[dict[str, Any]]:
    """Rows ``round, site, metric, value, n_images`` (``site`` = ``pooled`` for all sites together).

    ``metric`` is the bundle's test metric (:func:`common.federated.model.check_pooled_results`): a site's value is
    its report's, the pooled one :func:`pooled_metrics` of that metric.

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
        pooled = pooled_metrics(folders, class_names, metric=metric)
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
