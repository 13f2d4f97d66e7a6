"""Run a grid: every cell through its bundle's own train and evaluate configs, resumably.

Output folder layout::

    grid.yaml                      the grid as given (provenance)
    data/<layout>-<hash>/          embedded datasets (generated once)
    pretrain/<arch>__<stage1>/     stage-2 bundle runs (models/model.pt = the hand-off checkpoint)
    cells/<cell id>/               one bundle copy per cell: models/, eval/, logs/, result.json (a cell of a task
                                   with sites: the federation's or reference's folder, its eval_dir in result.json)
    results.csv                    one row per finished cell
    leaderboard.md, leaderboard.csv, leaderboard.png, roc_best.png

A cell runs in ``cells/<id>.partial`` and is renamed to ``cells/<id>`` only after its ``result.json``
is written, so a killed or crashed cell leaves a ``.partial`` folder that the next run continues (the bundle
resumes training from its last epoch checkpoint when the cell's settings are unchanged), and a
finished cell is never run or touched again. ``result.json`` records a fingerprint of the cell's settings:
resuming with a changed grid (e.g. other epochs) stops with an error instead of mixing results. A finished
cell whose ``result.json`` cannot be read (a damaged disk, a hand edit) counts as unfinished: its folder is
moved aside to ``cells/<id>.corrupt-<time>`` (never deleted), with a warning naming it, and run again.

Where runs execute is the executor's business (:mod:`common.experiments.executors`: in this process, local
subprocesses, a Slurm array); whichever ran it, a run writes only its own folder, atomically, and this module
reads the folders and writes ``results.csv`` and the leaderboard. Stage-2 runs go first (one wave), then the cells.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import ConfigError, OutputError
from common.experiments.cells import Cell
from common.experiments.data import prepare_data
from common.experiments.executors import Executor, Outcome, make_executor
from common.experiments.jobs import RunJob
from common.experiments.plan import GridPlan, plan_grid
from common.experiments.progress import CellProgress
from common.experiments.specs import Grid
from common.experiments.stats import REQUIRED_COLUMNS
from common.experiments.tracking import mlflow_settings
from common.io import atomic_write_text, make_directory

__all__ = ["RESULT_COLUMNS", "GridRun", "read_results", "run_grid"]

logger = logging.getLogger(__name__)

#: results.csv: the columns the leaderboard reads, the best validation value of each run, the task's modality and the
#: training mode (``local``: one site's data, the default; ``pooled``; ``federated``; ``local-<site>``: one site of a
#: federation alone).
RESULT_COLUMNS = (*REQUIRED_COLUMNS, "val_metric", "modality", "training")


@dataclass
class GridRun:
    """What :func:`run_grid` did."""

    output_dir: Path
    total: int
    skipped: int = 0
    ran: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    leaderboard: Path | None = None


#: Keys every result.json holds; a cell's also ``metric`` and a numeric ``value``.
_RESULT_KEYS = ("fingerprint", "seconds")


def _read_result(folder: Path, is_cell: bool) -> dict[str, Any] | None:
    """``folder/result.json`` (None if absent).

    Raises:
        ValueError: it is not a JSON object with the keys a finished run writes (the message says why).
    """
    file = folder / "result.json"
    if not file.is_file():
        return None
    try:
        result = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"unreadable ({err})") from err
    keys = (*_RESULT_KEYS, "metric", "value") if is_cell else _RESULT_KEYS
    missing = [key for key in keys if not isinstance(result, dict) or key not in result]
    if missing:
        raise ValueError(f"no {', '.join(missing)}")
    if is_cell and (isinstance(result["value"], bool) or not isinstance(result["value"], int | float)):
        raise ValueError(f"value {result['value']!r} is not a number")
    return result


def _set_aside(folder: Path, reason: str) -> Path:
    """Move a finished run's folder with a damaged result.json to ``<folder>.corrupt-<time>``: kept, re-run."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = folder.with_name(f"{folder.name}.corrupt-{stamp}")
    count = 1
    while aside.exists():
        count += 1
        aside = folder.with_name(f"{folder.name}.corrupt-{stamp}-{count}")
    try:
        folder.replace(aside)
    except OSError as err:
        raise OutputError("move aside (corrupt result.json)", folder, err) from err
    logger.warning("%s/result.json is corrupt (%s): moved the run to %s; it is run again", folder, reason, aside)
    return aside


