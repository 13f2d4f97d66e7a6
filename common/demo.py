"""``make demo``: the main job on embedded synthetic data, on a CPU in minutes.

:func:`run_demo` (the default) runs ``configs/grids/demo.yaml`` through the experiment runner: embedded
data, a short stage-2 pretraining, the chest X-ray task from scratch, from ImageNet and from
ImageNet -> general medical, each with FT and LP-FT over two seeds, then the leaderboard.

:func:`run_tour` (``python -m common demo --tour``) shows one bundle's whole life instead: the chest
X-ray bundle (DenseNet-121, 14 findings) trained, evaluated and run for inference, then the mammography
bundle briefly (ResNet-18 via its ``arch`` key) to show the DICOM mammography pipeline.

Both keep the bundles' own INFO lines (per-iteration losses, engine and parameter-group lines, per-class tables)
off the console (:func:`common.bundle_logs.quiet_bundle_logs`): it shows data generation, one line per grid
cell (and a progress bar on a terminal), warnings and the results. Every line, hidden ones included, is
appended to ``<output_dir>/demo.log``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
import time
from pathlib import Path

from common.bundle_logs import quiet_bundle_logs
from common.bundle_runner import copy_bundle, run_bundle
from common.data import CHESTXRAY14_FINDINGS, summarise_datalist
from common.metrics import format_metrics_table
from common.synthetic import make_embedded_dataset

__all__ = [
    "BUNDLES_DIR", "DEMO_GRID", "DEMO_LOG", "TOUR_CHEST_OVERRIDES", "TOUR_MAMMO_EPOCHS", "TOUR_MAMMO_OVERRIDES",
    "TOUR_MAMMO_PATIENTS", "run_bundle_demo", "run_demo", "run_tour",
]

logger = logging.getLogger(__name__)

BUNDLES_DIR = Path(__file__).resolve().parents[1] / "bundles"
DEMO_GRID = Path(__file__).resolve().parents[1] / "configs" / "grids" / "demo.yaml"
#: The tour's chest run, besides ``image_size``, ``epochs`` and ``seed`` (run_tour's arguments): from scratch,
#: with settings for 64 px on a CPU (the bundle's defaults are meant for 224 px on a GPU).
TOUR_CHEST_OVERRIDES = {"pretrained": "none", "batch_size": 32, "val_batch_size": 64, "learning_rate": 1e-3}
#: The tour's mammography run: ResNet-18 (the bundle's ``arch`` key) on synthetic CBIS-DDSM-layout DICOMs.
TOUR_MAMMO_OVERRIDES = {"arch": "resnet18", "pretrained": "none", "image_size": 128, "batch_size": 16,
                        "val_batch_size": 32, "learning_rate": 1e-3}
TOUR_MAMMO_EPOCHS = 8
TOUR_MAMMO_PATIENTS = 60
#: The demo's full log (every bundle line the console leaves out), in the demo's output folder.
DEMO_LOG = "demo.log"


def _quiet(output_dir: Path, quiet: bool) -> contextlib.AbstractContextManager[None]:
    if not quiet:
        return contextlib.nullcontext()
    output_dir.mkdir(parents=True, exist_ok=True)
    logger.info("every bundle run logs in full to %s; the console keeps progress and results", output_dir / DEMO_LOG)
    return quiet_bundle_logs(output_dir / DEMO_LOG)


def run_demo(
    output_dir: str | Path = "demo_output", grid: str | Path = DEMO_GRID, num_workers: int = 2, quiet: bool = True
) -> Path:
    """Run the demo grid into ``output_dir/grid`` (resumable) and print its leaderboard.

    Args:
        output_dir: the demo folder; the grid's run folder is ``<output_dir>/grid`` (``results.csv``,
            ``leaderboard.md`` and plots, ``cells/<cell>/`` with each run's bundle copy, ``pretrain/``).
        grid: the grid file (default ``configs/grids/demo.yaml``).
        num_workers: DataLoader workers for every run.
        quiet: keep the bundles' INFO lines off the console (they still go to ``<output_dir>/demo.log``).
        mammo_patients: synthetic mammography patients (default :data:`TOUR_MAMMO_PATIENTS`).
        mammo_epochs: mammography training epochs (default :data:`TOUR_MAMMO_EPOCHS`).

    Returns:
        The run folder.

    Raises:
        RuntimeError: some cells failed (each one's ``.partial`` folder holds ``error.txt``).
    """
    from common.experiments.grid import load_grid
    from common.experiments.runner import run_grid

    started = time.perf_counter()
    spec = load_grid(grid)
    with _quiet(Path(output_dir), quiet):
        summary = run_grid(spec, Path(output_dir) / "grid", num_workers=num_workers)
    if summary.leaderboard is not None:
        sys.stdout.write((summary.leaderboard / "leaderboard.md").read_text() + "\n")
    logger.info("demo grid: %d cells (%d already finished) in %.0f s; results in %s", summary.total, summary.skipped,
                time.perf_counter() - started, summary.output_dir)
    if summary.failed:
        raise RuntimeError(f"{len(summary.failed)} demo cells failed: {', '.join(c for c, _ in summary.failed)}")
    return summary.output_dir


def run_bundle_demo(
    name: str,
    out: Path,
    data_dir: Path,
    datalist: dict,
    overrides: dict,
    epochs: int,
    class_names: list[str],
) -> dict:
    """Train, evaluate and infer bundle ``name`` on ``data_dir`` (with ``datalist.json``); return the metrics."""
    logger.info("%s datalist:\n%s", name, summarise_datalist(datalist, class_names))
    bundle = copy_bundle(BUNDLES_DIR / name, out / name)
    common = {"dataset_dir": str(data_dir), "pretrained": "none", "num_workers": 2, **overrides}
    logger.info("%s: training for %d epochs at %d px (bundle copy: %s)", name, epochs, common["image_size"], bundle)
    run_bundle(bundle, ["train.json"], "train", epochs=epochs, **common)
    logger.info("%s: evaluating the best checkpoint on the test split", name)
    run_bundle(bundle, ["train.json", "evaluate.json"], "eval", epochs=epochs, **common)
    logger.info("%s: inference on the test images", name)
    shared = {k: common[k] for k in ("image_size", "arch") if k in common}  # inference repeats the network
    run_bundle(bundle, ["inference.json"], "infer", dataset_dir=str(data_dir),
               datalist=str(data_dir / "datalist.json"), num_workers=2, **shared)
    metrics = json.loads((bundle / "eval" / "metrics.json").read_text())
    logger.info("%s results\n\n%s\n\nreport: %s\nplots: %s, %s\npredictions: %s\nmodel: %s\n", name,
                format_metrics_table(metrics), bundle / "eval" / "report.md", bundle / "eval" / "roc_curves.png",
                bundle / "eval" / "confusion_matrices.png", bundle / "predictions" / "predictions.csv",
                bundle / "models" / "model.pt")
    return metrics


def run_tour(
    output_dir: str | Path = "demo_output",
    n_patients: int = 320,
    image_size: int = 64,
    epochs: int = 8,
    seed: int = 0,
    mammography: bool = True,
    quiet: bool = True,
    mammo_patients: int = TOUR_MAMMO_PATIENTS,
    mammo_epochs: int = TOUR_MAMMO_EPOCHS,
) -> dict:
    """Generate data, then train, evaluate and infer the chest bundle (and briefly the mammography bundle).

    Args:
        output_dir: everything is written here: ``data/chestxray14`` and ``data/cbis_ddsm`` (synthetic
            datasets in the public layouts plus their ``datalist.json``) and one trained copy per bundle
            (``models/model.pt``, ``eval/report.md`` and plots, ``predictions/predictions.csv``).
        n_patients: synthetic chest patients (1-3 images each).
        image_size: chest training resolution (64 keeps the CPU demo within minutes; real data uses 224).
        epochs: chest training epochs.
        seed: data and training seed.
        mammography: also run the mammography bundle, with its documented ``arch`` override to ResNet-18
            (:data:`TOUR_MAMMO_OVERRIDES`, :data:`TOUR_MAMMO_EPOCHS`): Swin-T trained from scratch needs far
            more images than a CPU demo has (measured: AUC 0.32-0.64 after 10 epochs on 60 synthetic patients,
            ResNet-18 0.77).
        quiet: keep the bundles' INFO lines off the console (they still go to ``<output_dir>/demo.log``).

    Returns:
        The chest bundle's evaluation metrics (as in ``eval/metrics.json``).
    """
    out = Path(output_dir).resolve()
    started = time.perf_counter()
    with _quiet(out, quiet):
        chest_dir = out / "data" / "chestxray14"
        logger.info("generating a synthetic ChestX-ray14-layout dataset in %s", chest_dir)
        shutil.rmtree(chest_dir, ignore_errors=True)
        datalist = make_embedded_dataset("chestxray14", chest_dir, {"n_patients": n_patients,
                                                                    "image_size": max(image_size, 64), "seed": seed},
                                         {"val_fraction": 0.15, "seed": seed})
        metrics = run_bundle_demo(
            "chest_xray_classification", out, chest_dir, datalist,
            {**TOUR_CHEST_OVERRIDES, "image_size": image_size, "seed": seed}, epochs, list(CHESTXRAY14_FINDINGS),
        )
        if mammography:
            mammo_dir = out / "data" / "cbis_ddsm"
            logger.info("generating synthetic DICOM mammograms in the CBIS-DDSM layout in %s", mammo_dir)
            shutil.rmtree(mammo_dir, ignore_errors=True)
            generate = {"n_patients": mammo_patients, "image_size": 256, "seed": seed}
            datalist = make_embedded_dataset("cbis-ddsm", mammo_dir, generate, {"val_fraction": 0.2, "seed": seed})
            run_bundle_demo("breast_mammo_classification", out, mammo_dir, datalist,
                            {**TOUR_MAMMO_OVERRIDES, "seed": seed}, mammo_epochs, ["malignant"])
    logger.info("demo finished in %.0f s; chest mean AUC %.3f", time.perf_counter() - started, metrics["mean_auc"])
    return metrics
