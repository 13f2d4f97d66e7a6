"""Run a grid: every cell through its bundle's own train and evaluate configs, resumably.

Output folder layout::

    grid.yaml                      the grid as given (provenance)
    data/<layout>-<hash>/          embedded datasets (generated once)
    pretrain/<arch>__<stage1>/     stage-2 bundle runs (models/model.pt = the hand-off checkpoint)
    cells/<cell id>/               one bundle copy per cell: models/, eval/, logs/, result.json
    results.csv                    one row per finished cell
    leaderboard.md, leaderboard.csv, leaderboard.png, roc_best.png

A cell runs in ``cells/<id>.partial`` and is renamed to ``cells/<id>`` only after its ``result.json``
is written, so a killed or crashed cell leaves a ``.partial`` folder that the next run continues (the bundle
resumes training from its last epoch checkpoint when the cell's settings are unchanged), and a
finished cell is never run or touched again. ``result.json`` records a fingerprint of the cell's settings:
resuming with a changed grid (e.g. other epochs) stops with an error instead of mixing results. A finished
cell whose ``result.json`` cannot be read (a damaged disk, a hand edit) counts as unfinished: its folder is
moved aside to ``cells/<id>.corrupt-<time>`` (never deleted), with a warning naming it, and run again.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.bundle_runner import copy_bundle, run_bundle
from common.errors import ConfigError, OutputError, find_user_error, user_message
from common.experiments.bundles import BundleInfo
from common.experiments.cells import Cell, PretrainCell, expand, pretrain_cells
from common.experiments.data import data_location, prepare_data
from common.experiments.grid import Grid
from common.experiments.progress import CellProgress
from common.experiments.stats import REQUIRED_COLUMNS
from common.experiments.tracking import mlflow_settings
from common.io import atomic_write_json, atomic_write_text, make_directory, recover_directory
from common.networks.checkpoint_card import fingerprint  # one settings hash for cells and checkpoints

__all__ = ["RESULT_COLUMNS", "GridRun", "read_results", "run_grid"]

logger = logging.getLogger(__name__)

#: results.csv: the columns the leaderboard reads, plus the best validation value of each run.
RESULT_COLUMNS = (*REQUIRED_COLUMNS, "val_metric")


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


def _cell_settings(cell: Cell, data: tuple[Path, Path], pretrained: str, grid: Grid) -> dict[str, Any]:
    overrides = {**grid.overrides, **cell.task.overrides, **cell.strategy.params_for(cell.arch)}
    return {**overrides, "arch": cell.arch, "pretrained": pretrained, "seed": cell.seed,
            "dataset_dir": str(data[0]), "datalist": str(data[1])}


def _pretrain_settings(pcell: PretrainCell, data: tuple[Path, Path], grid: Grid) -> dict[str, Any]:
    overrides = grid.pretraining.overrides if grid.pretraining is not None else {}
    return {**overrides, "arch": pcell.arch, "pretrained": pcell.stage1, "seed": 0,
            "dataset_dir": str(data[0]), "datalist": str(data[1])}


#: Settings that change how fast a cell runs, not what it computes: left out of its fingerprint.
_NOT_FINGERPRINTED = ("num_workers",)


def _fingerprint(settings: dict[str, Any], out: Path, stage2: str | None = None) -> str:
    """The fingerprint of a run's settings, with paths inside the run folder made relative (so the folder can
    move) and, for a cell starting from the grid's stage-2 run, that run's own fingerprint (so a changed
    stage 2 is a changed cell)."""
    root = str(out)
    portable = {k: (v.replace(root, "<run>") if isinstance(v, str) else v)
                for k, v in settings.items() if k not in _NOT_FINGERPRINTED}
    return fingerprint({**portable, "stage2_run": stage2} if stage2 is not None else portable)


def _best_val(workflow: Any) -> float | None:
    try:
        best = workflow.parser.get_parsed_content("validate#evaluator").state.best_metric
    except Exception:  # noqa: BLE001 - a bundle without a validator simply has no validation metric
        return None
    return float(best) if best is not None and best > -1 else None


def _transfer_summary(workflow: Any) -> str:
    try:
        return str(workflow.parser.get_parsed_content("pretrained_report").summary())
    except Exception:  # noqa: BLE001 - informational only
        return ""


def _execute(
    bundle: BundleInfo, final: Path, overlay: Path | None, settings: dict[str, Any], fp: str, evaluate: bool,
    tracking: Callable[[str], dict[str, Any]] | None,
) -> dict[str, Any]:
    """Run ``bundle`` in ``final``'s ``.partial`` twin, then rename it to ``final``; return its result."""
    partial = final.with_name(final.name + ".partial")
    if partial.exists():
        # The bundle's own resume (models/checkpoint.pt, resume "auto") continues the killed training when its
        # settings fingerprint still matches, and moves it aside when not; only the attempt's outputs go.
        logger.info("re-running %s in the unfinished attempt %s (training resumes from its last epoch)",
                    final.name, partial)
        for stale in ("eval", "error.txt"):
            target = partial / stale
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    copy_bundle(bundle.path, partial, overlay)
    configs = ["train.json"] + (["finetune.json"] if overlay is not None else [])
    started = time.perf_counter()
    try:
        track = {"tracking": tracking(f"{final.name}-train")} if tracking else {}
        workflow = run_bundle(partial, configs, "train", **{**settings, **track})
        result: dict[str, Any] = {"val_metric": _best_val(workflow), "transfer": _transfer_summary(workflow)}
        if evaluate:
            track = {"tracking": tracking(f"{final.name}-eval")} if tracking else {}
            run_bundle(partial, configs + ["evaluate.json"], "eval", **{**settings, **track})
            metrics = json.loads((recover_directory(partial / "eval") / "metrics.json").read_text())
            if bundle.metric not in metrics or metrics[bundle.metric] is None:
                raise ConfigError(f"{partial}/eval/metrics.json has no value for {bundle.metric!r}")
            result["metric"], result["value"] = bundle.metric, float(metrics[bundle.metric])
    except BaseException:
        try:
            (partial / "error.txt").write_text(traceback.format_exc())
        except OSError as err:  # a full disk must not hide the run's own error
            logger.error("cannot write %s/error.txt: %s", partial, err)
        raise
    result.update(seconds=round(time.perf_counter() - started, 2), fingerprint=fp)
    # A finished cell never trains again: its resumable state (optimizer moments included, about 3x the model)
    # is dropped; models/model.pt and its card stay.
    (partial / "models" / "checkpoint.pt").unlink(missing_ok=True)
    atomic_write_json(partial / "result.json", result)
    if final.exists():  # an unfinished folder without result.json (never a finished one: checked by the caller)
        shutil.rmtree(final)
    partial.replace(final)
    return result


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
                     "eval_dir": str(folder / "eval")})
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


