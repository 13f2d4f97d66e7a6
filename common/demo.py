"""``make demo``: the chest X-ray bundle end to end on embedded synthetic data, on a CPU in minutes."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from common.bundle_runner import run_bundle
from common.data import (
    CHESTXRAY14_FINDINGS,
    generate_chestxray14,
    load_chestxray14_datalist,
    summarise_datalist,
)
from common.io import atomic_write_json
from common.metrics import format_metrics_table

__all__ = ["BUNDLES_DIR", "run_demo"]

logger = logging.getLogger(__name__)

BUNDLES_DIR = Path(__file__).resolve().parents[1] / "bundles"


def _copy_bundle(name: str, destination: Path) -> Path:
    """Copy a bundle's shareable files (configs, docs, LICENSE) so the demo never writes into the repo."""
    source = BUNDLES_DIR / name
    target = destination / name
    target.mkdir(parents=True, exist_ok=True)
    for part in ("configs", "docs"):
        shutil.copytree(source / part, target / part, dirs_exist_ok=True)
    shutil.copy2(source / "LICENSE", target / "LICENSE")
    return target


def run_demo(
    output_dir: str | Path = "demo_output",
    n_patients: int = 320,
    image_size: int = 64,
    epochs: int = 8,
    seed: int = 0,
) -> dict:
    """Generate data, train, evaluate and run inference with bundles/chest_xray_classification.

    Args:
        output_dir: everything is written here: ``data/chestxray14`` (the synthetic dataset in the NIH
            layout plus ``datalist.json``) and ``chest_xray_classification`` (a trained copy of the
            bundle: ``models/model.pt``, ``eval/report.md`` and plots, ``predictions/predictions.csv``).
        n_patients: synthetic patients (1-3 images each).
        image_size: training resolution (64 keeps the CPU demo within minutes; real data uses 224).
        epochs: training epochs.
        seed: data and training seed.

    Returns:
        The evaluation metrics (as in ``eval/metrics.json``).
    """
    out = Path(output_dir).resolve()
    data_dir = out / "data" / "chestxray14"
    started = time.perf_counter()
    logger.info("[1/4] generating a synthetic ChestX-ray14-layout dataset in %s", data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)
    generate_chestxray14(data_dir, n_patients=n_patients, image_size=max(image_size, 64), seed=seed)
    datalist = load_chestxray14_datalist(data_dir, val_fraction=0.15, seed=seed)
    atomic_write_json(data_dir / "datalist.json", datalist)
    logger.info("datalist:\n%s", summarise_datalist(datalist, CHESTXRAY14_FINDINGS))

    bundle = _copy_bundle("chest_xray_classification", out)
    common = {"dataset_dir": str(data_dir), "pretrained": "none", "image_size": image_size, "seed": seed,
              "num_workers": 2, "batch_size": 32, "val_batch_size": 64}
    logger.info("[2/4] training DenseNet-121 for %d epochs at %d px (bundle: %s)", epochs, image_size, bundle)
    run_bundle(bundle, ["train.json"], "train", epochs=epochs, learning_rate=1e-3, **common)
    logger.info("[3/4] evaluating the best checkpoint on the test split")
    run_bundle(bundle, ["train.json", "evaluate.json"], "eval", epochs=epochs, **common)
    logger.info("[4/4] inference on the test images")
    run_bundle(bundle, ["inference.json"], "infer", input_dir=str(data_dir), datalist=str(data_dir / "datalist.json"),
               image_size=image_size, num_workers=2)
    metrics = json.loads((bundle / "eval" / "metrics.json").read_text())
    logger.info("demo finished in %.0f s\n\n%s\n\nreport: %s\nplots: %s, %s\npredictions: %s\nmodel: %s",
                time.perf_counter() - started, format_metrics_table(metrics), bundle / "eval" / "report.md",
                bundle / "eval" / "roc_curves.png", bundle / "eval" / "confusion_matrices.png",
                bundle / "predictions" / "predictions.csv", bundle / "models" / "model.pt")
    return metrics

