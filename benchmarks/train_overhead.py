"""Bundle training overhead: one epoch of a bundle's SupervisedTrainer versus a plain PyTorch loop.

Both use the same network, optimizer, loss, DataLoader (the bundle's own ``train#dataloader`` over the
same generated files) and batch size, measured side by side in one run, alternating the order. Also
reports images/s for training and inference. Target: bundle within 10% of the plain loop.

    python benchmarks/train_overhead.py --images 64 --image-size 224 --bundles chest_xray_classification
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from common.synthetic import make_embedded_dataset

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"


def _make_data(bundle: str, root: Path, n_images: int, image_size: int) -> None:
    """Write synthetic data in the bundle's native layout (about ``n_images`` training images)."""
    if bundle == "chest_xray_classification":
        make_embedded_dataset("chestxray14", root, {"n_patients": max(4, n_images * 10 // 16),
                                                    "image_size": image_size, "seed": 0}, {"val_fraction": 0.1})
    elif bundle.startswith("breast_histology"):
        make_embedded_dataset("bcss", root, {"n_patients": max(4, n_images // 4), "tiles_per_patient": 2,
                                             "tile_size": image_size, "seed": 0},
                              {"val_fraction": 0.15, "test_fraction": 0.15})
    else:
        make_embedded_dataset("cbis-ddsm", root, {"n_patients": max(4, n_images // 3),
                                                  "image_size": max(image_size, 256), "seed": 0}, {"val_fraction": 0.1})


def _parse(bundle: str, dataset_dir: Path, out_dir: Path, image_size: int, batch_size: int) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / bundle / "configs" / "train.json"))
    size_key = "patch_size" if bundle.startswith("breast_histology") else "image_size"
    parser.update({"bundle_root": str(out_dir), "dataset_dir": str(dataset_dir), "pretrained": "none",
                   size_key: image_size, "batch_size": batch_size, "epochs": 1, "num_workers": 2,
                   "val_interval": 10**6})
    return parser


def _plain_epoch(parser: ConfigParser) -> float:
    network, loader = parser.get_parsed_content("network"), parser.get_parsed_content("train#dataloader")
    optimizer, loss_fn = parser.get_parsed_content("optimizer"), parser.get_parsed_content("loss")
    device = parser.get_parsed_content("device")
    network.train()
    start = time.perf_counter()
    for batch in loader:
        images, labels = batch["image"].to(device), batch["label"].to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(network(images), labels)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def _bundle_epoch(parser: ConfigParser) -> float:
    trainer = parser.get_parsed_content("train#trainer")
    start = time.perf_counter()
    trainer.run()  # epochs=1; a finished ignite engine restarts from epoch 0 on the next run()
    return time.perf_counter() - start


def _inference_rate(parser: ConfigParser, image_size: int, batch_size: int, repeats: int = 3) -> float:
    network = parser.get_parsed_content("network").eval()
    x = torch.randn(batch_size, 3, image_size, image_size, device=parser.get_parsed_content("device"))
    with torch.no_grad():
        network(x)
        start = time.perf_counter()
        for _ in range(repeats):
            network(x)
    return repeats * batch_size / (time.perf_counter() - start)


def _sliding_window_rate(parser: ConfigParser, region: int = 1024) -> float:
    """Megapixels/s of the bundle's own sliding-window inferer over a ``region`` x ``region`` image."""
    network, inferer = parser.get_parsed_content("network").eval(), parser.get_parsed_content("validate#inferer")
    x = torch.randn(1, 3, region, region, device=parser.get_parsed_content("device"))
    with torch.no_grad():
        start = time.perf_counter()
        out = inferer(x, network)
    if tuple(out.shape[-2:]) != (region, region):
        raise RuntimeError(f"sliding window returned {tuple(out.shape)} for a {region} px region")
    return region * region / 1e6 / (time.perf_counter() - start)


def measure(bundle: str, n_images: int, image_size: int, batch_size: int, repeats: int) -> str:
    """Plain loop vs bundle trainer epochs (alternating order, median) and inference rate; returns a report."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        _make_data(bundle, data, n_images, image_size)
        parser = _parse(bundle, data, Path(tmp) / "bundle", image_size, batch_size)
        n = len(parser.get_parsed_content("train#dataset"))
        _plain_epoch(parser)  # warm-up: allocator, oneDNN kernels, file cache
        plain, trainer = [], []
        for repeat in range(repeats):
            order = (_plain_epoch, _bundle_epoch) if repeat % 2 == 0 else (_bundle_epoch, _plain_epoch)
            for fn in order:
                (plain if fn is _plain_epoch else trainer).append(fn(parser))
        segmentation = bundle.startswith("breast_histology")
        infer = _sliding_window_rate(parser) if segmentation else _inference_rate(parser, image_size, batch_size)
        arch, device = parser.get_parsed_content("arch"), parser.get_parsed_content("device")
    p, b = statistics.median(plain), statistics.median(trainer)
    return (
        f"{bundle} ({arch}) {image_size}px, {n} images, batch {batch_size}, device {device}\n"
        f"  plain loop epoch : {p:.2f} s ({n / p:.1f} img/s)  runs {[round(t, 2) for t in plain]}\n"
        f"  bundle epoch     : {b:.2f} s ({n / b:.1f} img/s)  runs {[round(t, 2) for t in trainer]}\n"
        f"  bundle / plain   : {b / p:.3f} (target <= 1.10)\n"
    ) + (f"  sliding window   : {infer:.2f} megapixels/s (1024 px region)\n" if segmentation
         else f"  inference        : {infer:.1f} img/s\n")


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cli.add_argument("--bundles", nargs="+", default=["chest_xray_classification", "breast_mammo_classification",
                                                        "breast_histology_segmentation_unet",
                                                        "breast_histology_segmentation_swin_unetr"])
    cli.add_argument("--images", type=int, default=64, help="approximate number of training images")
    cli.add_argument("--image-size", type=int, default=224)
    cli.add_argument("--batch-size", type=int, default=16)
    cli.add_argument("--repeats", type=int, default=3)
    args = cli.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for bundle in args.bundles:
        # Segmentation bundles train on patches: image_size is their patch size (256 is divisible by 32).
        size = 256 if bundle.startswith("breast_histology") and args.image_size == 224 else args.image_size
        sys.stdout.write(measure(bundle, args.images, size, args.batch_size, args.repeats))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
