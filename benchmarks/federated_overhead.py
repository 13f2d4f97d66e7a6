"""One federated round's wall time vs the same local epochs run by the bundle alone (issue 13).

Data: two synthetic hospitals (:func:`common.synthetic.sites.generate_sites`, ChestX-ray14 layout). Measured in
one run, same machine, same settings (the chest bundle; ``--arch``, ``--image-size``, ``pretrained: none``; the
bundle trains on CUDA when the machine has it):

* **local**: the bundle alone (``configs/train.json``, ConfigWorkflow ``run``) training ``--local-epochs`` epochs on
  site-1's data after one warm-up epoch, its per-epoch validation and checkpointing included, with the torch
  threads one simulated site gets (the cores divided by the sites); setup (parsing, network build) excluded.
* **FL round**: NVFlare's simulator running the same bundle under MonaiAlgo at both sites (``--rounds`` rounds,
  the first one is warm-up); a round's wall time is the time between the sites receiving round ``r`` and round
  ``r + 1`` (mean over the measured rounds ``1 .. rounds-2``): the per-round evaluation of the received global model
  on the local test split (its report without bootstrap intervals), the same local epochs, the weight differences,
  transfer and aggregation. Both sites share this machine's cores (and GPU), each with its share.

Printed side by side: local seconds, FL round seconds, the ratio, and the FL round split into its evaluation
(inference + report), training and the rest (transfer + aggregation + task polling + waiting for the slower site);
then one ``federated_overhead_json: {...}`` line with the same numbers, also written to ``--output``. Target: FL
overhead <= 20% of the local epochs at 224 px.

CPU, small (fixed costs dominate)::

    python benchmarks/federated_overhead.py --image-size 64 --patients 24 --arch resnet18 --output fl64.json

``--round-eval-cache-rate 1`` turns on the cache of the per-round evaluation's preprocessed test images
(``round_eval_cache_rate`` in the bundle's ``configs/fl_evaluate.json``, 0 = off by default; filled once per site when
MonaiAlgo initialises, before round 0), to compare the two side by side.

GPU machine, the issue's setting (DenseNet-121, 224 px, 60 patients per site, ~53 training images at site-1; raise
``--patients`` for a local epoch long enough that the fixed ~3 s of transfer and aggregation can fall under 20%)::

    python benchmarks/federated_overhead.py --image-size 224 --output fl224.json
    python benchmarks/federated_overhead.py --image-size 224 --patients 600 --output fl224_600.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "chest_xray_classification"


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {"pretrained": "none", "arch": args.arch, "image_size": args.image_size, "batch_size": args.batch_size,
            "val_batch_size": args.batch_size, "num_workers": 0, "n_boot": 100}


def _fl_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The sites' overrides: :func:`_overrides` and, when given, the per-round evaluation's cache rate (fl_evaluate.json
    only; the local run has no per-round test evaluation)."""
    cache = {} if args.round_eval_cache_rate is None else {"round_eval_cache_rate": args.round_eval_cache_rate}
    return {**_overrides(args), **cache}


def _local_seconds(args: argparse.Namespace, site: dict[str, Any], out: Path, threads: int) -> float:
    """The bundle alone: train.json on one site's data, with the torch threads one simulated site gets.

    It trains one warm-up epoch more and times the last ``local_epochs`` (as the FL round measured is round 1, after
    a warm-up round).
    """
    import torch
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(config_file=str(BUNDLE / "configs" / "train.json"), workflow_type="train",
                              logging_file=False, meta_file=str(BUNDLE / "configs" / "metadata.json"),
                              **_overrides(args), bundle_root=str(out), dataset_dir=site["dataset_dir"],
                              datalist=site["datalist"], epochs=args.local_epochs + 1)
    workflow.initialize()
    marks: dict[str, float] = {}
    trainer = workflow.trainer
    trainer.add_event_handler(Events.EPOCH_COMPLETED(once=1), lambda _: marks.setdefault("warm", time.perf_counter()))
    trainer.add_event_handler(Events.COMPLETED, lambda _: marks.setdefault("end", time.perf_counter()))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        workflow.run()
    finally:
        torch.set_num_threads(before)
    workflow.finalize()
    return marks["end"] - marks["warm"]


def _round_seconds(run: Path, sites: list[str], rounds: list[int]) -> dict[str, float]:
    """Mean over ``rounds`` of one round's wall time and its parts (the slower site's), from the sites' sent.json."""

    def sent(site: str, r: int) -> dict[str, Any]:
        return json.loads((run / "sites" / site / "rounds" / f"round_{r:03d}" / "sent.json").read_text())

    parts: dict[str, list[float]] = {"round": [], "evaluate": [], "inference": [], "train": []}
    for r in rounds:
        now, after = [sent(s, r) for s in sites], [sent(s, r + 1) for s in sites]
        parts["round"].append(max(x["received_at"] for x in after) - min(x["received_at"] for x in now))
        parts["evaluate"].append(max(x["evaluate_seconds"] for x in now))
        # older site code did not record the evaluation's inference time
        parts["inference"].append(max(x.get("evaluate_inference_seconds", float("nan")) for x in now))
        parts["train"].append(max(x["train_seconds"] for x in now))
    return {key: sum(values) / len(values) for key, values in parts.items()}


