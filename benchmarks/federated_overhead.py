"""One federated round's wall time vs the same local epochs run by the bundle alone (issue 13).

Data: two synthetic hospitals (:func:`common.synthetic.sites.generate_sites`, ChestX-ray14 layout). Measured in
one run, same machine, same settings (the chest bundle; ``--arch``, ``--image-size``, ``pretrained: none``; the
bundle trains on CUDA when the machine has it):

* **local**: the bundle alone (``configs/train.json``, ConfigWorkflow ``run``) training ``--local-epochs`` epochs on
  site-1's data after one warm-up epoch, its per-epoch validation and checkpointing included, with the torch
  threads one simulated site gets (the cores divided by the sites); setup (parsing, network build) excluded.
* **local, both sites at once** (``--baseline both``, the default, or ``concurrent``): the same, with site-1 and
  site-2 each training its own data in its own process at the same time, sharing this machine as the simulated sites
  do (each with its thread share, both on the one GPU); the slower site's measured epochs. The simulator runs every
  site on one machine, a real federation gives each site its own: this is the contention-matched baseline, printed
  beside the bundle-alone one (which stays the issue's target).
* **FL round**: NVFlare's simulator running the same bundle under MonaiAlgo at both sites (``--rounds`` rounds,
  the first one is warm-up); a round's wall time is the time between the sites receiving round ``r`` and round
  ``r + 1`` (mean over the measured rounds ``1 .. rounds-2``): the per-round evaluation of the received global model
  on the local test split (its report without bootstrap intervals), the same local epochs, the weight differences,
  transfer and aggregation. Both sites share this machine's cores (and GPU), each with its share.

Printed side by side: local seconds, FL round seconds, the ratio, and the FL round split into its evaluation
(inference + report), training and the rest (transfer + aggregation + task polling + waiting for the slower site);
then one ``federated_overhead_json: {...}`` line with the same numbers, also written to ``--output``. Target: FL
overhead <= 20% of the local epochs at 224 px (``target_met``, against the bundle alone;
``target_met_concurrent`` against both sites at once).

``--num-workers`` sets the bundle's ``num_workers`` (DataLoader worker processes) for every run, local and federated
(default 0, as the H200 numbers in docs/federated.md were measured).

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
import multiprocessing
import os
import queue
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
            "val_batch_size": args.batch_size, "num_workers": args.num_workers, "n_boot": 100}


def _fl_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The sites' overrides: :func:`_overrides` and, when given, the per-round evaluation's cache rate (fl_evaluate.json
    only; the local run has no per-round test evaluation)."""
    cache = {} if args.round_eval_cache_rate is None else {"round_eval_cache_rate": args.round_eval_cache_rate}
    return {**_overrides(args), **cache}


