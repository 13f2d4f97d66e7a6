"""Executors end to end with fast fake cells: local subprocesses (a cell that kills itself, GPUs per cell, children
that die with the runner) and the Slurm path through submitit's local executor (a raising and a killed cell)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import common.experiments.runner as runner_module
from common.errors import ConfigError
from common.experiments.__main__ import _executor_options, build_parser
from common.experiments.executors import InProcessExecutor, LocalExecutor, make_executor
from common.experiments.executors.base import target_name
from common.experiments.grid import load_grid
from common.experiments.runner import run_grid
from tests.experiments import cell_helpers

REPO = Path(__file__).resolve().parents[2]


def _grid(tmp_path: Path, seeds: list[int]) -> Any:
    raw = {"name": "fake", "tasks": [{"bundle": "chest_xray_classification", "data": {"embedded": "chestxray14"}}],
           "architectures": ["resnet18"], "stage1": ["none"], "strategies": ["ft"], "seeds": seeds}
    file = tmp_path / "fake.yaml"
    file.write_text(yaml.safe_dump(raw))
    return load_grid(file)


@pytest.fixture
def no_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake cells read no data: skip generating the embedded dataset."""
    monkeypatch.setattr(runner_module, "prepare_data", lambda spec, root: None)


def test_local_runs_a_real_bundle_cell_in_a_subprocess(tmp_path: Path) -> None:
    """One tiny real cell (ResNet-18, 32 px, 1 epoch): the child trains and evaluates; its log holds the bundle's."""
    raw = {"name": "real", "tasks": [{"bundle": "chest_xray_classification", "data": {
               "embedded": "chestxray14", "generate": {"n_patients": 24, "image_size": 32, "seed": 1},
               "split": {"val_fraction": 0.25, "seed": 1}}}],
           "architectures": ["resnet18"], "stage1": ["none"], "strategies": ["ft"], "seeds": [0],
           "overrides": {"epochs": 1, "image_size": 32, "batch_size": 16, "val_batch_size": 32, "num_workers": 0,
                         "n_boot": 10, "check_images": False}}
    (tmp_path / "real.yaml").write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    summary = run_grid(load_grid(tmp_path / "real.yaml"), out, executor=LocalExecutor(gpus=[]))
    assert summary.failed == [] and summary.ran == 1
    row = _rows(out)[0]
    assert row["metric"] == "mean_auc" and 0.0 <= float(row["value"]) <= 1.0
    assert (out / "cells" / row["cell"] / "models" / "model.pt").is_file()
    assert "common.finetune" in (out / "logs" / "cells" / f"{row['cell']}.log").read_text()


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


def _result(out: Path, seed: int) -> dict[str, Any]:
    return json.loads(next(out.glob(f"cells/*seed{seed}/result.json")).read_text())


@pytest.mark.usefixtures("no_data")
def test_local_a_cell_that_kills_itself_fails_alone_and_a_rerun_repeats_only_it(tmp_path: Path) -> None:
    grid, out = _grid(tmp_path, [0, 1, 2, 3]), tmp_path / "run"
    executor = LocalExecutor(parallel=2, gpus=["0", "1"], target=cell_helpers.seed1_raises_seed2_dies)
    summary = run_grid(grid, out, executor=executor)
    failed = dict(summary.failed)
    assert summary.ran == 2 and len(failed) == 2
    raised, killed = (next(c for c in failed if c.endswith(f"seed{s}")) for s in (1, 2))
    assert "simulated out-of-memory" in failed[raised]
    assert "killed by signal SIGKILL" in failed[killed] and f"logs/cells/{killed}.log" in failed[killed]
    assert "killed by signal SIGKILL" in (out / "cells" / f"{killed}.partial" / "error.txt").read_text()
    assert "RuntimeError: simulated out-of-memory" in (out / "logs" / "cells" / f"{raised}.log").read_text()
    assert {r["seed"] for r in _rows(out)} == {"0", "3"}
    assert _result(out, 0)["gpu"] == "0" and _result(out, 3)["gpu"] in ("0", "1")  # one GPU per running cell
    assert _result(out, 0)["pid"] != os.getpid() != _result(out, 3)["pid"]
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/result.json")}
    summary = run_grid(grid, out, executor=LocalExecutor(parallel=2, gpus=[], target=cell_helpers.write_result))
    assert summary.ran == 2 and summary.skipped == 2 and summary.failed == []
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps and len(_rows(out)) == 4
    assert _result(out, 2)["gpu"] == os.environ.get("CUDA_VISIBLE_DEVICES")  # gpus=[]: left as it is


@pytest.mark.usefixtures("no_data")
def test_slurm_path_through_submitits_local_executor(tmp_path: Path) -> None:
    from common.experiments.executors.slurm import SlurmExecutor

    grid, out = _grid(tmp_path, [0, 1, 2]), tmp_path / "run"
    executor = SlurmExecutor(cluster="local", time_min=5, poll_seconds=0.2, target=cell_helpers.seed1_raises_seed2_dies)
    summary = run_grid(grid, out, executor=executor)
    failed = dict(summary.failed)
    assert summary.ran == 1 and len(failed) == 2 and [r["seed"] for r in _rows(out)] == ["0"]
    raised, killed = (next(c for c in failed if c.endswith(f"seed{s}")) for s in (1, 2))
    assert "simulated out-of-memory" in failed[raised] and "/slurm/" in failed[raised]
    assert "ended without a result" in failed[killed] and (out / "cells" / f"{killed}.partial" / "error.txt").is_file()
    assert list((out / "slurm").glob("*/*_log.err"))  # submitit's per-job logs under <run>/slurm/<job id>/
    summary = run_grid(grid, out, executor=SlurmExecutor(cluster="local", poll_seconds=0.2,
                                                         target=cell_helpers.write_result))
    assert summary.ran == 2 and summary.skipped == 1 and len(_rows(out)) == 3