def _device() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def _summary(args: argparse.Namespace, local: float, fl: dict[str, float], n_train: int, threads: int) -> dict:
    rest = fl["round"] - fl["evaluate"] - fl["train"]
    return {"arch": args.arch, "image_size": args.image_size, "patients_per_site": args.patients,
            "training_images_site1": n_train, "local_epochs": args.local_epochs, "rounds": args.rounds,
            "measured_rounds": args.rounds - 2, "device": _device(), "threads_per_site": threads,
            "round_eval_cache_rate": args.round_eval_cache_rate,
            "local_seconds": round(local, 3), "fl_round_seconds": round(fl["round"], 3),
            "ratio": round(fl["round"] / local, 3), "overhead_percent": round(100 * (fl["round"] / local - 1), 1),
            "evaluate_seconds": round(fl["evaluate"], 3), "evaluate_inference_seconds": round(fl["inference"], 3),
            "train_seconds": round(fl["train"], 3), "rest_seconds": round(rest, 3),
            "target_met": fl["round"] <= 1.2 * local}


def _report(summary: dict[str, Any]) -> str:
    s = summary
    return (
        f"federated_overhead: {s['arch']} {s['image_size']}px on {s['device']}, {s['training_images_site1']} "
        f"training images at site-1, {s['local_epochs']} local epoch(s), mean of {s['measured_rounds']} round(s), "
        f"round_eval_cache_rate {s['round_eval_cache_rate'] if s['round_eval_cache_rate'] is not None else 'default'}\n"
        f"  local (bundle alone, {s['threads_per_site']} thread(s)) {s['local_seconds']:6.1f} s\n"
        f"  FL round (2 sites)        {s['fl_round_seconds']:8.1f} s   ratio FL/local {s['ratio']:5.2f}\n"
        f"    evaluate global model   {s['evaluate_seconds']:8.1f} s   "
        f"(inference {s['evaluate_inference_seconds']:.1f} s, the rest: report)\n"
        f"    local training          {s['train_seconds']:8.1f} s   ratio train-in-FL/local "
        f"{s['train_seconds'] / s['local_seconds']:5.2f}\n"
        f"    transfer+aggregate+wait {s['rest_seconds']:8.1f} s\n"
        f"  overhead vs local: {s['overhead_percent']:.0f}% (target <= 20%: {'met' if s['target_met'] else 'not met'};"
        f" without the per-round test evaluation: "
        f"{100 * ((s['fl_round_seconds'] - s['evaluate_seconds']) / s['local_seconds'] - 1):.0f}%)\n"
        f"federated_overhead_json: {json.dumps(s, sort_keys=True)}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--patients", type=int, default=60, help="patients per site")
    parser.add_argument("--arch", default="densenet121")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=4, help=">= 3: round 0 warms up, rounds 1..rounds-2 are measured")
    parser.add_argument("--round-eval-cache-rate", type=float, default=None,
                        help="fraction of each site's test split the per-round evaluation keeps preprocessed in memory "
                             "(0 = off; default: the bundle's round_eval_cache_rate)")
    parser.add_argument("--output", type=Path, default=None, help="also write the summary here (JSON)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the data, the local run and the simulator workspace (with its logs) here")
    args = parser.parse_args(argv)
    if args.rounds < 3:
        parser.error("--rounds must be >= 3 (a measured round needs the next round's start)")
    logging.basicConfig(level=logging.WARNING)
    from common.federated.job import FederationSpec
    from common.federated.simulate import simulate
    from common.synthetic.sites import generate_sites

    with tempfile.TemporaryDirectory(prefix="fl_overhead_") as tmp:
        root = Path(args.workdir).resolve() if args.workdir else Path(tmp)
        manifest = generate_sites(root / "data", n_patients=args.patients, image_size=args.image_size, seed=0)
        sites = manifest["sites"]
        threads = max(1, len(os.sched_getaffinity(0)) // len(sites))  # what each simulated site gets
        local = _local_seconds(args, sites["site-1"], root / "local", threads)
        spec = FederationSpec(bundle=str(BUNDLE), sites={s: i["datalist"] for s, i in sites.items()},
                              rounds=args.rounds, local_epochs=args.local_epochs, overrides=_fl_overrides(args),
                              workdir=str(root / "fl"))
        simulate(spec)
        fl = _round_seconds(root / "fl", list(sites), rounds=list(range(1, args.rounds - 1)))
    summary = _summary(args, local, fl, sites["site-1"]["training"], threads)
    sys.stdout.write(_report(summary))
    if args.output is not None:
        args.output.write_text(json.dumps(summary, indent=4, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
