"""``python -m common.experiments.worker JOB.json``: run one grid job in its own process (the local executor's child).

``JOB.json`` holds ``{"target": "<module>:<function>", "job": <RunJob.to_dict()>}``; the worker runs the target
on the job (:func:`~common.experiments.executors.base.run_guarded`) and writes the outcome to
``JOB.report.json`` (atomically). Its stdout and stderr are the job's log. Exit status 0 when the report was
written, whether the job succeeded or failed; a process that ends without a report crashed (killed, segfault,
out of memory) and the parent says so. Running a job file again by hand repeats that job (handy to debug one
cell): ``python -m common.experiments.worker experiments/NAME/jobs/cells/<cell>.json``.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from common.experiments.executors.base import RUNNER_PID_ENV, report_path, resolve_target, run_guarded
from common.experiments.jobs import RunJob
from common.io import atomic_write_json

__all__ = ["main"]


def _die_with_runner() -> None:
    """On Linux, have the kernel SIGTERM this process when the runner that started it dies (PR_SET_PDEATHSIG = 1).

    Set here, after exec, rather than in a ``preexec_fn`` (unsafe in a threaded parent); a runner that died before
    this line is caught by comparing the parent's pid with the one it passed.
    """
    runner = os.environ.get(RUNNER_PID_ENV)
    if runner is None or not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != int(runner):
        sys.exit(f"the runner (process {runner}) ended before this cell started")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job file named in ``argv``; return the exit status (2: unreadable job file)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.stderr.write("usage: python -m common.experiments.worker JOB.json\n")
        return 2
    _die_with_runner()
    job_file = Path(args[0])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        spec = json.loads(job_file.read_text())
        target, job = resolve_target(spec["target"]), RunJob.from_dict(spec["job"])
    except (OSError, ValueError, KeyError, TypeError, ImportError, AttributeError) as err:
        sys.stderr.write(f"error: cannot read job file {job_file}: {err}\n")
        return 2
    outcome = run_guarded(target, job)
    atomic_write_json(report_path(job_file), outcome.to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())