def run_grid(
    grid: Grid, output_dir: str | Path, num_workers: int | None = None, dry_run: bool = False,
    fail_fast: bool = False,
) -> GridRun:
    """Run every unfinished cell of ``grid`` into ``output_dir``; write results.csv and the leaderboard.

    Args:
        grid: a validated grid (:func:`common.experiments.load_grid`).
        output_dir: the run folder (see module docstring); reuse it to resume.
        num_workers: DataLoader workers for every run (not part of a cell's settings).
        dry_run: list the plan and what is already finished, run nothing.
        fail_fast: stop at the first failing cell (default: record it, go on, report at the end).

    Returns:
        A :class:`GridRun` summary; ``failed`` lists cells that raised (their ``.partial`` folder keeps
        ``error.txt`` with the traceback and is replaced on the next run).
    """
    from common.experiments.leaderboard import write_leaderboard

    out = Path(output_dir).resolve()
    cells = expand(grid)
    pcells = pretrain_cells(cells)
    data_root = out / "data"
    extra = {} if num_workers is None else {"num_workers": int(num_workers)}
    summary = GridRun(out, total=len(cells))
    task_data = [data_location(task.data, data_root) for task in grid.tasks]
    data_of = {id(task): task_data[i] for i, task in enumerate(grid.tasks)}
    pre_data = data_location(grid.pretraining.data, data_root) if pcells and grid.pretraining else None
    stage2 = {p.id: (out / "pretrain" / p.id, {**_pretrain_settings(p, pre_data, grid), **extra})
              for p in pcells if pre_data is not None}
    stage2_fp = {pid: _fingerprint(settings, out) for pid, (_, settings) in stage2.items()}

    def pretrained_for(cell: Cell) -> str:
        if cell.pretrain is not None:
            return "bundle:" + str(out / "pretrain" / cell.pretrain.id)
        return cell.stage2 if cell.stage2.startswith("bundle:") else cell.stage1

    planned = []
    for c in cells:
        settings = {**_cell_settings(c, data_of[id(c.task)], pretrained_for(c), grid), **extra}
        fp = _fingerprint(settings, out, stage2_fp[c.pretrain.id] if c.pretrain is not None else None)
        planned.append((out / "cells" / c.id, settings, fp))
    fingerprints = [(folder, fp) for folder, _, fp in planned]
    fingerprints += [(folder, stage2_fp[pid]) for pid, (folder, _) in stage2.items()]
    results: dict[Path, dict[str, Any] | None] = {}  # read once; updated as runs finish
    corrupt: dict[Path, str] = {}
    for folder, _ in fingerprints:
        try:
            results[folder] = _read_result(folder, is_cell=folder.parent.name == "cells")
        except ValueError as err:
            results[folder], corrupt[folder] = None, str(err)
    _check_resumable(out, fingerprints, results)
    if dry_run:
        for folder, _ in fingerprints:
            state = "done" if results[folder] else ("corrupt result.json: to re-run" if folder in corrupt else "to run")
            logger.info("%-80s %s", folder.relative_to(out), state)
        return summary
    tracking = None
    if grid.tracking == "mlflow":
        mlflow_settings(out / "mlruns", grid.name, "check")  # fails before anything is written when MLflow is missing

        def tracking(run_name: str) -> dict[str, Any]:
            return mlflow_settings(out / "mlruns", grid.name, run_name)

    make_directory(out)
    for folder, reason in corrupt.items():
        _set_aside(folder, reason)
    if grid.source is not None:
        atomic_write_text(out / "grid.yaml", grid.source.read_text())
    for task in grid.tasks:
        prepare_data(task.data, data_root)
    if pre_data is not None and grid.pretraining is not None:
        prepare_data(grid.pretraining.data, data_root)

    failed_stage2: dict[str, str] = {}

    def ensure_stage2(pcell: PretrainCell) -> None:
        """Run the stage-2 run ``pcell`` unless finished; a failure is tried once per session, then reported."""
        folder, settings = stage2[pcell.id]
        if results[folder] is not None:
            return
        if pcell.id not in failed_stage2:
            logger.info("stage 2: pretraining %s from %s", pcell.arch, pcell.stage1)
            try:
                if grid.pretraining is None:  # parse_grid refuses stage2: medical without it
                    raise ConfigError("stage2: medical needs the grid's pretraining section")
                results[folder] = _execute(grid.pretraining.bundle, folder, None, settings, stage2_fp[pcell.id],
                                           False, tracking)
                return
            except Exception as err:  # noqa: BLE001 - reported through every cell that needs it
                failed_stage2[pcell.id] = f"{user_message(err)} (traceback in {folder}.partial/error.txt)"
        raise RuntimeError(f"its stage-2 run {folder} failed: {failed_stage2[pcell.id]}")

    done = sum(results[folder] is not None for folder, _, _ in planned)
    summary.skipped = done
    with CellProgress(len(cells), done) as progress:
        for cell, (folder, settings, fp) in zip(cells, planned, strict=True):
            if results[folder] is not None:
                continue
            started = time.perf_counter()
            try:
                if cell.pretrain is not None:
                    ensure_stage2(cell.pretrain)
                eta = progress.eta_seconds
                logger.info("cell %d/%d: %s (ETA %s)", progress.done + 1, len(cells), cell.id,
                            "?" if eta is None else f"{eta / 60:.1f} min")
                progress.start(cell.id)
                result = results[folder] = _execute(cell.task.bundle, folder, cell.strategy.overlay, settings, fp,
                                                    True, tracking)
                progress.finish(cell.id, result["seconds"], result["value"])
                summary.ran += 1
            except Exception as err:  # noqa: BLE001 - one failing cell must not lose the others
                if isinstance(find_user_error(err), OutputError):
                    raise  # a full or read-only disk fails every cell: stop and say so
                logger.error("cell %s failed: %s (the failing run's .partial folder keeps error.txt)", cell.id,
                             user_message(err))  # fmt: skip
                progress.finish(cell.id, time.perf_counter() - started, None)
                summary.failed.append((cell.id, user_message(err)))
                if fail_fast:
                    break
            _write_results(out, cells, results)
    rows = _write_results(out, cells, results)
    if rows:
        summary.leaderboard = write_leaderboard(read_results(out), out, title=f"Leaderboard: {grid.name}",
                                                baseline=grid.baseline)
    return summary
