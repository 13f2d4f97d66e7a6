"""MONAI Label ``/infer`` latency through the live server vs the bundle's own inference on the same image.

Trains the chest bundle (DenseNet-121, 224 px, random init, one short epoch: the weights' values do not change
the cost) into a workspace, starts the medxfer MONAI Label server, then measures side by side in one run:

- ``server``: ``POST /infer/chest_xray_classification?image=<id>&output=json`` round trips (HTTP, upload-free:
  the image is in the studies folder, as when a viewer asks for a prediction);
- ``direct``: the same ``inference.json`` objects in this process (``Predictor.scores``: the bundle's
  preprocessing, network and post-processing on one image), i.e. the bundle's own per-image inference cost.

Issue target: server overhead (median server - median direct) <= 50 ms + 20 % of direct, at 224 px on CPU.

    python benchmarks/label_latency.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from common.bundle_runner import run_bundle
from common.label.bundles import Predictor, discover_bundles
from common.label.server import running_server
from common.synthetic import make_embedded_dataset

REPO = Path(__file__).resolve().parents[1]
CHEST = "chest_xray_classification"


def _timed(function: object, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table; exit 1 when the target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="requests per side (default 20)")
    parser.add_argument("--image-size", type=int, default=224, help="input size (default 224)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "chestxray14"
        make_embedded_dataset("chestxray14", data, {"n_patients": 16, "images_per_patient": (1, 1),
                                                    "image_size": 256, "seed": 0}, {"val_fraction": 0.5, "seed": 0})
        workspace = root / "workspace"
        bundle = discover_bundles(REPO / "bundles", workspace, [CHEST])[CHEST]
        print(f"training {CHEST} briefly at {args.image_size} px ...", flush=True)
        run_bundle(bundle.source, ["train.json"], "train", state_root=bundle.root, dataset_dir=str(data),
                   pretrained="none", image_size=args.image_size, epochs=1, batch_size=4, val_batch_size=4,
                   num_workers=0)
        studies = root / "studies"
        studies.mkdir()
        image = next(sorted(data.rglob("*.png")).__iter__())
        shutil.copy(image, studies / "bench_0001.png")

        predictor = Predictor(bundle)
        predictor.scores(studies / "bench_0001.png")  # load once, as the server does on its first request
        direct = _timed(lambda: predictor.scores(studies / "bench_0001.png"), args.repeats)

        with running_server(studies, workspace=workspace, models=CHEST, log=root / "server.log") as server:
            url = f"{server.url}/infer/{CHEST}?image=bench_0001&output=json"
            with httpx.Client(timeout=120) as client:
                first = client.post(url)
                if first.status_code != 200:
                    print(f"server answered {first.status_code}: {first.text}", file=sys.stderr)
                    return 1
                served = _timed(lambda: client.post(url).raise_for_status(), args.repeats)
        med_direct, med_server = statistics.median(direct), statistics.median(served)
        overhead = med_server - med_direct
        budget = 0.050 + 0.20 * med_direct
        result = {
            "image_size": args.image_size, "repeats": args.repeats,
            "direct_median_ms": round(1000 * med_direct, 1), "server_median_ms": round(1000 * med_server, 1),
            "overhead_ms": round(1000 * overhead, 1), "budget_ms": round(1000 * budget, 1),
            "target_met": overhead <= budget,
        }
        print(json.dumps(result, indent=2))
        return 0 if result["target_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
