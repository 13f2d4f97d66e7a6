"""Run each grid job in its own process on this machine, ``parallel`` at a time, one GPU each when there are several.

A job that crashes its process (a segfault, the out-of-memory killer, ``kill -9``, a CUDA error that poisons the
context) fails alone: its outcome says how the process ended and names its log, ``<run>/logs/<job name>.log``
(``logs/cells/<cell>.log``, ``logs/pretrain/<id>.log``; appended to by every attempt), and the grid goes on.
The job file the child ran is kept as ``<run>/jobs/<job name>.json`` (see :mod:`common.experiments.worker`).
Children die with the runner (Linux: ``PR_SET_PDEATHSIG``, set by the worker), so a killed runner leaves no cell
writing on.

Example:
    >>> executor = LocalExecutor(parallel=2, gpus=["0", "1"])  # cells alternate between the two GPUs
    >>> executor.slots
    ['0', '1']
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from common.errors import ConfigError
from common.experiments.executors.base import (
    RUNNER_PID_ENV,
    JobTarget,
    OnStart,
    Outcome,
    Outcomes,
    report_path,
    target_name,
)
from common.experiments.jobs import RunJob, execute_job, write_error
from common.io import atomic_write_json
from common.threads import thread_share

__all__ = ["LocalExecutor", "visible_gpus"]

logger = logging.getLogger(__name__)

_REPO = Path(__file__).resolve().parents[3]
_POLL_SECONDS = 0.2
_TERMINATE_GRACE_SECONDS = 10.0


def visible_gpus() -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` when set, else ``torch.cuda.device_count()``."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [g.strip() for g in given.split(",") if g.strip() and g.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def _how_it_ended(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode} without a report"


@dataclass
class _Running:
    job: RunJob
    process: subprocess.Popen[bytes]
    slot: int
    job_file: Path
    log: Path
    log_handle: IO[bytes]
    started: float


class LocalExecutor:
    """Run jobs in subprocesses (``python -m common.experiments.worker``), ``parallel`` at a time.

    Args:
        parallel: jobs at a time; default one per GPU (``gpus``), or 1 without GPUs.
        gpus: GPU ids handed out, one per slot in turn, through ``CUDA_VISIBLE_DEVICES`` (each job then sees its
            GPU as ``cuda:0``); default :func:`visible_gpus`; ``[]``: leave ``CUDA_VISIBLE_DEVICES`` as it is.
            With more slots than GPUs, slots share GPUs round-robin.
        target: the module-level function each child runs (default :func:`~common.experiments.jobs.execute_job`).
        python: the interpreter of the children (default this one).

    Raises:
        ConfigError: ``parallel`` below 1, or a ``target`` a child cannot import.
    """

    name = "local"

    def __init__(self, parallel: int | None = None, gpus: Sequence[str] | None = None,
                 target: JobTarget = execute_job, python: str = sys.executable) -> None:  # fmt: skip
        self.gpus = [str(g) for g in (visible_gpus() if gpus is None else gpus)]
        self.parallel = int(parallel) if parallel is not None else max(1, len(self.gpus))
        if self.parallel < 1:
            raise ConfigError(f"--parallel must be at least 1, got {parallel}")
        self.target = target_name(target)
        self.python = python

    @property
    def slots(self) -> list[str | None]:
        """The GPU of each slot (``None``: no ``CUDA_VISIBLE_DEVICES`` set)."""
        return [self.gpus[i % len(self.gpus)] if self.gpus else None for i in range(self.parallel)]

    def _start(self, job: RunJob, root: Path, slot: int) -> _Running:
        job_file = root / "jobs" / f"{job.name}.json"
        job_file.parent.mkdir(parents=True, exist_ok=True)
        report_path(job_file).unlink(missing_ok=True)
        atomic_write_json(job_file, {"target": self.target, "job": job.to_dict()})
        log = root / "logs" / f"{job.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        handle = log.open("ab")
        gpu = self.slots[slot]
        handle.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {job.name} "
                     f"(CUDA_VISIBLE_DEVICES={gpu if gpu is not None else 'unchanged'})\n".encode())
        handle.flush()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(_REPO), *filter(None, [env.get("PYTHONPATH")])])
        env[RUNNER_PID_ENV] = str(os.getpid())  # the child ends with this process (common.experiments.worker)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        env.update(thread_share(self.parallel, env))
        process = subprocess.Popen(
            [self.python, "-m", "common.experiments.worker", str(job_file)], stdin=subprocess.DEVNULL,
            stdout=handle, stderr=subprocess.STDOUT, env=env,
        )
        logger.info("%s started in process %d%s; log: %s", job.name, process.pid,
                    f" on GPU {gpu}" if gpu is not None else "", log)
        return _Running(job, process, slot, job_file, log, handle, time.perf_counter())

    def _finish(self, run: _Running) -> Outcome:
        run.log_handle.close()
        seconds = time.perf_counter() - run.started
        report = report_path(run.job_file)
        if report.is_file():
            try:
                data = json.loads(report.read_text())
                return Outcome(run.job.name, bool(data["ok"]), data.get("error"), bool(data.get("stop")), seconds,
                               str(run.log))  # fmt: skip
            except (OSError, ValueError, KeyError) as err:
                logger.warning("unreadable report %s (%s): counted as a crash", report, err)
        error = f"its process {_how_it_ended(run.process.returncode)}; log: {run.log}"
        write_error(run.job, f"{error}\n\n--- last lines of {run.log} ---\n{_tail(run.log)}")
        return Outcome(run.job.name, False, error, seconds=seconds, log=str(run.log))

    def run(self, jobs: Sequence[RunJob], root: Path, on_start: OnStart | None = None) -> Outcomes:
        """Run ``jobs`` in subprocesses; yield outcomes as they finish; closing the iterator stops the rest."""
        pending, running = list(jobs), []
        free = list(range(self.parallel))
        try:
            while pending or running:
                while pending and free:
                    job = pending.pop(0)
                    if on_start is not None:
                        on_start(job)
                    running.append(self._start(job, root, free.pop(0)))
                ended = [r for r in running if r.process.poll() is not None]
                if not ended:
                    time.sleep(_POLL_SECONDS)
                    continue
                for run in ended:
                    running.remove(run)
                    free.append(run.slot)
                    free.sort()
                    yield self._finish(run)
        finally:
            _stop(running)


def _stop(running: list[_Running]) -> None:
    """SIGTERM the children still running, then SIGKILL those that have not ended after a grace period."""
    for run in running:
        if run.process.poll() is None:
            logger.warning("stopping %s (process %d)", run.job.name, run.process.pid)
            run.process.terminate()
    deadline = time.monotonic() + _TERMINATE_GRACE_SECONDS
    for run in running:
        try:
            run.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            run.process.kill()
            run.process.wait()
        run.log_handle.close()


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError as err:
        return f"(cannot read {log}: {err})"
