"""One run of a grid (a cell, or a stage-2 pretraining run) as plain data, and the function that runs it.

A :class:`RunJob` holds everything a run needs (bundle folder, settings, fingerprint, where to write) as
JSON-able values, so an executor can run it in this process, in a subprocess
(``python -m common.experiments.worker``) or on a Slurm node (pickled by submitit) alike. :func:`execute_job`
runs it in ``<folder>.partial`` and renames that to ``<folder>`` once its ``result.json`` is written
(atomically): the parent learns the outcome from the folder, whichever process ran it.

Example:
    >>> job = RunJob("cells/c0", "bundles/chest_xray_classification", "mean_auc", "/tmp/run/cells/c0", None,
    ...              {"epochs": 1}, "f00d", evaluate=True)
    >>> RunJob.from_dict(job.to_dict()) == job
    True
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common.errors import ConfigError
from common.io import atomic_write_json, recover_directory

__all__ = ["RunJob", "execute_job", "write_error"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunJob:
    """A bundle run of the grid, as JSON-able values.

    Attributes:
        name: ``cells/<id>`` or ``pretrain/<id>``: the folder relative to the run folder (log and job files
            are named after it).
        bundle: the bundle folder copied into the run's folder.
        metric: the evaluation metric read from ``eval/metrics.json`` (``evaluate`` runs).
        folder: the run's final folder (it runs in ``<folder>.partial``).
        overlay: the strategy overlay copied in as ``configs/finetune.json`` (``None``: none).
        settings: bundle overrides (``--key value`` on ``monai.bundle run``).
        fingerprint: the settings' fingerprint recorded in ``result.json``.
        evaluate: also run ``evaluate.json`` and record ``metric`` (cells do; stage-2 runs only train).
        tracking: ``[mlruns folder, experiment name]`` for MLflow tracking, or ``None``.
        federation: a cell of a task with sites (``None``: a plain bundle run): ``training`` (``federated``,
            ``pooled`` or ``local-<site>``), ``rounds``, ``local_epochs`` and ``sites`` (name ->
            ``[dataset_dir, datalist]``); run by :func:`common.experiments.site_cells.run_site_cell`.
    """

    name: str
    bundle: str
    metric: str
    folder: str
    overlay: str | None
    settings: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    evaluate: bool = True
    tracking: tuple[str, str] | None = None
    federation: dict[str, Any] | None = None

    @property
    def final(self) -> Path:
        """The folder the finished run ends in."""
        return Path(self.folder)

    @property
    def partial(self) -> Path:
        """The folder the run works in until it is finished."""
        return Path(self.folder + ".partial")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (see :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunJob:
        """The job :meth:`to_dict` wrote."""
        tracking = data.get("tracking")
        return cls(**{**data, "tracking": None if tracking is None else (str(tracking[0]), str(tracking[1]))})


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


def _tracking(job: RunJob, stage: str) -> dict[str, Any]:
    if job.tracking is None:
        return {}
    from common.experiments.tracking import mlflow_settings

    return {"tracking": mlflow_settings(Path(job.tracking[0]), job.tracking[1], f"{job.final.name}-{stage}")}


def execute_job(job: RunJob) -> dict[str, Any]:
    """Run ``job``'s bundle in its ``.partial`` folder, then rename that to its final folder; return its result.

    An unfinished ``.partial`` folder from an earlier attempt is continued: the bundle's own resume
    (``models/checkpoint.pt``) picks up its training after the last finished epoch when the settings still
    match. A failure leaves the traceback in ``<folder>.partial/error.txt`` and is raised.

    Raises:
        ConfigError: the evaluation wrote no value for the job's metric.
    """
    from common.bundle_runner import copy_bundle, run_bundle  # MONAI: imported by the process that trains

    partial, final = job.partial, job.final
    if job.federation is not None:
        return _finish(job, _run_sites(job))
    if (partial / "configs").is_dir():
        logger.info("re-running %s in the unfinished attempt %s (training resumes from its last epoch)",
                    final.name, partial)
        for stale in ("eval", "error.txt"):
            target = partial / stale
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    overlay = None if job.overlay is None else Path(job.overlay)
    copy_bundle(job.bundle, partial, overlay)
    configs = ["train.json"] + (["finetune.json"] if overlay is not None else [])
    started = time.perf_counter()
    try:
        workflow = run_bundle(partial, configs, "train", **{**job.settings, **_tracking(job, "train")})
        result: dict[str, Any] = {"val_metric": _best_val(workflow), "transfer": _transfer_summary(workflow)}
        if job.evaluate:
            run_bundle(partial, configs + ["evaluate.json"], "eval", **{**job.settings, **_tracking(job, "eval")})
            metrics = json.loads((recover_directory(partial / "eval") / "metrics.json").read_text())
            if metrics.get(job.metric) is None:
                raise ConfigError(f"{partial}/eval/metrics.json has no value for {job.metric!r}")
            result["metric"], result["value"] = job.metric, float(metrics[job.metric])
    except BaseException:
        write_error(job, traceback.format_exc())
        raise
    result.update(seconds=round(time.perf_counter() - started, 2))
    # A finished run never trains again: its resumable state (optimizer moments included, about 3x the model)
    # is dropped; models/model.pt and its card stay.
    (partial / "models" / "checkpoint.pt").unlink(missing_ok=True)
    return _finish(job, result)


def _run_sites(job: RunJob) -> dict[str, Any]:
    """A cell of a task with sites, from scratch (an unfinished attempt is removed: the simulator cannot resume)."""
    # NVFlare, MONAI: imported by the process that trains
    from common.experiments.site_cells import run_site_cell, track_site_cell

    if job.partial.exists():
        logger.info("re-running %s from scratch (a federation or reference does not resume)", job.final.name)
        shutil.rmtree(job.partial)
    started = time.perf_counter()
    try:
        result = run_site_cell(job.partial, job.bundle, job.overlay, job.settings, job.federation or {})
        result = {**result, "seconds": round(time.perf_counter() - started, 2)}
        if job.tracking is not None:
            track_site_cell(job.partial, job.tracking, job.final.name, job.settings, job.overlay,
                            job.federation or {}, result)
    except BaseException:
        write_error(job, traceback.format_exc())
        raise
    return result


def _finish(job: RunJob, result: dict[str, Any]) -> dict[str, Any]:
    """Write ``result.json`` (with the job's fingerprint) and rename the ``.partial`` folder to the final one."""
    result = {**result, "fingerprint": job.fingerprint}
    atomic_write_json(job.partial / "result.json", result)
    if job.final.exists():  # an unfinished folder without result.json (never a finished one: checked by the runner)
        shutil.rmtree(job.final)
    job.partial.replace(job.final)
    return result


def write_error(job: RunJob, text: str) -> None:
    """Write ``text`` to ``<folder>.partial/error.txt`` (logged, not raised, when the disk refuses)."""
    try:
        job.partial.mkdir(parents=True, exist_ok=True)
        (job.partial / "error.txt").write_text(text)
    except OSError as err:  # a full disk must not hide the run's own error
        logger.error("cannot write %s/error.txt: %s", job.partial, err)
