"""The grid runner end to end on embedded data: results, leaderboard, resume after a kill, crashed cells."""

from __future__ import annotations

import csv
import importlib.util
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

import common.bundle_runner as bundle_runner
import common.experiments.runner as runner_module
from common.errors import ConfigError
from common.experiments.executors import InProcessExecutor
from common.experiments.grid import load_grid
from common.experiments.jobs import RunJob
from common.experiments.runner import run_grid

REPO = Path(__file__).resolve().parents[2]
TINY = {"epochs": 2, "image_size": 32, "batch_size": 16, "val_batch_size": 32, "num_workers": 0, "n_boot": 20,
        "learning_rate": 0.001, "check_images": False}
STAGE2_TINY = {k: v for k, v in TINY.items() if k != "n_boot"}  # stage 2 is trained, not evaluated: no n_boot


def tiny_grid(tmp_path: Path, name: str = "tiny", **changes: Any) -> Path:
    """A 4-cell grid on an embedded ChestX-ray14-layout dataset (ResNet-18 from scratch, 32 px, 2 epochs)."""
    raw: dict[str, Any] = {
        "name": name,
        "tasks": [{"bundle": "chest_xray_classification",
                   "data": {"embedded": "chestxray14", "generate": {"n_patients": 36, "image_size": 32, "seed": 1},
                            "split": {"val_fraction": 0.25, "seed": 1}}}],
        "architectures": ["resnet18"],
        "stage1": ["none"],
        "strategies": ["ft", {"name": "lp_ft", "params": {"lp_epochs": 1}}],
        "seeds": [0, 1],
        "overrides": dict(TINY),
    }
    raw.update(changes)
    file = tmp_path / f"{name}.yaml"
    file.write_text(yaml.safe_dump(raw))
    return file


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished run of the tiny grid, shared by the read-only checks."""
    tmp = tmp_path_factory.mktemp("grid")
    out = tmp / "run"
    summary = run_grid(load_grid(tiny_grid(tmp)), out)
    assert summary.failed == [] and summary.ran == 4
    return out


def test_every_cell_runs_through_the_bundle_and_lands_in_results(finished: Path) -> None:
    rows = _rows(finished)
    assert len(rows) == 4
    assert {r["strategy"] for r in rows} == {"ft", "lp_ft(lp_epochs=1)"} and {r["seed"] for r in rows} == {"0", "1"}
    for row in rows:
        cell = finished / "cells" / row["cell"]
        metrics = json.loads((cell / "eval" / "metrics.json").read_text())
        assert float(row["value"]) == pytest.approx(metrics["mean_auc"]) and row["metric"] == "mean_auc"
        assert (cell / "models" / "model.pt").is_file() and (cell / "configs" / "finetune.json").is_file()
        assert row["eval_dir"] == str(cell / "eval")
    assert (finished / "grid.yaml").is_file()
    assert not list((finished / "cells").glob("*.partial"))


def test_leaderboard_is_written_from_the_results(finished: Path) -> None:
    text = (finished / "leaderboard.md").read_text()
    assert "lp_ft(lp_epochs=1)" in text and "ft" in text
    assert (finished / "leaderboard.png").is_file()


def test_rerun_skips_finished_cells_and_touches_nothing(finished: Path) -> None:
    stamps = {p: p.stat().st_mtime_ns for p in finished.glob("cells/*/result.json")}
    summary = run_grid(load_grid(finished / "grid.yaml"), finished)
    assert summary.ran == 0 and summary.skipped == 4
    assert {p: p.stat().st_mtime_ns for p in finished.glob("cells/*/result.json")} == stamps


def test_resuming_with_changed_settings_refuses(finished: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load((finished / "grid.yaml").read_text())
    raw["overrides"]["epochs"] = 3
    file = tmp_path / "changed.yaml"
    file.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="run with other settings"):
        run_grid(load_grid(file), finished)


def test_a_crashing_cell_is_recorded_the_others_finish_and_a_rerun_repeats_only_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grid = load_grid(tiny_grid(tmp_path, seeds=[0], overrides={**TINY, "epochs": 1}))
    real = bundle_runner.run_bundle

    def flaky(root: Path, configs: list[str], kind: str, **override: Any) -> Any:
        if "lp_ft" in Path(root).name:
            raise RuntimeError("simulated out-of-memory")
        return real(root, configs, kind, **override)

    monkeypatch.setattr(bundle_runner, "run_bundle", flaky)
    out = tmp_path / "run"
    summary = run_grid(grid, out, num_workers=0)  # also set in the grid's overrides: the CLI value wins
    failed = "chest_xray_classification__resnet18__none__none__lp_ft-lp_epochs=1__seed0"
    assert [c for c, _ in summary.failed] == [failed]
    partial = out / "cells" / f"{summary.failed[0][0]}.partial"
    assert "simulated out-of-memory" in (partial / "error.txt").read_text()
    assert len(_rows(out)) == 1
    monkeypatch.setattr(bundle_runner, "run_bundle", real)
    stamp = next(out.glob("cells/*__ft__seed0/result.json")).stat().st_mtime_ns
    summary = run_grid(grid, out)
    assert summary.ran == 1 and summary.skipped == 1 and not partial.exists()
    assert next(out.glob("cells/*__ft__seed0/result.json")).stat().st_mtime_ns == stamp
    assert len(_rows(out)) == 2


def test_resume_after_the_process_is_killed_mid_grid(tmp_path: Path) -> None:
    """SIGKILL the CLI while it runs; the rerun keeps the finished cells and re-runs the rest."""
    file = tiny_grid(tmp_path, "killed", seeds=[0, 1, 2], strategies=["ft"], overrides={**TINY, "epochs": 1})
    out = tmp_path / "run"
    command = [sys.executable, "-m", "common.experiments", "run", str(file), "--output", str(out), "--executor",
               "inprocess"]  # the local executor's children dying with it: test_executors.py
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not list(out.glob("cells/*/result.json")) and time.monotonic() < deadline:
            assert process.poll() is None, "the runner exited before it could be killed"
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    finished_before = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("cells/*/result.json")}
    assert 1 <= len(finished_before) < 3
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(finished_before)} already finished, {3 - len(finished_before)} run, 0 failed" in done.stdout
    after = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("cells/*/result.json")}
    assert len(after) == 3 and all(after[k] == v for k, v in finished_before.items())
    assert not list((out / "cells").glob("*.partial")) and len(_rows(out)) == 3


@pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("mlflow", "sqlalchemy", "alembic")),
                    reason="MLflow tracking is optional (mlflow-skinny, sqlalchemy, alembic in requirements-dev.txt)")
def test_mlflow_tracking_logs_each_cell_to_a_local_store(tmp_path: Path) -> None:
    grid = load_grid(tiny_grid(tmp_path, seeds=[0], strategies=["ft"], tracking="mlflow",
                               overrides={**TINY, "epochs": 1}))
    out = tmp_path / "run"
    assert run_grid(grid, out).failed == []
    import mlflow
    from monai.utils import path_to_sqlite_uri

    client = mlflow.MlflowClient(tracking_uri=path_to_sqlite_uri(str(out / "mlruns" / "mlflow.db")))
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    names = {r.info.run_name for r in runs}
    assert any(n.endswith("-train") for n in names) and any(n.endswith("-eval") for n in names)
    assert any("train_loss" in r.data.metrics for r in runs)


def test_stage2_medical_cells_start_from_one_pretraining_run(tmp_path: Path) -> None:
    generate = {"seed": 1000, "image_size": 32, "n_images": 24}
    pretraining = {"data": {"embedded": "general_medical", "generate": generate},
                   "overrides": {**STAGE2_TINY, "epochs": 1}}
    grid = load_grid(tiny_grid(tmp_path, stage2=["medical"], strategies=["ft"], pretraining=pretraining,
                               overrides={**TINY, "epochs": 1}))
    out = tmp_path / "run"
    assert run_grid(grid, out).failed == []
    stage2 = out / "pretrain" / "resnet18__none"
    assert (stage2 / "models" / "model.pt").is_file() and (stage2 / "result.json").is_file()
    assert [p.name for p in (out / "pretrain").iterdir()] == ["resnet18__none"]  # one run serves both seeds
    for row in _rows(out):
        assert row["stage2"] == "medical"
        transfer = json.loads((out / "cells" / row["cell"] / "result.json").read_text())["transfer"]
        assert f"from bundle:{stage2}" in transfer and "loaded 0 " not in transfer, transfer
        assert "shape-mismatched 2 (fc.weight, fc.bias)" in transfer  # only the head differs: 21 vs 14 classes
    # A changed stage 2 changes its cells: with the old stage-2 run moved away, the finished cells are refused.
    raw = yaml.safe_load((out / "grid.yaml").read_text())
    raw["pretraining"]["overrides"]["epochs"] = 2
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(raw))
    stage2.rename(tmp_path / "old_stage2")
    with pytest.raises(ConfigError, match="2 finished cells .* other settings"):
        run_grid(load_grid(changed), out, dry_run=True)


def test_failing_stage2_is_tried_once_and_fails_its_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generate = {"seed": 1000, "image_size": 32, "n_images": 24}
    pretraining = {"data": {"embedded": "general_medical", "generate": generate}, "overrides": dict(STAGE2_TINY)}
    grid = load_grid(tiny_grid(tmp_path, stage2=["medical"], strategies=["ft"], pretraining=pretraining))
    attempts: list[str] = []

    def broken(root: Path, configs: list[str], kind: str, **override: Any) -> Any:
        attempts.append(Path(root).name)
        raise RuntimeError("simulated disk full")

    monkeypatch.setattr(bundle_runner, "run_bundle", broken)
    summary = run_grid(grid, tmp_path / "run")
    assert attempts == ["resnet18__none.partial"]
    assert len(summary.failed) == 2 and all("stage-2 run" in e and "disk full" in e for _, e in summary.failed)
    assert "simulated disk full" in (tmp_path / "run" / "pretrain" / "resnet18__none.partial" / "error.txt").read_text()


@pytest.fixture
def fake_cells(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Cells "run" without training: each writes a result.json at once (the names of the cells run are listed)."""
    ran: list[str] = []

    def execute(job: RunJob) -> dict[str, Any]:
        ran.append(job.final.name)
        result = {"val_metric": 0.5, "transfer": "", "metric": "mean_auc", "value": 0.75, "seconds": 1.0,
                  "fingerprint": job.fingerprint}  # fmt: skip
        job.final.mkdir(parents=True)
        (job.final / "result.json").write_text(json.dumps(result))
        return result

    monkeypatch.setattr(runner_module, "make_executor", lambda name, **options: InProcessExecutor(execute))
    monkeypatch.setattr(runner_module, "prepare_data", lambda spec, root: None)
    return ran