def _local_seconds(args: argparse.Namespace, site: dict[str, Any], out: Path, threads: int,
                   start: Any = None) -> float:
    """The bundle alone: train.json on one site's data, with the torch threads one simulated site gets.

    It trains one warm-up epoch more and times the last ``local_epochs`` (as the FL round measured is round 1, after
    a warm-up round). ``start``: a barrier to wait on between setup and training (the concurrent baseline).
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
        if start is not None:
            start.wait()
        workflow.run()
    finally:
        torch.set_num_threads(before)
    workflow.finalize()
    return marks["end"] - marks["warm"]


def _local_child(args: argparse.Namespace, site: dict[str, Any], out: Path, threads: int, start: Any,
                 results: Any, name: str) -> None:
    """One site of the concurrent baseline, in its own process: its measured seconds (or its error) to ``results``."""
    logging.basicConfig(level=logging.WARNING)
    try:
        results.put((name, _local_seconds(args, site, out, threads, start), None))
    except BaseException as err:  # reported by the parent, which raises
        start.abort()
        results.put((name, float("nan"), f"{type(err).__name__}: {err}"))


def _concurrent_local_seconds(args: argparse.Namespace, sites: dict[str, dict[str, Any]], root: Path,
                              threads: int) -> dict[str, float]:
    """Every site's local run at once, one process each (started together after setup); seconds per site.

    Raises:
        RuntimeError: a site's run failed (its error named).
    """
    ctx = multiprocessing.get_context("spawn")  # CUDA in the children; no forked torch state
    start, results = ctx.Barrier(len(sites)), ctx.Queue()
    children = [ctx.Process(target=_local_child, name=name,
                            args=(args, info, root / name, threads, start, results, name))
                for name, info in sites.items()]
    for child in children:
        child.start()
    outcome: list[tuple[str, float, str | None]] = []
    while len(outcome) < len(children):
        try:
            outcome.append(results.get(timeout=5))
        except queue.Empty:
            crashed = {child.name: child.exitcode for child in children if child.exitcode not in (None, 0)}
            if crashed:  # killed before reporting (out of memory, a signal): the others would wait at the barrier
                for child in children:
                    child.terminate()
                raise RuntimeError(f"concurrent local baseline: site process(es) ended without a result, exit "
                                   f"codes {crashed}") from None
    for child in children:
        child.join()
    errors = [f"{name}: {error}" for name, _, error in outcome if error is not None]
    if errors:
        raise RuntimeError("concurrent local baseline failed: " + "; ".join(errors))
    return {name: seconds for name, seconds, _ in outcome}


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


def _summary(args: argparse.Namespace, local: float | None, concurrent: dict[str, float] | None,
             fl: dict[str, float], n_train: int, threads: int) -> dict:
    rest = fl["round"] - fl["evaluate"] - fl["train"]
    both = max(concurrent.values()) if concurrent else None
    measured = {}
    for key, baseline in (("", local), ("_concurrent", both)):
        if baseline is not None:
            measured.update({f"local_seconds{key}": round(baseline, 3), f"ratio{key}": round(fl["round"] / baseline, 3),
                             f"overhead_percent{key}": round(100 * (fl["round"] / baseline - 1), 1),
                             f"target_met{key}": fl["round"] <= 1.2 * baseline})
    if concurrent:
        measured["local_seconds_per_site_concurrent"] = {k: round(v, 3) for k, v in sorted(concurrent.items())}
    return {"arch": args.arch, "image_size": args.image_size, "patients_per_site": args.patients,
            "training_images_site1": n_train, "local_epochs": args.local_epochs, "rounds": args.rounds,
            "measured_rounds": args.rounds - 2, "device": _device(), "threads_per_site": threads,
            "round_eval_cache_rate": args.round_eval_cache_rate, "num_workers": args.num_workers,
            "baseline": args.baseline, **measured, "fl_round_seconds": round(fl["round"], 3),
            "evaluate_seconds": round(fl["evaluate"], 3), "evaluate_inference_seconds": round(fl["inference"], 3),
            "train_seconds": round(fl["train"], 3), "rest_seconds": round(rest, 3)}


def _baseline_lines(s: dict[str, Any]) -> str:
    """The local baselines measured, each with the FL round's overhead against it."""
    lines = []
    for key, label in (("", f"bundle alone, {s['threads_per_site']} thread(s)"),
                       ("_concurrent", "both sites at once, one process each")):
        if f"local_seconds{key}" not in s:
            continue
        local = s[f"local_seconds{key}"]
        without_eval = 100 * ((s["fl_round_seconds"] - s["evaluate_seconds"]) / local - 1)
        lines.append(f"  {'local (' + label + ')':<46}{local:6.1f} s   ratio FL/local {s[f'ratio{key}']:5.2f}   "
                     f"overhead {s[f'overhead_percent{key}']:.0f}% (target <= 20%: "
                     f"{'met' if s[f'target_met{key}'] else 'not met'}; without the per-round test evaluation: "
                     f"{without_eval:.0f}%)\n")
    return "".join(lines)


def _report(summary: dict[str, Any]) -> str:
    s = summary
    train_baseline = s.get("local_seconds_concurrent", s.get("local_seconds"))
    return (
        f"federated_overhead: {s['arch']} {s['image_size']}px on {s['device']}, {s['training_images_site1']} "
        f"training images at site-1, {s['local_epochs']} local epoch(s), mean of {s['measured_rounds']} round(s), "
        f"round_eval_cache_rate {s['round_eval_cache_rate'] if s['round_eval_cache_rate'] is not None else 'default'}, "
        f"num_workers {s['num_workers']}\n"
        f"  FL round (2 sites)        {s['fl_round_seconds']:8.1f} s\n"
        f"    evaluate global model   {s['evaluate_seconds']:8.1f} s   "
        f"(inference {s['evaluate_inference_seconds']:.1f} s, the rest: report)\n"
        f"    local training          {s['train_seconds']:8.1f} s   ratio train-in-FL/local "
        f"{s['train_seconds'] / train_baseline:5.2f}\n"
        f"    transfer+aggregate+wait {s['rest_seconds']:8.1f} s\n"
        f"{_baseline_lines(s)}"
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
    parser.add_argument("--num-workers", type=int, default=0, help="the bundle's num_workers, every run (default 0)")
    parser.add_argument("--baseline", choices=("alone", "concurrent", "both"), default="both",
                        help="local baseline: the bundle alone on site-1, both sites training at once (as the "
                             "simulator shares this machine), or both (default)")
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
        local = (None if args.baseline == "concurrent"
                 else _local_seconds(args, sites["site-1"], root / "local", threads))
        concurrent = (None if args.baseline == "alone"
                      else _concurrent_local_seconds(args, sites, root / "local_concurrent", threads))
        spec = FederationSpec(bundle=str(BUNDLE), sites={s: i["datalist"] for s, i in sites.items()},
                              rounds=args.rounds, local_epochs=args.local_epochs, overrides=_fl_overrides(args),
                              workdir=str(root / "fl"))
        simulate(spec)
        fl = _round_seconds(root / "fl", list(sites), rounds=list(range(1, args.rounds - 1)))
    summary = _summary(args, local, concurrent, fl, sites["site-1"]["training"], threads)
    sys.stdout.write(_report(summary))
    if args.output is not None:
        args.output.write_text(json.dumps(summary, indent=4, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
