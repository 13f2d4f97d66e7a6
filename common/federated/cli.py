"""Argument parsing of ``python -m common.federated`` (simulate, export)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.errors import ConfigError

__all__ = ["build_parser", "main", "spec_from_args"]


def _set(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, type=Path, help="bundle folder (with configs/fl_*.json)")
    parser.add_argument("--sites", required=True, help="NAME=DATALIST[,NAME=DATALIST...]; a site's dataset folder is "
                        "its datalist's folder")
    parser.add_argument("--rounds", type=int, default=2, help="federated rounds (default 2)")
    parser.add_argument("--local-epochs", type=int, default=1, help="local epochs per round (default 1)")
    parser.add_argument("--strategy", type=Path, default=None,
                        help="fine-tuning overlay, e.g. configs/finetune/lp_ft.json")
    parser.add_argument("--set", type=_set, action="append", default=[], metavar="KEY=VALUE",
                        help="override a top-level bundle setting at every site (JSON value), e.g. image_size=64")
    parser.add_argument("--name", default="medxfer_fedavg", help="job name")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m common.federated`` parser."""
    parser = argparse.ArgumentParser(prog="python -m common.federated",
                                     description="Federated fine-tuning of a medxfer bundle with NVIDIA FLARE "
                                                 "(FedAvg, MONAI's MonaiAlgo at each site). See docs/federated.md.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)
    sim = commands.add_parser("simulate", help="run the job offline in NVFlare's simulator (threads, CPU or one GPU); "
                              "scored per round, per site and pooled by the bundle's own test metric (mean_auc, "
                              "macro_auc or mean_dice)")
    _common(sim)
    sim.add_argument("--output", type=Path, default=Path("federated_output"), help="run folder")
    sim.add_argument("--export", type=Path, default=None, help="also write the job folder here")
    sim.add_argument("--baselines", action="store_true", help="also train each site alone and all sites pooled "
                     "(rounds x local epochs each) and rank them with the federated model in results.csv")
    exp = commands.add_parser("export", help="write the job folder for a real deployment, without running it")
    _common(exp)
    exp.add_argument("--output", type=Path, required=True, help="folder to export the job into")
    exp.add_argument("--site-workdir", type=Path, default=Path("federated_site"),
                     help="where each site writes its checkpoints and reports (a path on the sites)")
    return parser


def spec_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~common.federated.job.FederationSpec` of parsed arguments."""
    from common.federated.job import FederationSpec, parse_sites

    workdir = args.output if args.command == "simulate" else args.site_workdir
    return FederationSpec(bundle=str(args.bundle), sites=parse_sites(args.sites), rounds=args.rounds,
                          local_epochs=args.local_epochs, strategy=str(args.strategy) if args.strategy else None,
                          overrides=dict(args.set), workdir=str(workdir), name=args.name)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; exit status 0, or 1 with one readable line for a medxfer error."""
    from common.errors import MedxferError

    args = build_parser().parse_args(argv)
    # NVFlare reads --export / --export-dir from sys.argv when imported; ours are parsed already
    sys.argv = sys.argv[:1]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        spec = spec_from_args(args)
        if args.command == "export":
            from common.federated.simulate import export_job

            sys.stdout.write(f"exported the job to {export_job(spec, args.output)}\n")
            return 0
        from common.federated.simulate import simulate

        summary = simulate(spec, export_dir=args.export, baselines=args.baselines)
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return 0
    except (MedxferError, ConfigError) as error:
        if args.debug:
            raise
        sys.stderr.write(f"error: {error}\n")
        return 1
