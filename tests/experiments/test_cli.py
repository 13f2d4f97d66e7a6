"""``python -m common.experiments``: help, one-line errors before anything runs, list, dry run, report."""

from __future__ import annotations

import csv
import errno
import os
import re
from pathlib import Path

import pytest
import yaml

from common.experiments.__main__ import GRIDS_DIR, main


@pytest.mark.parametrize("command", [[], ["run"], ["report"], ["list"]])
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0 and "usage: python -m common.experiments" in capsys.readouterr().out


def test_bad_grid_is_one_line_and_status_2_and_nothing_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = tmp_path / "bad.yaml"
    grid.write_text(yaml.safe_dump({"tasks": [{"bundle": "chest_xray_classification",
                                               "data": {"embedded": "chestxray14"}}],
                                    "architectures": ["densenet121"], "stage1": ["none"],
                                    "strategies": ["ft", "warm_restart"]}))
    assert main(["run", str(grid), "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown strategy 'warm_restart'") and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_list_and_dry_run_of_a_shipped_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    assert str(GRIDS_DIR / "demo.yaml") in capsys.readouterr().out
    assert main(["run", str(GRIDS_DIR / "c_strategies_embedded.yaml"), "--output", str(tmp_path / "r"),
                 "--dry-run"]) == 0
    assert "16 cells; nothing was run" in capsys.readouterr().out and not (tmp_path / "r").exists()


def test_report_rebuilds_the_leaderboard_from_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "no finished runs" in capsys.readouterr().err
    columns = ["cell", "bundle", "arch", "stage1", "stage2", "strategy", "seed", "metric", "value", "seconds",
               "eval_dir"]
    with (tmp_path / "results.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for seed, (ft, lpft) in enumerate([(0.70, 0.74), (0.72, 0.75), (0.74, 0.79)]):
            writer.writerow([f"ft{seed}", "chest", "resnet18", "imagenet", "none", "ft", seed, "mean_auc", ft, 10, ""])
            writer.writerow([f"lp{seed}", "chest", "resnet18", "imagenet", "none", "lp_ft", seed, "mean_auc", lpft, 9,
                             ""])
    assert main(["report", str(tmp_path), "--title", "Mine"]) == 0
    text = (tmp_path / "leaderboard.md").read_text()
    assert text.startswith("# Mine") and "| 1 | resnet18 | imagenet | none | lp_ft | 3 |" in text


def test_an_output_below_a_regular_file_is_one_line_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "hostname").write_text("a regular file")
    output = tmp_path / "hostname" / "run"
    assert main(["run", str(GRIDS_DIR / "c_strategies_embedded.yaml"), "--output", str(output)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: cannot create folder {output}: {tmp_path / 'hostname'} is a file, not a folder\n"
    assert (tmp_path / "hostname").read_text() == "a regular file"


@pytest.mark.parametrize(
    "patched, code",
    [("replace", errno.EROFS), ("fsync", errno.ENOSPC)],
    ids=["read-only", "no-space-left"],
)
def test_report_on_a_read_only_or_full_disk_is_one_line_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, patched: str, code: int
) -> None:
    import common.io

    columns = ["cell", "bundle", "arch", "stage1", "stage2", "strategy", "seed", "metric", "value", "seconds",
               "eval_dir"]
    with (tmp_path / "results.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerow(["ft0", "chest", "resnet18", "imagenet", "none", "ft", 0, "mean_auc", 0.7, 10, ""])

    def fail(*args: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(common.io.os, patched, fail)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(rf"error: cannot write {tmp_path}/leaderboard\.\w+: {os.strerror(code)}\n", err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


def test_bundle_log_lines_go_to_run_log(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A grid's per-iteration lines (ignite / MONAI loggers at INFO, as the bundles' logging.conf sets them) stay off
    the console; OUTPUT/run.log keeps them."""
    import logging

    import common.experiments.runner as runner_module
    from common.experiments.runner import GridRun

    def fake_run_grid(grid, output, **kwargs) -> GridRun:
        logging.getLogger("ignite.engine.engine.SupervisedTrainer").info("Epoch: 1/2, Iter: 3/9 -- train_loss: 0.7")
        return GridRun(output_dir=Path(output), total=0)

    monkeypatch.setattr(runner_module, "run_grid", fake_run_grid)
    monkeypatch.setattr(logging.getLogger("ignite"), "level", logging.INFO)
    out = tmp_path / "r"
    assert main(["run", str(GRIDS_DIR / "demo.yaml"), "--output", str(out)]) == 0
    assert "train_loss: 0.7" not in capsys.readouterr().err
    assert "train_loss: 0.7" in (out / "run.log").read_text()
