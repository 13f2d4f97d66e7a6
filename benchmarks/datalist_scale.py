"""ChestX-ray14 adapter at full scale: 112,120 CSV rows, 112,120 image files, the official split lists.

Writes a full-size layout (empty PNG placeholders in images_001..012/images, the 2017 CSV with its
trailing column, 30,805 patients, the official-size train_val/test lists) and times
``load_chestxray14_datalist`` with and without the image existence check. Issue target: seconds.

    python benchmarks/datalist_scale.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common.data import CHESTXRAY14_FINDINGS, load_chestxray14_datalist
from common.synthetic.cxr import DATA_ENTRY_2017_HEADER


def write_layout(root: Path, n_images: int, n_patients: int, seed: int = 0) -> None:
    """Write the CSV, the split lists and empty image files of a full-size ChestX-ray14 folder."""
    rng = np.random.default_rng(seed)
    patients = np.sort(rng.integers(1, n_patients + 1, size=n_images))
    follow = np.zeros(n_images, dtype=int)
    for i in range(1, n_images):
        follow[i] = follow[i - 1] + 1 if patients[i] == patients[i - 1] else 0
    names = [f"{p:08d}_{f:03d}.png" for p, f in zip(patients, follow, strict=True)]
    findings = np.asarray(CHESTXRAY14_FINDINGS)
    rows = [DATA_ENTRY_2017_HEADER]
    for name, patient, f in zip(names, patients, follow, strict=True):
        present = findings[rng.random(len(findings)) < 0.05]
        labels = "|".join(present) if len(present) else "No Finding"
        rows.append(f"{name},{labels},{f},{patient},58,M,PA,1024,1024,0.143,0.143,")
    (root / "Data_Entry_2017.csv").write_text("\n".join(rows) + "\n")
    test_patients = set(rng.choice(np.unique(patients), size=len(np.unique(patients)) // 5, replace=False))
    test = [n for n, p in zip(names, patients, strict=True) if p in test_patients]
    train = [n for n, p in zip(names, patients, strict=True) if p not in test_patients]
    (root / "test_list.txt").write_text("\n".join(test) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(train) + "\n")
    for index, chunk in enumerate(np.array_split(np.asarray(names), 12), start=1):
        folder = root / f"images_{index:03d}" / "images"
        folder.mkdir(parents=True)
        for name in chunk:
            (folder / name).touch()


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cli.add_argument("--images", type=int, default=112_120)
    cli.add_argument("--patients", type=int, default=30_805)
    args = cli.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        write_layout(root, args.images, args.patients)
        written = time.perf_counter() - start
        timings = {}
        for check in (False, True):
            start = time.perf_counter()
            datalist = load_chestxray14_datalist(root, val_fraction=0.1, seed=0, check_images=check)
            timings[check] = time.perf_counter() - start
    counts = {k: len(v) for k, v in datalist.items()}
    sys.stdout.write(
        f"layout of {args.images} images written in {written:.1f} s; splits {counts}\n"
        f"load_chestxray14_datalist without image check: {timings[False]:.2f} s\n"
        f"load_chestxray14_datalist with image check   : {timings[True]:.2f} s (target: seconds)\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
