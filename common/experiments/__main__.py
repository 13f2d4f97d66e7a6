"""``python -m common.experiments``: run a grid of transfer-learning experiments and build its leaderboard.

Commands:
    run <grid.yaml> [--output DIR]   run (or resume) every cell; writes results.csv and leaderboard.md
        [--executor local|inprocess|slurm]   where cells run: a process per cell (default), this process, or a
                                             Slurm job array (submitit); see docs/experiments.md
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
from typing import Any

import yaml

from common.errors import DEBUG_ENV, run_command

__all__ = ["GRIDS_DIR", "build_parser", "main"]

GRIDS_DIR = Path(__file__).resolve().parents[2] / "configs" / "grids"


def _add_executor_arguments(run: argparse.ArgumentParser) -> None:
    where = run.add_argument_group("where cells run")
    where.add_argument("--executor", choices=("local", "inprocess", "slurm"), default="local",
                       help="local (default): each cell in its own process, so a crash (segfault, out of memory, "
                            "kill) fails that cell alone; inprocess: every cell in this process, one after the other; "
                            "slurm: a Slurm job array through submitit (run this command on the login node)")
    where.add_argument("--parallel", type=int, default=None,
                       help="local: cells at a time (default: one per visible GPU, or 1)")
    where.add_argument("--gpus", default=None,
                       help="local: comma-separated GPU ids handed to the cells in turn through CUDA_VISIBLE_DEVICES "
                            "(default: CUDA_VISIBLE_DEVICES, else every GPU torch sees; 'none': leave it unset)")
    slurm = run.add_argument_group("Slurm (--executor slurm)")
    slurm.add_argument("--slurm-partition", default=None, help="--partition of every job")
    slurm.add_argument("--slurm-time", type=int, default=240, help="--time per cell in minutes (default 240); a "
                       "cell that reaches it is requeued and resumes from its last epoch")
    slurm.add_argument("--slurm-mem", default=None, help="--mem per cell, e.g. 32G")
    slurm.add_argument("--slurm-gpus-per-task", type=int, default=None, help="--gpus-per-task, e.g. 1")
    slurm.add_argument("--slurm-cpus-per-task", type=int, default=None, help="--cpus-per-task (DataLoader workers)")
    slurm.add_argument("--slurm-account", default=None, help="--account")
    slurm.add_argument("--slurm-qos", default=None, help="--qos")
    slurm.add_argument("--slurm-constraint", default=None, help="--constraint, e.g. a GPU type")
    slurm.add_argument("--slurm-array-parallelism", type=int, default=256,
                       help="at most this many cells run at once (default 256)")
    slurm.add_argument("--slurm-setup", action="append", default=[], metavar="LINE",
                       help="a shell line run before each cell, e.g. 'module load cuda' (repeatable)")
    slurm.add_argument("--slurm-max-requeue", type=int, default=3,
                       help="requeues after reaching --slurm-time before a cell counts as failed (default 3; "
                            "preemptions are always requeued)")
    slurm.add_argument("--slurm-cluster", choices=("slurm", "local"), default="slurm", help=argparse.SUPPRESS)


def _executor_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``run_grid`` executor options the command line gave."""
    if args.executor == "local":
        gpus = None if args.gpus is None else ([] if args.gpus == "none" else args.gpus.split(","))
        return {"parallel": args.parallel, "gpus": gpus}
    if args.executor == "slurm":
        return {"partition": args.slurm_partition, "time_min": args.slurm_time, "mem": args.slurm_mem,
                "gpus_per_task": args.slurm_gpus_per_task, "cpus_per_task": args.slurm_cpus_per_task,
                "account": args.slurm_account, "qos": args.slurm_qos, "constraint": args.slurm_constraint,
                "array_parallelism": args.slurm_array_parallelism, "setup": args.slurm_setup,
                "max_requeue": args.slurm_max_requeue, "cluster": args.slurm_cluster}
    return {}


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
    _add_executor_arguments(run)
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
                           fail_fast=args.fail_fast, executor=args.executor, **_executor_options(args))
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
