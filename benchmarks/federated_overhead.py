"""One federated round's wall time vs the same local epochs run by the bundle alone (issue 13).

Data: two synthetic hospitals (:func:`common.synthetic.sites.generate_sites`, ChestX-ray14 layout). Measured in
one run, same machine, same settings (the chest bundle; ``--arch``, ``--image-size``, ``pretrained: none``):

* **local**: the bundle alone (``configs/train.json``, ConfigWorkflow ``run``) training ``--local-epochs`` epochs on
  site-1's data after one warm-up epoch, its per-epoch validation and checkpointing included, with the torch
  threads one simulated site gets (the cores divided by the sites); setup (parsing, network build) excluded.
* **FL round**: NVFlare's simulator running the same bundle under MonaiAlgo at both sites (``--rounds`` rounds,
  the first one is warm-up); a round's wall time is the time between a site receiving round ``r`` and round
  ``r + 1``: the per-round evaluation of the received global model on the local test split, the same local epochs,
  the weight differences, transfer and aggregation. Both sites share this machine's cores, each with its share.

Printed side by side: local seconds, FL round seconds, the ratio, and the FL round split into its evaluation,
training and the rest (transfer + aggregation + waiting for the slower site). Target: FL overhead <= 20% of the
local epochs at 224 px on the embedded data.

    python benchmarks/federated_overhead.py --image-size 64 --patients 24 --arch resnet18
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


def _round_seconds(run: Path, sites: list[str], current_round: int) -> dict[str, float]:
    sent = {s: [json.loads((run / "sites" / s / "rounds" / f"round_{r:03d}" / "sent.json").read_text())
                for r in (current_round, current_round + 1)] for s in sites}
    wall = max(records[1]["received_at"] for records in sent.values()) - min(
        records[0]["received_at"] for records in sent.values())
    return {"round": wall, "evaluate": max(r[0]["evaluate_seconds"] for r in sent.values()),
            "train": max(r[0]["train_seconds"] for r in sent.values())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--patients", type=int, default=60, help="patients per site")
    parser.add_argument("--arch", default="densenet121")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help=">= 3: round 0 warms up, round 1 is measured")
    args = parser.parse_args(argv)
    if args.rounds < 3:
        parser.error("--rounds must be >= 3 (a measured round needs the next round's start)")
    logging.basicConfig(level=logging.WARNING)
    from common.federated.job import FederationSpec
    from common.federated.simulate import simulate
    from common.synthetic.sites import generate_sites

    with tempfile.TemporaryDirectory(prefix="fl_overhead_") as tmp:
        root = Path(tmp)
        manifest = generate_sites(root / "data", n_patients=args.patients, image_size=args.image_size, seed=0)
        sites = manifest["sites"]
        threads = max(1, len(os.sched_getaffinity(0)) // len(sites))  # what each simulated site gets
        local = _local_seconds(args, sites["site-1"], root / "local", threads)
        spec = FederationSpec(bundle=str(BUNDLE), sites={s: i["datalist"] for s, i in sites.items()},
                              rounds=args.rounds, local_epochs=args.local_epochs, overrides=_overrides(args),
                              workdir=str(root / "fl"))
        simulate(spec)
        fl = _round_seconds(root / "fl", list(sites), current_round=1)
    rest = fl["round"] - fl["evaluate"] - fl["train"]
    n_train = sites["site-1"]["training"]
    sys.stdout.write(
        f"federated_overhead: {args.arch} {args.image_size}px, {n_train} training images at site-1, "
        f"{args.local_epochs} local epoch(s)\n"
        f"  local (bundle alone, {threads} thread(s)) {local:6.1f} s\n"
        f"  FL round (2 sites)        {fl['round']:8.1f} s   ratio FL/local {fl['round'] / local:5.2f}\n"
        f"    evaluate global model   {fl['evaluate']:8.1f} s\n"
        f"    local training          {fl['train']:8.1f} s   ratio train-in-FL/local {fl['train'] / local:5.2f}\n"
        f"    transfer+aggregate+wait {rest:8.1f} s\n"
        f"  overhead vs local: {100 * (fl['round'] / local - 1):.0f}% "
        f"(without the per-round test evaluation: {100 * ((fl['round'] - fl['evaluate']) / local - 1):.0f}%)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
