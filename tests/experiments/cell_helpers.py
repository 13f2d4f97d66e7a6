"""Job targets for the executor tests: module-level (a worker process or a submitit job imports them by name),
fast (no training), each writing its run folder the way :func:`common.experiments.jobs.execute_job` does."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

from common.experiments.jobs import RunJob


def write_result(job: RunJob) -> dict[str, Any]:
    """Finish ``job`` at once: result.json in its .partial folder, then the rename (the value: 0.7 + seed / 100)."""
    result = {"val_metric": 0.5, "transfer": "", "metric": job.metric, "value": 0.7 + job.settings["seed"] / 100,
              "seconds": 0.01, "fingerprint": job.fingerprint, "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
              "pid": os.getpid()}  # fmt: skip
    job.partial.mkdir(parents=True, exist_ok=True)
    (job.partial / "result.json").write_text(json.dumps(result))
    job.partial.replace(job.final)
    return result


def seed1_raises_seed2_dies(job: RunJob) -> dict[str, Any]:
    """Seed 1 raises a Python error; seed 2 kills its own process with SIGKILL (no Python cleanup at all)."""
    if job.settings["seed"] == 1:
        raise RuntimeError("simulated out-of-memory")
    if job.settings["seed"] == 2:
        job.partial.mkdir(parents=True, exist_ok=True)
        os.kill(os.getpid(), signal.SIGKILL)
    return write_result(job)


def block_until_killed(job: RunJob) -> dict[str, Any]:
    """Write the process id to ``<partial>/pid`` and wait (the test kills the runner above it)."""
    job.partial.mkdir(parents=True, exist_ok=True)
    (job.partial / "pid").write_text(str(os.getpid()))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.1)
    raise TimeoutError("never killed")