def read_results(output_dir: str | Path) -> list[dict[str, str]]:
    """The rows of ``output_dir/results.csv`` (empty if none)."""
    file = Path(output_dir) / "results.csv"
    if not file.is_file():
        return []
    with file.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _write_results(out: Path, cells: list[Cell], results: dict[Path, dict[str, Any] | None]) -> list[dict[str, Any]]:
    """Write results.csv from the finished cells' results (read once by the caller, not again per write)."""
    rows = []
    for cell in cells:
        folder = out / "cells" / cell.id
        result = results.get(folder)
        if result is None:
            continue
        rows.append({**cell.describe(), "metric": result["metric"], "value": result["value"],
                     "val_metric": result.get("val_metric"), "seconds": result["seconds"],
                     "eval_dir": str(folder / result.get("eval_dir", "eval"))})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "results.csv", buffer.getvalue())
    return rows


def _check_resumable(out: Path, planned: list[tuple[Path, str]], results: dict[Path, dict[str, Any] | None]) -> None:
    changed = [str(folder) for folder, fp in planned
               if (r := results[folder]) is not None and r.get("fingerprint") != fp]
    if changed:
        raise ConfigError(
            f"{len(changed)} finished cells in {out} were run with other settings than this grid "
            f"({', '.join(changed[:3])}{' ...' if len(changed) > 3 else ''}); results are never overwritten: "
            f"run into a new --output folder, or move those cells away to re-run them"
        )


def _collect(outcome: Outcome, job: RunJob, results: dict[Path, dict[str, Any] | None]) -> str | None:
    """Record a finished job's result.json in ``results``; return why it failed (``None``: it did not)."""
    if outcome.stop:  # a full or read-only disk fails every run: stop and say so
        raise OutputError("run", job.partial, outcome.error or "output error")
    if outcome.ok:
        try:
            results[job.final] = _read_result(job.final, is_cell=job.evaluate)
        except ValueError as err:
            return f"it ended but its result.json is unusable ({err})"
        if results[job.final] is not None:
            return None
        return f"it ended without writing {job.final}/result.json"
    where = f"log: {outcome.log}" if outcome.log and outcome.log not in (outcome.error or "") else ""
    return "; ".join(filter(None, [outcome.error or "failed", where]))


def _run_stage2(executor: Executor, jobs: list[RunJob], out: Path,
                results: dict[Path, dict[str, Any] | None]) -> dict[str, str]:  # fmt: skip
    """Run the stage-2 jobs (one wave, before any cell); return the failed ones' messages by job name."""
    failed: dict[str, str] = {}

    def started(job: RunJob) -> None:
        logger.info("stage 2: pretraining %s (%s)", job.settings["arch"], job.settings["pretrained"])

    with closing(executor.run(jobs, out, on_start=started)) as outcomes:
        for outcome in outcomes:
            job = next(j for j in jobs if j.name == outcome.name)
            reason = _collect(outcome, job, results)
            if reason is not None:
                failed[job.name] = f"{reason} (traceback in {job.partial}/error.txt)"
                logger.error("stage-2 run %s failed: %s", job.name, failed[job.name])
    return failed


def _prepare(grid: Grid, out: Path, corrupt: dict[Path, str]) -> None:
    """Create the run folder; set corrupt runs aside; keep the grid; generate embedded data (writes)."""
    if grid.tracking == "mlflow":
        mlflow_settings(out / "mlruns", grid.name, "check")  # fails before anything is written when MLflow is missing
    make_directory(out)
    for folder, reason in corrupt.items():
        _set_aside(folder, reason)
    if grid.source is not None:
        atomic_write_text(out / "grid.yaml", grid.source.read_text())
    for task in grid.tasks:
        prepare_data(task.data, out / "data")


def _read_all(plan: GridPlan, out: Path) -> tuple[dict[Path, dict[str, Any] | None], dict[Path, str]]:
    results: dict[Path, dict[str, Any] | None] = {}  # read once; updated as runs finish
    corrupt: dict[Path, str] = {}
    for job in plan.jobs():
        try:
            results[job.final] = _read_result(job.final, is_cell=job.evaluate)
        except ValueError as err:
            results[job.final], corrupt[job.final] = None, str(err)
    _check_resumable(out, [(job.final, job.fingerprint) for job in plan.jobs()], results)
    return results, corrupt


