"""Images per second per loader worker: the chest bundle reading 1024 px PNGs versus its prepared-image cache.

Both loaders are the bundle's own ``validate#dataset`` (deterministic: load, CLAHE, resize to 224 px, ImageNet
normalisation) and ``train#dataset`` (the same plus the CPU random augmentation), built from
bundles/chest_xray_classification/configs/train.json once with ``cache_dir`` null and once with the cache that
``common.data.cache_build.build_cache`` wrote, in one process over the same files. Each is read item by item in
the main process with one torch thread, as in a DataLoader worker, one warm-up pass first, so the numbers are per
worker and the page cache is warm for both. Synthetic 1024 px radiographs are generated once and copied under new
names up to ``--images`` (decoding a copy costs what decoding an original does). Target (issue 14): cached >= 10x
the PNG loader.

    python benchmarks/cache_loader.py --images 64 --image-size 224
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser

from common.data.cache_build import build_cache
from common.synthetic import make_embedded_dataset

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "chest_xray_classification"


def _make_dataset(root: Path, images: int, source_size: int) -> Path:
    """``images`` 1024 px PNGs (copies of a few generated ones) and a datalist using all of them for both splits."""
    generate = {"n_patients": 6, "images_per_patient": (1, 2), "image_size": source_size, "seed": 0}
    make_embedded_dataset("chestxray14", root, generate, {"val_fraction": 0.3})
    originals = [item for split in json.loads((root / "datalist.json").read_text()).values() if isinstance(split, list)
                 for item in split]  # fmt: skip
    items = []
    for number in range(images):
        item = dict(originals[number % len(originals)])
        copy = f"images/copy{number:04d}.png"
        shutil.copyfile(root / item["image"], root / copy)
        items.append({**item, "image": copy, "patient_id": f"copy{number}"})
    (root / "datalist.json").write_text(json.dumps({"training": items, "validation": items}))
    return root


def _dataset(dataset_dir: Path, key: str, image_size: int, cache_dir: Path | None) -> Any:
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.json"))
    parser.update({"dataset_dir": str(dataset_dir), "image_size": image_size,
                   "cache_dir": None if cache_dir is None else str(cache_dir)})  # fmt: skip
    return parser.get_parsed_content(key)


def _images_per_second(dataset: Any, passes: int) -> float:
    for index in range(len(dataset)):  # warm-up: page cache, lazy imports, memory maps opened
        dataset[index]
    started = time.perf_counter()
    for _ in range(passes):
        for index in range(len(dataset)):
            dataset[index]
    return passes * len(dataset) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    """Build the cache, time both loaders for both splits, print img/s per worker and the ratios."""
    cli = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cli.add_argument("--images", type=int, default=64, help="PNG files read per pass")
    cli.add_argument("--source-size", type=int, default=1024, help="side of the generated PNGs")
    cli.add_argument("--image-size", type=int, default=224, help="the bundle's image_size")
    cli.add_argument("--passes", type=int, default=2, help="timed passes over the cached data (PNG: 1)")
    args = cli.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)  # what torch gives each DataLoader worker; also keeps 2 shared cores comparable
    with tempfile.TemporaryDirectory() as tmp:
        data = _make_dataset(Path(tmp) / "data", args.images, args.source_size)
        started = time.perf_counter()
        index = build_cache(BUNDLE, data / "datalist.json", Path(tmp) / "cache", splits=["training"],
                            overrides={"image_size": args.image_size}, num_workers=0, progress=False)  # fmt: skip
        build_s = time.perf_counter() - started
        size_mb = sum(f.stat().st_size for f in (Path(tmp) / "cache").rglob("*") if f.is_file()) / 1e6
        sys.stdout.write(f"{args.images} PNGs of {args.source_size} px -> {args.image_size} px; cache built in "
                         f"{build_s:.1f} s with one process ({args.images / build_s:.1f} img/s), {size_mb:.1f} MB, "
                         f"image stored as {index['encodings']['image']['stored']}\n")  # fmt: skip
        rows = []
        for label, key in (("deterministic (validate#dataset)", "validate#dataset"),
                           ("with CPU augmentation (train#dataset)", "train#dataset")):  # fmt: skip
            png = _images_per_second(_dataset(data, key, args.image_size, None), 1)
            cached = _images_per_second(_dataset(data, key, args.image_size, Path(tmp) / "cache"), args.passes)
            rows.append((label, png, cached))
    sys.stdout.write(f"{'loader (1 worker)':40s} {'PNG img/s':>10s} {'cached img/s':>13s} {'ratio':>7s}\n")
    for label, png, cached in rows:
        sys.stdout.write(f"{label:40s} {png:10.1f} {cached:13.1f} {cached / png:6.1f}x\n")
    sys.stdout.write(f"target: cached >= 10x the PNG loader: {'met' if rows[0][2] >= 10 * rows[0][1] else 'NOT met'} "
                     f"for the deterministic loader\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
