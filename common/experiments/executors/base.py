"""What every executor shares: the outcome of a run, the executor protocol, and the in-process executor.

An executor takes :class:`~common.experiments.jobs.RunJob` s and yields one :class:`Outcome` per job as jobs
finish (in any order). It never writes ``result.json``, ``results.csv`` or the leaderboard: the job writes its
own folder atomically (:func:`~common.experiments.jobs.execute_job`) and the runner reads it. Closing the
iterator early (``--fail-fast``, Ctrl-C) stops the jobs still running.

Example:
    >>> from common.experiments.jobs import RunJob
    >>> job = RunJob("cells/c0", "bundle", "auc", "/tmp/run/cells/c0", None)
    >>> [o.error for o in InProcessExecutor(target=lambda j: {"value": 1.0}).run([job], Path("/tmp/run"))]
    [None]
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from common.errors import ConfigError, OutputError, find_user_error, user_message
from common.experiments.jobs import RunJob, execute_job

__all__ = ["RUNNER_PID_ENV", "Executor", "InProcessExecutor", "JobTarget", "OnStart", "Outcome", "Outcomes",
           "report_path", "resolve_target", "run_guarded", "target_name"]

logger = logging.getLogger(__name__)

#: Set by the local executor to its own process id: its worker processes end when that process does.
RUNNER_PID_ENV = "MEDXFER_RUNNER_PID"
#: What an executor calls for each job (module-level, so a worker process or a Slurm node can import it).
JobTarget = Callable[[RunJob], dict[str, Any]]
#: Called with each job when it starts (or is submitted, for Slurm).
OnStart = Callable[[RunJob], None]


@dataclass(frozen=True)
class Outcome:
    """How one job ended.

    Attributes:
        name: the job's ``name`` (``cells/<id>`` or ``pretrain/<id>``).
        ok: it returned normally (its folder then holds ``result.json``, which the runner reads).
        error: one readable line when it failed (raised, crashed, was killed or cancelled).
        stop: the failure was an output error (full or read-only disk): every later job would fail too.
        seconds: wall time of the attempt, as the executor saw it.
        log: where the job's output went (a file), when it is not this process's log.
    """

    name: str
    ok: bool
    error: str | None = None
    stop: bool = False
    seconds: float = 0.0
    log: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (a worker process's report)."""
        return asdict(self)


def run_guarded(target: JobTarget, job: RunJob) -> Outcome:
    """Call ``target(job)``; an exception becomes a failed :class:`Outcome` (logged with its traceback)."""
    started = time.perf_counter()
    try:
        target(job)
    except Exception as err:  # noqa: BLE001 - one failing run must not lose the others
        logger.exception("%s failed", job.name)
        return Outcome(job.name, False, user_message(err), isinstance(find_user_error(err), OutputError),
                       time.perf_counter() - started)
    return Outcome(job.name, True, seconds=time.perf_counter() - started)


def report_path(job_file: Path) -> Path:
    """Where the worker of ``job_file`` writes its outcome."""
    return job_file.with_name(job_file.name.removesuffix(".json") + ".report.json")


def target_name(target: JobTarget) -> str:
    """``"<module>:<qualified name>"`` of a module-level function (what a worker can import).

    Raises:
        ConfigError: ``target`` is a lambda, a nested function or otherwise not importable by name.
    """
    module, qualname = getattr(target, "__module__", None), getattr(target, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        raise ConfigError(f"a job target run in another process must be a module-level function; got {target!r}")
    return f"{module}:{qualname}"


def resolve_target(name: str) -> JobTarget:
    """The function :func:`target_name` named."""
    module, _, qualname = name.partition(":")
    value = importlib.import_module(module)
    for part in qualname.split("."):
        value = getattr(value, part)
    return value  # type: ignore[return-value]


#: What ``Executor.run`` returns: outcomes as jobs end; ``close()`` stops the jobs still running.
Outcomes = Generator["Outcome", None, None]


class Executor(Protocol):
    """Runs jobs and yields their outcomes as they finish."""

    name: str

    def run(self, jobs: Sequence[RunJob], root: Path, on_start: OnStart | None = None) -> Outcomes:
        """Run ``jobs`` of the run folder ``root``; yield one :class:`Outcome` per job."""
        ...


class InProcessExecutor:
    """Run each job in this process, one after the other (a crash of the process stops the grid).

    An output error (full or read-only disk) is raised as it is, not turned into an outcome: it fails every job.

    Args:
        target: the function run per job (default :func:`~common.experiments.jobs.execute_job`).
    """

    name = "inprocess"

    def __init__(self, target: JobTarget = execute_job) -> None:
        self.target = target

    def run(self, jobs: Sequence[RunJob], root: Path, on_start: OnStart | None = None) -> Outcomes:
        """Run ``jobs`` here in order; see :class:`Executor`."""
        for job in jobs:
            if on_start is not None:
                on_start(job)
            started = time.perf_counter()
            try:
                self.target(job)
            except Exception as err:  # noqa: BLE001 - one failing cell must not lose the others
                if isinstance(find_user_error(err), OutputError):
                    raise  # a full or read-only disk fails every cell: stop and say so
                yield Outcome(job.name, False, user_message(err), seconds=time.perf_counter() - started)
                continue
            yield Outcome(job.name, True, seconds=time.perf_counter() - started)
