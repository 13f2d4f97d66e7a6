"""Bundle training overhead: one epoch of the bundle's SupervisedTrainer versus a plain PyTorch loop.

Both use the same network, optimizer, loss, DataLoader (the bundle's own ``train#dataloader`` over the
same generated files) and batch size, measured side by side in one run, alternating the order. Also
reports images/s for training and inference. Target: bundle within 10% of the plain loop.

    python benchmarks/train_overhead.py --images 64 --image-size 224
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

from common.data import generate_chestxray14, load_chestxray14_datalist
from common.io import atomic_write_json

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "chest_xray_classification"


def _parse(dataset_dir: Path, out_dir: Path, image_size: int, batch_size: int) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.json"))
    parser.update({"bundle_root": str(out_dir), "dataset_dir": str(dataset_dir), "pretrained": "none",
                   "image_size": image_size, "batch_size": batch_size, "epochs": 1, "num_workers": 2,
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


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cli.add_argument("--images", type=int, default=64, help="approximate number of training images")
    cli.add_argument("--image-size", type=int, default=224)
    cli.add_argument("--batch-size", type=int, default=16)
    cli.add_argument("--repeats", type=int, default=3)
    args = cli.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        generate_chestxray14(data, n_patients=max(4, args.images // 2 * 10 // 8), image_size=args.image_size, seed=0)
        atomic_write_json(data / "datalist.json", load_chestxray14_datalist(data, val_fraction=0.1, seed=0))
        parser = _parse(data, Path(tmp) / "bundle", args.image_size, args.batch_size)
        n_images = len(parser.get_parsed_content("train#dataset"))
        _plain_epoch(parser)  # warm-up: allocator, oneDNN kernels, file cache
        plain, bundle = [], []
        for repeat in range(args.repeats):
            order = (_plain_epoch, _bundle_epoch) if repeat % 2 == 0 else (_bundle_epoch, _plain_epoch)
            for fn in order:
                (plain if fn is _plain_epoch else bundle).append(fn(parser))
        infer = _inference_rate(parser, args.image_size, args.batch_size)
    p, b = statistics.median(plain), statistics.median(bundle)
    sys.stdout.write(
        f"chest_xray_classification densenet121 {args.image_size}px, {n_images} images, batch {args.batch_size}, "
        f"device {parser.get_parsed_content('device')}\n"
        f"plain loop epoch  : {p:.2f} s ({n_images / p:.1f} img/s)  runs {[round(t, 2) for t in plain]}\n"
        f"bundle epoch      : {b:.2f} s ({n_images / b:.1f} img/s)  runs {[round(t, 2) for t in bundle]}\n"
        f"bundle / plain    : {b / p:.3f} (target <= 1.10)\n"
        f"inference         : {infer:.1f} img/s\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