def test_a_rerun_refuses_cells_whose_earlier_slurm_jobs_still_run(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """After a lost login session the jobs go on; running the grid again must not submit their cells twice."""
    import submitit

    from common.experiments.executors.slurm import SlurmExecutor
    from common.experiments.jobs import RunJob

    states = {"11_0": "RUNNING", "11_1": "COMPLETED"}

    class FakeSlurmJob:
        def __init__(self, folder: Path, job_id: str) -> None:
            self.state = states[job_id]

    monkeypatch.setattr(submitit, "SlurmJob", FakeSlurmJob)
    (tmp_path / "slurm").mkdir()
    (tmp_path / "slurm" / "submitted.json").write_text(json.dumps({"cells/a": "11_0", "cells/b": "11_1"}))
    jobs = [RunJob(f"cells/{n}", "b", "auc", str(tmp_path / "cells" / n), None, {"seed": 0}) for n in "ab"]
    with pytest.raises(ConfigError, match=r"1 cells of an earlier submission .* cells/a \(job 11_0, RUNNING\)"):
        next(SlurmExecutor(cluster="slurm").run(jobs, tmp_path))


def test_a_preempted_slurm_cell_is_requeued_with_the_same_job() -> None:
    from common.experiments.executors.slurm import CellTask
    from common.experiments.jobs import RunJob

    task, job = CellTask(cell_helpers.write_result), RunJob("cells/c", "b", "auc", "/tmp/c", None, {"seed": 0})
    again = task.checkpoint(job)
    assert again.function is task and again.args == (job,)


def test_local_children_die_with_the_runner(tmp_path: Path) -> None:
    """SIGKILL the runner: its cell process is gone too (PR_SET_PDEATHSIG), so no orphan writes on."""
    script = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
              "from pathlib import Path\n"
              "from common.experiments.executors import LocalExecutor\n"
              "from common.experiments.jobs import RunJob\n"
              "from tests.experiments.cell_helpers import block_until_killed\n"
              f"job = RunJob('cells/c', 'b', 'auc', {str(tmp_path / 'cells' / 'c')!r}, None, {{'seed': 0}})\n"
              f"list(LocalExecutor(gpus=[], target=block_until_killed).run([job], Path({str(tmp_path)!r})))\n")
    runner = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    pid_file = tmp_path / "cells" / "c.partial" / "pid"
    deadline = time.monotonic() + 60
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pid_file.read_text())
    runner.send_signal(signal.SIGKILL)
    runner.wait(timeout=30)
    deadline = time.monotonic() + 20
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended (its parent, init, reaps it)


def test_a_target_a_child_cannot_import_is_refused() -> None:
    with pytest.raises(ConfigError, match="module-level function"):
        target_name(lambda job: {})
    with pytest.raises(ConfigError, match="unknown executor 'cluster'; choose from: inprocess, local, slurm"):
        make_executor("cluster")
    assert isinstance(make_executor("inprocess"), InProcessExecutor)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], {"parallel": None, "gpus": None}),
        (["--parallel", "4", "--gpus", "2,3"], {"parallel": 4, "gpus": ["2", "3"]}),
        (["--gpus", "none"], {"parallel": None, "gpus": []}),
        (["--executor", "slurm", "--slurm-partition", "gpu", "--slurm-gpus-per-task", "1", "--slurm-mem", "32G",
          "--slurm-time", "60", "--slurm-setup", "module load cuda"],
         {"partition": "gpu", "gpus_per_task": 1, "mem": "32G", "time_min": 60, "setup": ["module load cuda"]}),
        (["--executor", "inprocess"], {}),
    ],
    ids=["local-default", "local-gpus", "local-no-gpus", "slurm", "inprocess"],
)
def test_command_line_executor_options(argv: list[str], expected: dict[str, Any]) -> None:
    options = _executor_options(build_parser().parse_args(["run", "grid.yaml", *argv]))
    assert {k: options[k] for k in expected} == expected and (options == {}) == (expected == {})


def test_slurm_parameters_reach_the_sbatch_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import submitit.slurm.slurm as submitit_slurm

    from common.experiments.executors.slurm import SlurmExecutor

    monkeypatch.setattr(submitit_slurm.SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # no srun here
    executor = SlurmExecutor(partition="gpu", time_min=30, gpus_per_task=1, mem="32G", setup=["module load cuda"],
                             array_parallelism=8)
    sbatch = executor._executor(tmp_path)._executor._make_submission_file_text("python -m x", "uid")
    for line in ("--partition=gpu", "--time=30", "--gpus-per-task=1", "--mem=32G", "--signal=USR2@90",
                 "--open-mode=append", f"--output={tmp_path}/slurm/%j/%j_0_log.out", "module load cuda"):
        assert line in sbatch, line


def test_parallel_local_cells_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """N cells at once get OMP_NUM_THREADS = cores // N each; one cell, or a user's own setting, is left alone."""
    from common.threads import thread_share

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert thread_share(4, {}) == {"OMP_NUM_THREADS": "4"}
    assert thread_share(32, {}) == {"OMP_NUM_THREADS": "1"}
    assert thread_share(1, {}) == {}
    assert thread_share(4, {"OMP_NUM_THREADS": "2"}) == {}
