"""``python -m common.experiments``: run a grid of transfer-learning experiments and build its leaderboard.

Commands:
    run <grid.yaml> [--output DIR]   run (or resume) every cell; writes results.csv and leaderboard.md
    report <DIR>                     rebuild the leaderboard from DIR/results.csv
    list                             the shipped grid files

A user error (bad grid, missing data or weights, an output that cannot be written) prints one line,
``error: <message>``, and exits with status 2 (the traceback with ``--debug`` or ``MEDXFER_DEBUG=1``); failed
cells exit with status 1 after the others have run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import yaml

from common.errors import DEBUG_ENV, run_command

__all__ = ["GRIDS_DIR", "build_parser", "main"]

GRIDS_DIR = Path(__file__).resolve().parents[2] / "configs" / "grids"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (every command has ``--help``)."""
    parser = argparse.ArgumentParser(prog="python -m common.experiments", description=__doc__.split("\n\n")[0])
    parser.add_argument("--debug", action="store_true",
                        help=f"show the full traceback of a user error (or set {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run or resume a grid", description=(
        "Expand the grid, run each unfinished cell through its bundle's train and evaluate configs, and write "
        "results.csv, leaderboard.md and plots. Re-running the same command resumes: finished cells are skipped, "
        "an interrupted cell is re-run."))
    run.add_argument("grid", type=Path, help="grid file (YAML or JSON); see configs/grids/ for examples")
    run.add_argument("--output", type=Path, default=None,
                     help="run folder (default: experiments/<grid name>); reuse it to resume")
    run.add_argument("--num-workers", type=int, default=None, help="DataLoader workers for every run")
    run.add_argument("--dry-run", action="store_true", help="check the grid and list the cells, run nothing")
    run.add_argument("--fail-fast", action="store_true", help="stop at the first failing cell")
    run.add_argument("--verbose", action="store_true",
                     help="show every bundle log line (per-iteration losses, per-class tables) on the console; by "
                          "default they go to OUTPUT/run.log and the console shows one line per cell")
    report = sub.add_parser("report", help="rebuild the leaderboard of a run folder",
                            description="Recompute leaderboard.md/.csv and the plots from DIR/results.csv.")
    report.add_argument("output", type=Path, help="a run folder holding results.csv")
    report.add_argument("--baseline", default=None,
                        help="strategy the paired tests compare against (default: the run's grid.yaml baseline, or ft)")
    report.add_argument("--title", default=None, help="leaderboard heading")
    sub.add_parser("list", help="list the shipped grid files", description="List configs/grids/*.yaml.")
    return parser


def _run(args: argparse.Namespace) -> int:
    from common.bundle_logs import quiet_bundle_logs
    from common.experiments.grid import load_grid
    from common.experiments.runner import run_grid

    grid = load_grid(args.grid)
    output = args.output or Path("experiments") / grid.name
    detail: Path | None = None
    if not (args.verbose or args.dry_run):  # a dry run writes nothing
        try:  # bundle detail goes to OUTPUT/run.log; an unwritable OUTPUT is reported by run_grid, in one line
            output.mkdir(parents=True, exist_ok=True)
            detail = output / "run.log"
        except OSError:
            pass
    quiet = nullcontext() if args.verbose or args.dry_run else quiet_bundle_logs(detail)
    with quiet:
        summary = run_grid(grid, output, num_workers=args.num_workers, dry_run=args.dry_run,
                           fail_fast=args.fail_fast)
    if args.dry_run:
        sys.stdout.write(f"{summary.total} cells; nothing was run (--dry-run)\n")
        return 0
    sys.stdout.write(f"{summary.total} cells: {summary.skipped} already finished, {summary.ran} run, "
                     f"{len(summary.failed)} failed\n")
    if summary.leaderboard is not None:
        sys.stdout.write((summary.leaderboard / "leaderboard.md").read_text() + "\n")
    for cell, error in summary.failed:
        sys.stdout.write(f"FAILED {cell}: {error}\n")
    return 1 if summary.failed else 0


def _report(args: argparse.Namespace) -> int:
    from common.errors import DataError
    from common.experiments.leaderboard import write_leaderboard
    from common.experiments.runner import read_results

    rows = read_results(args.output)
    if not rows:
        raise DataError(f"no finished runs: {args.output / 'results.csv'} is missing or empty")
    baseline = args.baseline
    if baseline is None:
        grid_file = args.output / "grid.yaml"
        raw = yaml.safe_load(grid_file.read_text()) if grid_file.is_file() else None
        baseline = str(raw.get("baseline", "ft")) if isinstance(raw, dict) else "ft"
    folder = write_leaderboard(rows, args.output, title=args.title or f"Leaderboard: {args.output.name}",
                               baseline=baseline)
    sys.stdout.write((folder / "leaderboard.md").read_text() + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def command() -> int:
        if args.command == "list":
            for file in sorted(GRIDS_DIR.glob("*.yaml")):
                sys.stdout.write(f"{file}\n")
            return 0
        return _run(args) if args.command == "run" else _report(args)

    return run_command(command, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