def run_grid(
    grid: Grid, output_dir: str | Path, num_workers: int | None = None, dry_run: bool = False,
    fail_fast: bool = False, executor: str | Executor = "inprocess", **executor_options: Any,
) -> GridRun:
    """Run every unfinished cell of ``grid`` into ``output_dir``; write results.csv and the leaderboard.

    Args:
        grid: a validated grid (:func:`common.experiments.load_grid`).
        output_dir: the run folder (see module docstring); reuse it to resume.
        num_workers: DataLoader workers for every run (not part of a cell's settings).
        dry_run: list the plan and what is already finished, run nothing.
        fail_fast: stop at the first failing cell (default: record it, go on, report at the end).
        executor: ``"inprocess"`` (default: this process, one cell after the other), ``"local"`` (a subprocess per
            cell, ``parallel`` at a time, one GPU each) or ``"slurm"`` (a submitit job array), or an executor.
        executor_options: the executor's arguments (:func:`common.experiments.executors.make_executor`), e.g.
            ``parallel=2`` or ``partition="gpu", gpus_per_task=1``.

    Returns:
        A :class:`GridRun` summary; ``failed`` lists cells that failed (their ``.partial`` folder keeps
        ``error.txt`` with the traceback or how the process ended, and is continued on the next run).

    Raises:
        ConfigError: finished cells in ``output_dir`` were run with other settings; an unknown executor.
        OutputError: the run folder cannot be written (a full or read-only disk stops the grid).
    """
    from common.experiments.leaderboard import write_leaderboard  # matplotlib, sklearn: only once results exist

    out = Path(output_dir).resolve()
    plan = plan_grid(grid, out, num_workers)
    cells = [cell for cell, _ in plan.cells]
    summary = GridRun(out, total=len(cells))
    results, corrupt = _read_all(plan, out)
    if dry_run:
        for job in plan.jobs():
            state = "done" if results[job.final] else ("corrupt result.json: to re-run" if job.final in corrupt
                                                        else "to run")
            logger.info("%-80s %s", job.name, state)
        return summary
    runner = make_executor(executor, **executor_options) if isinstance(executor, str) else executor
    _prepare(grid, out, corrupt)
    todo = [(cell, job) for cell, job in plan.cells if results[job.final] is None]
    needed = list(dict.fromkeys(c.pretrain.id for c, _ in todo if c.pretrain is not None))
    stage2 = [plan.stage2[pid] for pid in needed if results[plan.stage2[pid].final] is None]
    if stage2 and grid.pretraining is not None:
        prepare_data(grid.pretraining.data, out / "data")
    failed_stage2 = _run_stage2(runner, stage2, out, results)
    summary.skipped = len(cells) - len(todo)
    with CellProgress(len(cells), summary.skipped) as progress:
        runnable = []
        for cell, job in todo:
            pjob = plan.stage2[cell.pretrain.id] if cell.pretrain is not None else None
            if pjob is not None and pjob.name in failed_stage2:
                _record_failure(summary, progress, cell, f"its stage-2 run {pjob.final} failed: "
                                f"{failed_stage2[pjob.name]}", 0.0)
            else:
                runnable.append((cell, job))
        if not (fail_fast and summary.failed):
            _run_cells(runner, runnable, out, results, summary, progress, fail_fast, cells)
    rows = _write_results(out, cells, results)
    if rows:
        summary.leaderboard = write_leaderboard(read_results(out), out, title=f"Leaderboard: {grid.name}",
                                                baseline=grid.baseline)
    return summary


def _record_failure(summary: GridRun, progress: CellProgress, cell: Cell, message: str, seconds: float) -> None:
    logger.error("cell %s failed: %s (the failing run's .partial folder keeps error.txt)", cell.id, message)
    progress.finish(cell.id, seconds, None)
    summary.failed.append((cell.id, message))


def _run_cells(
    executor: Executor, runnable: list[tuple[Cell, RunJob]], out: Path, results: dict[Path, dict[str, Any] | None],
    summary: GridRun, progress: CellProgress, fail_fast: bool, cells: list[Cell],
) -> None:
    """Run the cells through ``executor``, recording each outcome and rewriting results.csv as they end."""
    by_name = {job.name: (cell, job) for cell, job in runnable}

    def started(job: RunJob) -> None:
        cell = by_name[job.name][0]
        eta = progress.eta_seconds
        logger.info("cell %d/%d: %s (ETA %s)", progress.done + 1, progress.total, cell.id,
                    "?" if eta is None else f"{eta / 60:.1f} min")
        progress.start(cell.id)

    with closing(executor.run([job for _, job in runnable], out, on_start=started)) as outcomes:
        for outcome in outcomes:
            cell, job = by_name[outcome.name]
            reason = _collect(outcome, job, results)
            if reason is None:
                result = results[job.final] or {}
                progress.finish(cell.id, float(result["seconds"]), result["value"])
                summary.ran += 1
            else:
                _record_failure(summary, progress, cell, reason, outcome.seconds)
            _write_results(out, cells, results)
            if reason is not None and fail_fast:
                break