@pytest.mark.parametrize(
    "damage",
    ["{\"metric\": \"mean_auc\", \"val", "[1, 2]", "{\"fingerprint\": \"x\", \"seconds\": 1}", "\udcff"],
    ids=["truncated", "not-an-object", "no-metric", "not-utf8"],
)
def test_a_corrupt_result_json_is_set_aside_and_its_cell_run_again(
    tmp_path: Path, fake_cells: list[str], caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    grid = load_grid(tiny_grid(tmp_path, seeds=[0, 1], strategies=["ft"]))
    out = tmp_path / "run"
    assert run_grid(grid, out).ran == 2
    damaged, kept = sorted((out / "cells").iterdir())
    (damaged / "result.json").write_bytes(damage.encode("utf-8", "surrogateescape"))
    (damaged / "models").mkdir()
    (damaged / "models" / "model.pt").write_text("the damaged run's checkpoint")
    fake_cells.clear()
    assert run_grid(load_grid(tmp_path / "tiny.yaml"), out, dry_run=True).ran == 0
    assert not list((out / "cells").glob("*.corrupt-*"))  # a dry run moves nothing
    with caplog.at_level("WARNING", logger=runner_module.__name__):
        summary = run_grid(grid, out)
    assert summary.ran == 1 and summary.skipped == 1 and fake_cells == [damaged.name]
    aside = list((out / "cells").glob(f"{damaged.name}.corrupt-*"))
    assert len(aside) == 1 and (aside[0] / "models" / "model.pt").read_text() == "the damaged run's checkpoint"
    assert f"{damaged}/result.json is corrupt" in caplog.text and str(aside[0]) in caplog.text
    assert json.loads((damaged / "result.json").read_text())["value"] == 0.75 and (kept / "result.json").is_file()
    assert len(_rows(out)) == 2


def test_a_cell_killed_mid_training_resumes_from_its_last_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rerun continues the killed cell's training in its .partial folder instead of starting it again."""
    from common.engines.resume import TrainingCheckpoint

    grid = load_grid(tiny_grid(tmp_path, seeds=[0], strategies=["ft"]))
    real_save, real_load = TrainingCheckpoint.save, TrainingCheckpoint._load

    def save_then_die(self: TrainingCheckpoint, engine: Any) -> None:
        real_save(self, engine)
        if engine.state.epoch == 1:
            raise RuntimeError("simulated kill after epoch 1")

    monkeypatch.setattr(TrainingCheckpoint, "save", save_then_die)
    out = tmp_path / "run"
    summary = run_grid(grid, out, num_workers=0)
    assert len(summary.failed) == 1
    partial = out / "cells" / f"{summary.failed[0][0]}.partial"
    assert (partial / "models" / "checkpoint.pt").is_file()
    resumed: list[int] = []

    def recording_load(self: TrainingCheckpoint, engine: Any, state: dict[str, Any]) -> None:
        resumed.append(int(state["trainer"]["epoch"]))
        real_load(self, engine, state)

    monkeypatch.setattr(TrainingCheckpoint, "save", real_save)
    monkeypatch.setattr(TrainingCheckpoint, "_load", recording_load)
    summary = run_grid(grid, out, num_workers=0)
    assert summary.failed == [] and summary.ran == 1
    assert resumed == [1]
    final = out / "cells" / partial.name.removesuffix(".partial")
    assert (final / "models" / "model.pt").is_file() and (final / "models" / "model.json").is_file()
    assert not (final / "models" / "checkpoint.pt").exists()  # a finished cell keeps no resumable state
