"""Pointing game of a DenseNet-121 trained on the embedded synthetic chest data (issue 16's explanation target).

Generates the synthetic ChestX-ray14 layout (with ``BBox_List_2017.csv``), trains the chest bundle's DenseNet-121
(from scratch: medxfer never downloads, and the CPU test machines have no ImageNet file; ``--pretrained imagenet``
when the torch hub cache has one), then runs ``python -m common explain-eval`` on the test split and prints the
per-finding hit rate beside the random-point baseline. Target: hit rate clearly above the baseline for the findings
with local signs. Too slow for a test on 2 CPU cores (minutes), so it is measured here.

    python benchmarks/explain_pointing_game.py --patients 200 --stored-size 128 --image-size 128 --epochs 6
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

from monai.bundle import ConfigWorkflow

from common.explain.bundle import evaluate_pointing_game, format_pointing_table
from common.synthetic import make_embedded_dataset

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "chest_xray_classification"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--stored-size", type=int, default=128, help="PNG side the generator writes")
    parser.add_argument("--image-size", type=int, default=128, help="network input side")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, help="keep the data and the trained bundle here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = args.output_dir or Path(tempfile.mkdtemp(prefix="explain_bench_"))
    dataset, root = out / "data", out / "bundle"
    make_embedded_dataset("chestxray14", dataset, {"n_patients": args.patients, "image_size": args.stored_size,
                                                   "seed": args.seed}, {"val_fraction": 0.1, "seed": args.seed})
    start = time.perf_counter()
    workflow = ConfigWorkflow(config_file=str(BUNDLE / "configs" / "train.json"),
                              meta_file=str(BUNDLE / "configs" / "metadata.json"),
                              logging_file=str(BUNDLE / "configs" / "logging.conf"), workflow_type="train",
                              bundle_root=str(root), dataset_dir=str(dataset), pretrained=args.pretrained,
                              image_size=args.image_size, epochs=args.epochs, batch_size=32, val_batch_size=64,
                              learning_rate=1e-3, num_workers=args.num_workers, seed=args.seed)  # fmt: skip
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    trained = time.perf_counter() - start
    result = evaluate_pointing_game(root, dataset, configs_dir=BUNDLE / "configs", seed=args.seed)
    sys.stdout.write(f"DenseNet-121, {args.patients} patients, {args.stored_size} px stored, {args.image_size} px "
                     f"input, {args.epochs} epochs, pretrained={args.pretrained}: trained in {trained:.0f} s, "
                     f"explain-eval in {time.perf_counter() - start - trained:.0f} s\n{format_pointing_table(result)}")


if __name__ == "__main__":
    main()
