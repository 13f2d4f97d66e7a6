"""Run grid jobs as a Slurm job array through submitit, from the login node; preempted jobs are requeued.

`submitit <https://github.com/facebookincubator/submitit>`_ (facebookincubator/submitit, ``submitit/slurm``)
writes the sbatch file, pickles each job's call, submits them as one array (``map_array``) and reads back the
outcome. Each array task runs :class:`CellTask`, a ``submitit.helpers.Checkpointable``: when Slurm signals a
preemption or the time limit (``SIGUSR2``, ``signal_delay_s`` before), submitit requeues the same call, and the
bundle's own resume (``models/checkpoint.pt`` in the cell's ``.partial`` folder) continues after the last
finished epoch. Logs and pickles go to ``<run>/slurm/<job id>_<task>_log.out`` / ``.err`` (``%j`` folders).

``cluster="local"`` runs the same code path with submitit's ``LocalExecutor`` (one subprocess per job, on this
machine): the tests use it, and it is a way to try a grid's Slurm run without a cluster.

Example:
    >>> executor = SlurmExecutor(partition="gpu", time_min=240, gpus_per_task=1, mem="32G")  # doctest: +SKIP
    >>> summary = run_grid(grid, "experiments/chest", executor=executor)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import submitit
from submitit.core.utils import UncompletedJobError

from common.errors import ConfigError
from common.experiments.executors.base import JobTarget, OnStart, Outcome, Outcomes, run_guarded
from common.experiments.jobs import RunJob, execute_job, write_error
from common.io import atomic_write_json

__all__ = ["CellTask", "SlurmExecutor"]

logger = logging.getLogger(__name__)

_CLUSTERS = ("slurm", "local")
#: Slurm states of a job that may still write into its cell's folder.
_ACTIVE_STATES = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED",
                  "REQUEUE_HOLD", "REQUEUE_FED")


def _refuse_active(jobs: Sequence[RunJob], root: Path, record: Path) -> None:
    """Raise ``ConfigError`` if a job's earlier submission (``slurm/submitted.json``) is still queued or running.

    A re-run after the login session was lost would otherwise submit those cells again into the same folders.
    """
    try:
        earlier = json.loads(record.read_text()) if record.is_file() else {}
    except (OSError, ValueError) as err:
        logger.warning("cannot read %s (%s): not checking for jobs of an earlier submission", record, err)
        return
    active = []
    for job in jobs:
        if job.name in earlier:
            state = str(submitit.SlurmJob(folder=root / "slurm" / "%j", job_id=str(earlier[job.name])).state)
            if state.split()[0] in _ACTIVE_STATES:
                active.append(f"{job.name} (job {earlier[job.name]}, {state})")
    if active:
        raise ConfigError(f"{len(active)} cells of an earlier submission are still queued or running: "
                          f"{', '.join(active[:3])}{' ...' if len(active) > 3 else ''}; wait for them (squeue --me) or "
                          f"cancel them (scancel) before running the grid again")


class CellTask(submitit.helpers.Checkpointable):
    """One array task: ``target(job)`` guarded; requeued with the same job on preemption or time-out.

    ``checkpoint`` (inherited) resubmits ``self(job)`` unchanged: the state worth keeping is on disk, in the
    cell's ``.partial`` folder, where the bundle resumes it.
    """

    def __init__(self, target: JobTarget = execute_job) -> None:
        self.target = target

    def __call__(self, job: RunJob) -> Outcome:
        """Run ``job`` on the node; an exception becomes a failed outcome (its traceback in the job's log)."""
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return run_guarded(self.target, job)


class SlurmExecutor:
    """Submit jobs as one Slurm array per wave (stage-2 runs, then cells) and wait for them.

    Args:
        partition: ``--partition``.
        time_min: ``--time`` in minutes per array task (a requeued task gets it again).
        mem: ``--mem`` (``"32G"``).
        gpus_per_task: ``--gpus-per-task``; each task sees its GPU(s) as ``cuda:0``...
        cpus_per_task: ``--cpus-per-task`` (DataLoader workers need them).
        account, qos, constraint: ``--account``, ``--qos``, ``--constraint``.
        array_parallelism: at most this many array tasks run at once (``--array=...%N``).
        setup: shell lines run before each task (``module load cuda``, ``source .venv/bin/activate``).
        additional: other sbatch options, ``{"reservation": "x"}`` -> ``--reservation=x``.
        max_requeue: requeues after a time-out before a task counts as failed (submitit requeues preemptions always).
        cluster: ``"slurm"``, or ``"local"`` to run through submitit's local executor (no cluster).
        poll_seconds: how often job states are read (each read is one ``sacct`` call on Slurm).
        target: the module-level function each task runs (default :func:`~common.experiments.jobs.execute_job`).

    Raises:
        ConfigError: an unknown ``cluster``, or ``time_min`` / ``gpus_per_task`` below their minimum.
    """

    name = "slurm"

    def __init__(
        self, partition: str | None = None, time_min: int = 240, mem: str | None = None,
        gpus_per_task: int | None = None, cpus_per_task: int | None = None, account: str | None = None,
        qos: str | None = None, constraint: str | None = None, array_parallelism: int = 256,
        setup: Sequence[str] = (), additional: dict[str, Any] | None = None, max_requeue: int = 3,
        cluster: str = "slurm", poll_seconds: float | None = None, target: JobTarget = execute_job,
    ) -> None:
        if cluster not in _CLUSTERS:
            raise ConfigError(f"unknown Slurm executor cluster {cluster!r}; choose from: {', '.join(_CLUSTERS)}")
        if time_min < 1 or (gpus_per_task is not None and gpus_per_task < 0):
            raise ConfigError(f"--slurm-time must be >= 1 minute and --slurm-gpus-per-task >= 0; got "
                              f"{time_min} and {gpus_per_task}")
        self.cluster, self.target, self.max_requeue = cluster, target, int(max_requeue)
        self.poll_seconds = poll_seconds if poll_seconds is not None else (30.0 if cluster == "slurm" else 0.5)
        slurm = {"partition": partition, "mem": mem, "gpus_per_task": gpus_per_task, "account": account,
                 "qos": qos, "constraint": constraint, "array_parallelism": int(array_parallelism),
                 "setup": list(setup) or None, "additional_parameters": additional or None}
        self.parameters: dict[str, Any] = {"timeout_min": int(time_min), "cpus_per_task": cpus_per_task,
                                           **{f"slurm_{k}": v for k, v in slurm.items() if v is not None}}

    def _executor(self, root: Path) -> submitit.AutoExecutor:
        executor = submitit.AutoExecutor(folder=root / "slurm" / "%j", cluster=self.cluster,
                                         slurm_max_num_timeout=self.max_requeue)
        executor.update_parameters(name=f"medxfer-{root.name}",
                                   **{k: v for k, v in self.parameters.items() if v is not None})
        return executor

    def run(self, jobs: Sequence[RunJob], root: Path, on_start: OnStart | None = None) -> Outcomes:
        """Submit ``jobs`` as one array; yield outcomes as tasks end; closing the iterator cancels the rest."""
        if not jobs:
            return
        record = root / "slurm" / "submitted.json"
        if self.cluster == "slurm":
            _refuse_active(jobs, root, record)
        submitted = self._executor(root).map_array(CellTask(self.target), list(jobs))
        if self.cluster == "slurm":
            earlier = json.loads(record.read_text()) if record.is_file() else {}
            atomic_write_json(record, {**earlier, **{j.name: s.job_id for j, s in zip(jobs, submitted, strict=True)}})
        if self.cluster == "local":
            for sjob in submitted:  # a killed task's result file never comes; waiting 15 s is for cluster NFS
                sjob._results_timeout_s = 1
        started = time.perf_counter()
        for job, sjob in zip(jobs, submitted, strict=True):
            logger.info("%s submitted as Slurm job %s; logs: %s", job.name, sjob.job_id, sjob.paths.stdout.parent)
            if on_start is not None:
                on_start(job)
        waiting = dict(zip(range(len(jobs)), submitted, strict=True))
        try:
            while waiting:
                finished = [i for i, sjob in waiting.items() if sjob.done()]
                if not finished:
                    time.sleep(self.poll_seconds)
                    continue
                for i in finished:
                    yield self._outcome(jobs[i], waiting.pop(i), time.perf_counter() - started)
        finally:
            for sjob in waiting.values():
                logger.warning("cancelling Slurm job %s", sjob.job_id)
                sjob.cancel(check=False)

    def _outcome(self, job: RunJob, sjob: submitit.Job[Outcome], seconds: float) -> Outcome:
        log = str(sjob.paths.stderr)
        try:
            outcome = sjob.result()
        except UncompletedJobError as err:  # killed, node failure, out of requeues, cancelled
            first = next((line for line in str(err).splitlines() if line.strip()), "no message")
            error = f"Slurm job {sjob.job_id} ended without a result ({sjob.state}): {first}; log: {log}"
            write_error(job, f"{error}\n\n{err}")
            return Outcome(job.name, False, error, seconds=seconds, log=log)
        return Outcome(outcome.name, outcome.ok, outcome.error, outcome.stop, outcome.seconds, log)
