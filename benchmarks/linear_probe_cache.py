"""Linear-probe epoch time with feature caching versus without, through the chest bundle's SupervisedTrainer.

Both runs use bundles/chest_xray_classification/configs/train.json + configs/finetune/lp_cached.json over
the same generated files (no augmentation, batch size, DenseNet-121, LP), one with ``cache_features``
true and one with it false, in one process. Epoch 1 of the cached run includes computing the cache;
the speed-up is the ratio of median epoch times from epoch 2 on. Target (issue 3): >= 20x at 224 px.

    python benchmarks/linear_probe_cache.py --images 48 --image-size 224 --epochs 3
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ignite.engine import Engine, Events
from monai.bundle import ConfigParser

from common.synthetic import make_embedded_dataset

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "chest_xray_classification"
OVERLAY = REPO / "configs" / "finetune" / "lp_cached.json"


def _epoch_times(dataset_dir: Path, out_dir: Path, args: argparse.Namespace, cache: bool) -> tuple[list[float], int]:
    """Train LP for ``args.epochs`` epochs; return each epoch's wall time and the number of training images."""
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / "train.json"), str(OVERLAY)])
    parser.update({"bundle_root": str(out_dir), "dataset_dir": str(dataset_dir), "pretrained": "none",
                   "image_size": args.image_size, "batch_size": args.batch_size, "val_batch_size": args.batch_size,
                   "epochs": args.epochs, "num_workers": args.workers, "val_interval": 10**6,
                   "cache_features": cache})
    parser.get_parsed_content("initialize")
    trainer = parser.get_parsed_content("train#trainer")
    times: list[float] = []
    started: list[float] = []

    def start(engine: Engine) -> None:
        started.append(time.perf_counter())

    def stop(engine: Engine) -> None:
        times.append(time.perf_counter() - started[-1])

    trainer.add_event_handler(Events.EPOCH_STARTED, start)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, stop)
    trainer.run()
    return times, len(parser.get_parsed_content("train#dataset"))


def main(argv: list[str] | None = None) -> int:
    """Run both configurations and print epoch times and the speed-up."""
    cli = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cli.add_argument("--images", type=int, default=48, help="approximate number of training images")
    cli.add_argument("--image-size", type=int, default=224)
    cli.add_argument("--batch-size", type=int, default=16)
    cli.add_argument("--epochs", type=int, default=3, help="epochs per run (>= 2: the speed-up uses epochs 2..)")
    cli.add_argument("--workers", type=int, default=2, help="DataLoader workers reading images")
    args = cli.parse_args(argv)
    if args.epochs < 2:
        cli.error("--epochs must be >= 2")
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        # ~1.5 images per patient, 10% of patients held out for validation
        make_embedded_dataset("chestxray14", data, {"n_patients": max(4, round(args.images / 1.5 / 0.9)),
                                                    "image_size": args.image_size, "seed": 0}, {"val_fraction": 0.1})
        plain, n_images = _epoch_times(data, Path(tmp) / "plain", args, cache=False)
        cached, _ = _epoch_times(data, Path(tmp) / "cached", args, cache=True)
    p, c = statistics.median(plain[1:]), statistics.median(cached[1:])
    sys.stdout.write(
        f"LP densenet121 {args.image_size}px, {n_images} training images, batch {args.batch_size}, "
        f"{args.epochs} epochs, {args.workers} workers\n"
        f"without cache : epochs {[round(t, 3) for t in plain]} s\n"
        f"with cache    : epochs {[round(t, 3) for t in cached]} s (epoch 1 computes the cache)\n"
        f"epoch 2.. median: {p:.3f} s vs {c:.4f} s -> speed-up {p / c:.0f}x (target >= 20x)\n"
        f"epoch 1 (cache build) vs uncached epoch 1: {cached[0] / plain[0]:.2f}x\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
