"""The grid's training axis (local / pooled / federated) and its ``federated`` block: parsing, cells, plan, results
columns, leaderboard grouping, and one tiny grid run end to end through NVFlare's real simulator.

The end-to-end run (``local-site-1``, ``pooled``, ``federated``: 2 sites of 12 patients, 32 px, ResNet-18 from scratch,
2 rounds of 1 epoch) takes about 100 s on 2 shared cores; it runs once, in a module-scoped fixture.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from common.errors import ConfigError
from common.experiments.__main__ import GRIDS_DIR
from common.experiments.cells import expand
from common.experiments.grid import parse_grid
from common.experiments.leaderboard import format_board_table, leaderboard_csv
from common.experiments.plan import plan_grid
from common.experiments.runner import GridRun, run_grid
from common.experiments.stats import parse_runs, summarise

REPO = Path(__file__).resolve().parents[2]
CHEST = "chest_xray_classification"
#: MLflow tracking is optional (mlflow-skinny, sqlalchemy, alembic in requirements-dev.txt)
MLFLOW = all(importlib.util.find_spec(m) is not None for m in ("mlflow", "sqlalchemy", "alembic"))
SITES = {"embedded": "sites", "generate": {"n_patients": 12, "image_size": 32, "seed": 0}}


def _grid(**changes: Any) -> dict[str, Any]:
    """A small grid on one embedded dataset (``changes`` replace or add keys; ``None`` removes one)."""
    raw: dict[str, Any] = {"name": "fp", "tasks": [{"bundle": CHEST, "data": {"embedded": "chestxray14",
                                                                            "generate": {"n_patients": 8}}}],
                           "architectures": ["resnet18"], "stage1": ["none"],
                           "strategies": ["ft", {"name": "lp_ft", "params": {"lp_epochs": 1}}], "seeds": [0, 1],
                           "overrides": {"epochs": 1}}
    raw.update(changes)
    return {k: v for k, v in raw.items() if v is not None}


def _sites_grid(**changes: Any) -> dict[str, Any]:
    return _grid(**{"tasks": [{"bundle": CHEST, "data": SITES}], "strategies": ["ft", "lp"], "seeds": [0],
                    "training": ["local", "pooled", "federated"], "federated": {"rounds": 2, "local_epochs": 1},
                    **changes})


# --- parsing -----------------------------------------------------------------------------------------------------


def test_a_grid_without_the_training_axis_keeps_its_cells_ids_and_fingerprints(tmp_path: Path) -> None:
    grid = parse_grid(_grid(), REPO)
    assert grid.training == ("local",) and grid.federated is None
    plan = plan_grid(grid, tmp_path / "run")
    # computed with the runner before the training axis existed (commit 4d2c17e): local cells must not change
    assert [(cell.id, job.fingerprint) for cell, job in plan.cells] == [
        ("chest_xray_classification__resnet18__none__none__ft__seed0", "30b5e62546506583"),
        ("chest_xray_classification__resnet18__none__none__ft__seed1", "e97c8b85a12aeca1"),
        ("chest_xray_classification__resnet18__none__none__lp_ft-lp_epochs=1__seed0", "8d49fd7ef5462f46"),
        ("chest_xray_classification__resnet18__none__none__lp_ft-lp_epochs=1__seed1", "75217723108a568c"),
    ]
    assert {cell.describe()["training"] for cell, _ in plan.cells} == {"local"}
    assert all(job.federation is None for _, job in plan.cells)


def test_training_and_federated_parse(tmp_path: Path) -> None:
    grid = parse_grid(_sites_grid(federated={"rounds": 3, "local_epochs": 2}), REPO)
    assert grid.training == ("local", "pooled", "federated")
    assert (grid.federated.rounds, grid.federated.local_epochs) == (3, 2)  # type: ignore[union-attr]
    assert grid.tasks[0].sites == ("site-1", "site-2")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"training": ["local", "fedavg"]}, r"'training': unknown mode 'fedavg'; choose from: local, pooled, "
                                            r"federated"),
        ({"training": ["pooled", "pooled"]}, r"'training' must list distinct modes"),
        ({"federated": None}, r"'training' lists federated, pooled but the grid has no 'federated' block"),
        ({"federated": {"rounds": 2, "epochs": 1}}, r"'federated': unknown epochs"),
        ({"federated": {"rounds": 0}}, r"'federated.rounds': expected a whole number >= 1, got 0"),
        ({"federated": {"local_epochs": True}}, r"'federated.local_epochs': expected a whole number"),
        ({"federated": [2, 1]}, r"'federated': expected a mapping"),
        ({"training": ["local"], "federated": None}, r"'federated' is required: task 'chest_xray_classification'"),
        ({"tasks": [{"bundle": CHEST, "data": {**SITES, "generate": {"n_sites": 3}}}]},
         r"embedded sites takes generate .*unknown n_sites"),
        ({"tasks": [{"bundle": CHEST, "data": {"sites": {}}}]}, r"'tasks\[0\].data.sites' is empty"),
        ({"tasks": [{"bundle": CHEST, "data": {"sites": {"site 1": {"embedded": "chestxray14"}}}}]},
         r"'tasks\[0\].data.sites.site 1': a site name is letters"),
        ({"tasks": [{"bundle": CHEST, "data": {"sites": {"a": {"embedded": "chestxray14"}}, "embedded": "bcss"}}]},
         r"sites lists every site's data; give nothing else"),
        ({"tasks": [{"bundle": CHEST, "data": {"sites": {"a": {"sites": {"b": {"embedded": "chestxray14"}}}}}}]},
         r"'tasks\[0\].data.sites.a': a site's data cannot itself be a federation"),
        ({"exclude": [{"mode": "pooled"}]}, r"'exclude\[0\]': expected a mapping of .*training"),
    ],
    ids=["unknown-mode", "duplicate-mode", "no-federated-block", "federated-unknown-key", "zero-rounds",
         "bool-epochs", "federated-not-mapping", "sites-need-the-block", "sites-generate-key", "no-site",
         "bad-site-name", "sites-and-more", "nested-federation", "exclude-key"],
)
def test_bad_training_settings_are_refused_naming_the_key(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_grid(_sites_grid(**changes), REPO)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"training": ["local", "federated"], "federated": {"rounds": 2}},
         r"'training' lists federated but no task's data has sites"),
        ({"federated": {"rounds": 2}}, r"'federated' is set but no task's data has sites"),
        ({"pretraining": {"data": SITES}, "stage2": ["medical"]}, r"'pretraining.data': stage 2 trains on one dataset"),
    ],
    ids=["federated-without-sites", "block-without-sites", "pretraining-on-sites"],
)
def test_federated_settings_without_a_task_with_sites_are_refused(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_grid(_grid(**changes), REPO)


def test_a_bundle_without_federated_overlays_cannot_have_sites(tmp_path: Path) -> None:
    import shutil

    bundle = tmp_path / "chest_copy"
    shutil.copytree(REPO / "bundles" / CHEST, bundle)
    (bundle / "configs" / "fl_evaluate.json").unlink()
    with pytest.raises(ConfigError, match=r"bundle chest_copy has no configs/fl_evaluate.json"):
        parse_grid(_sites_grid(tasks=[{"bundle": str(bundle), "data": SITES}]), REPO)


# --- cells and plan ----------------------------------------------------------------------------------------------


def test_local_becomes_one_cell_per_site_and_tasks_without_sites_stay_local() -> None:
    plain = {"bundle": CHEST, "name": "plain", "data": {"embedded": "chestxray14"}}
    grid = parse_grid(_sites_grid(tasks=[{"bundle": CHEST, "data": SITES}, plain], strategies=["ft"]), REPO)
    cells = expand(grid)
    assert [(c.task.name, c.training) for c in cells] == [
        (CHEST, "local-site-1"), (CHEST, "local-site-2"), (CHEST, "pooled"), (CHEST, "federated"), ("plain", "local")]
    assert cells[0].id == f"{CHEST}__resnet18__none__none__ft__local-site-1__seed0" and cells[0].site == "site-1"
    assert cells[-1].id == "plain__resnet18__none__none__ft__seed0" and cells[-1].site is None
    assert [c.describe()["training"] for c in cells] == [c.training for c in cells]


def test_exclude_can_name_a_training_mode() -> None:
    grid = parse_grid(_sites_grid(exclude=[{"training": "local-site-2"}, {"strategy": "lp", "training": "pooled"}]),
                      REPO)
    assert [(c.strategy.name, c.training) for c in expand(grid)] == [
        ("ft", "local-site-1"), ("ft", "pooled"), ("ft", "federated"), ("lp", "local-site-1"), ("lp", "federated")]


def test_site_cells_plan_a_federation_with_each_sites_data(tmp_path: Path) -> None:
    folders = {}
    for site in ("a", "b"):
        folders[site] = tmp_path / site
        folders[site].mkdir()
        (folders[site] / "datalist.json").write_text("{}")
    raw = _sites_grid(tasks=[{"bundle": CHEST, "data": {"sites": {s: {"dataset_dir": str(f)}
                                                                 for s, f in folders.items()}}}], strategies=["ft"])
    plan = plan_grid(parse_grid(raw, REPO), tmp_path / "run", num_workers=0)
    jobs = {cell.training: job for cell, job in plan.cells}
    assert list(jobs) == ["local-a", "local-b", "pooled", "federated"]
    federated = jobs["federated"].federation
    assert federated == {"training": "federated", "rounds": 2, "local_epochs": 1,
                         "sites": {s: [str(f), str(f / "datalist.json")] for s, f in folders.items()}}
    assert "dataset_dir" not in jobs["pooled"].settings and jobs["pooled"].settings["num_workers"] == 0
    assert len({job.fingerprint for job in jobs.values()}) == 4  # each mode is its own result
    again = plan_grid(parse_grid(raw, REPO), tmp_path / "run", num_workers=4)
    assert [job.fingerprint for _, job in again.cells] == [job.fingerprint for job in jobs.values()]


def test_embedded_sites_are_found_under_the_run_folder(tmp_path: Path) -> None:
    plan = plan_grid(parse_grid(_sites_grid(strategies=["ft"]), REPO), tmp_path / "run")
    sites = plan.cells[0][1].federation["sites"]  # type: ignore[index]
    assert list(sites) == ["site-1", "site-2"]
    folder = Path(sites["site-1"][0])
    assert folder.parent.parent == tmp_path / "run" / "data" and folder.parent.name.startswith("sites-")
    assert sites["site-1"][1] == str(folder / "datalist.json")


# --- results and leaderboard -------------------------------------------------------------------------------------


def _row(strategy: str, seed: int, value: float, training: str | None) -> dict[str, str]:
    row = {"cell": f"{strategy}-{training}-{seed}", "bundle": "chest", "arch": "resnet18", "stage1": "none",
           "stage2": "none", "strategy": strategy, "seed": str(seed), "metric": "mean_auc", "value": str(value),
           "seconds": "1", "eval_dir": "e"}
    return row if training is None else {**row, "training": training}


def test_a_missing_or_empty_training_column_means_local() -> None:
    runs = parse_runs([_row("ft", 0, 0.7, None), _row("ft", 1, 0.7, ""), _row("ft", 2, 0.7, "federated")])
    assert [r.training for r in runs] == ["local", "local", "federated"]


def test_the_baseline_is_paired_within_a_training_mode() -> None:
    rows = [_row(s, seed, v + (0.1 if mode == "federated" else 0.0) + (0.02 if s == "lp" else 0.0), mode)
            for mode in ("local-site-1", "federated") for s in ("ft", "lp") for seed, v in ((0, 0.6), (1, 0.64))]
    summaries = summarise(rows)
    by = {(s.strategy, s.training): s for s in summaries}
    assert len(summaries) == 4 and [s.rank for s in summaries] == [1, 2, 3, 4]  # one ranking across modes
    for mode in ("local-site-1", "federated"):
        assert by["lp", mode].baseline == "ft" and by["lp", mode].n_pairs == 2
        assert by["lp", mode].mean_diff == pytest.approx(0.02)  # never lp-federated minus ft-local (0.12)
    assert by["lp", "federated"].label == "resnet18 / none / none / lp / federated"
    table = format_board_table(summaries)
    assert "| Strategy | Training | n |" in table and "| lp | federated | 2 |" in table
    header, *lines = leaderboard_csv(summaries).splitlines()
    assert header.endswith(",modality,training") and {line.rsplit(",", 1)[1] for line in lines} == {
        "local-site-1", "federated"}


def test_a_local_only_table_has_no_training_column() -> None:
    assert "Training" not in format_board_table(summarise([_row("ft", 0, 0.7, None), _row("lp", 0, 0.8, "local")]))


# --- end to end --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def federated_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, GridRun, dict[str, Any]]]:
    """The shipped f_federated_embedded grid cut down to ft, seed 0, tiny data, one site alone, pooled and
    federated; run once through the runner (in process, one torch thread)."""
    raw = yaml.safe_load((GRIDS_DIR / "f_federated_embedded.yaml").read_text())
    raw["tasks"][0]["data"]["generate"] = {"n_patients": 12, "image_size": 32, "seed": 0}
    raw.update(architectures=["resnet18"], stage1=["none"], strategies=["ft"], seeds=[0],
               federated={"rounds": 2, "local_epochs": 1}, exclude=[{"training": "local-site-2"}],
               overrides={"image_size": 32, "batch_size": 8, "val_batch_size": 8, "n_boot": 10},
               tracking="mlflow" if MLFLOW else "none")
    out = tmp_path_factory.mktemp("federated_grid") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        done = run_grid(parse_grid(raw, GRIDS_DIR), out, num_workers=0, executor="inprocess")
        yield out, done, raw
    finally:
        torch.set_num_threads(threads)


def _results(out: Path) -> dict[str, dict[str, str]]:
    with (out / "results.csv").open(newline="") as handle:
        return {row["training"]: row for row in csv.DictReader(handle)}


def test_the_tiny_grid_runs_each_mode_into_results_csv(federated_run: tuple[Path, GridRun, dict[str, Any]]) -> None:
    out, done, _ = federated_run
    assert done.failed == [] and done.ran == 3
    rows = _results(out)
    assert list(rows) == ["local-site-1", "pooled", "federated"]
    for mode, row in rows.items():
        folder = out / "cells" / row["cell"]
        result = json.loads((folder / "result.json").read_text())
        assert set(result) >= {"metric", "value", "seconds", "fingerprint", "val_metric", "eval_dir"}
        assert row["metric"] == result["metric"] == "mean_auc" and 0.0 <= float(row["value"]) <= 1.0
        assert Path(row["eval_dir"]) == folder / result["eval_dir"] and Path(row["eval_dir"]).is_dir(), mode
        assert row["strategy"] == "ft" and row["modality"] == CHEST


@pytest.mark.skipif(not MLFLOW, reason="MLflow tracking is optional (mlflow-skinny, sqlalchemy, alembic)")
def test_every_mode_is_tracked_in_mlflow(federated_run: tuple[Path, GridRun, dict[str, Any]]) -> None:
    """The site cells, which no bundle run tracks, get one MLflow run each: mode, schedule, the results.csv value
    and, for the federation, the pooled metric of every round (the last one: the final global model)."""
    from mlflow import MlflowClient
    from monai.utils import path_to_sqlite_uri

    out, _, raw = federated_run
    client = MlflowClient(tracking_uri=path_to_sqlite_uri(str(out / "mlruns" / "mlflow.db")))
    runs = client.search_runs([client.get_experiment_by_name(raw["name"]).experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    rows = _results(out)
    assert len(runs) == 3
    for mode in ("local-site-1", "pooled", "federated"):
        run = by_name[Path(rows[mode]["cell"]).name]
        assert run.data.params["training"] == mode and run.data.params["strategy"] == "ft"
        assert run.data.params["rounds"] == "2" and run.data.params["local_epochs"] == "1"
        assert run.data.metrics["test_mean_auc"] == pytest.approx(float(rows[mode]["value"]))
    history = sorted(client.get_metric_history(by_name[Path(rows["federated"]["cell"]).name].info.run_id,
                                               "round_mean_auc_pooled"), key=lambda m: m.step)
    assert [m.step for m in history] == [0, 1, 2]
    assert history[-1].value == pytest.approx(float(rows["federated"]["value"]))  # the final global model's


def test_the_federated_cell_is_the_simulators_pooled_value(federated_run: tuple[Path, GridRun, dict[str, Any]]) -> None:
    out, _, _ = federated_run
    row = _results(out)["federated"]
    summary = json.loads((out / "cells" / row["cell"] / "summary.json").read_text())
    assert float(row["value"]) == summary["final_pooled"]
    assert Path(row["eval_dir"]).name == "final_pooled" and row["val_metric"] != ""


def test_the_leaderboard_shows_the_modes_and_a_rerun_skips_every_cell(
        federated_run: tuple[Path, GridRun, dict[str, Any]]) -> None:  # fmt: skip
    out, _, raw = federated_run
    text = (out / "leaderboard.md").read_text()
    assert "| Training |" in text and "| ft | federated |" in text and "| ft | pooled |" in text
    again = run_grid(parse_grid(raw, GRIDS_DIR), out, num_workers=0, executor="inprocess")
    assert (again.skipped, again.ran, again.failed) == (3, 0, [])  # fingerprints stable, nothing re-trained
