"""``python -m common``: every command has --help; user errors are one line and exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from common.cli import main


@pytest.mark.parametrize(
    "argv",
    [[], ["prepare-data"], ["prepare-data", "chestxray14"], ["prepare-data", "chestmnist"],
     ["prepare-data", "cbis-ddsm"], ["prepare-data", "inbreast"], ["generate-data"], ["generate-data", "chestxray14"],
     ["generate-data", "cbis-ddsm"], ["generate-data", "inbreast"], ["demo"], ["probe-cutoff"],
     ["prepare-data", "bcss"], ["generate-data", "bcss"]],
    ids=lambda a: " ".join(a) or "top",
)
def test_every_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    assert "usage: python -m common" in capsys.readouterr().out


def test_generate_then_prepare_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate-data", "chestxray14", "--output-dir", str(tmp_path / "cxr"), "--patients", "20",
                 "--image-size", "32"]) == 0
    out = tmp_path / "datalist.json"
    assert main(["prepare-data", "chestxray14", "--dataset-dir", str(tmp_path / "cxr"), "--output", str(out),
                 "--val-fraction", "0.2"]) == 0
    datalist = json.loads(out.read_text())
    assert set(datalist) == {"training", "validation", "test"}
    assert all(len(item["label"]) == 14 for split in datalist.values() for item in split)
    printed = capsys.readouterr().out
    assert "training" in printed and "Cardiomegaly" in printed


def test_user_error_is_one_line_and_status_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "common", "prepare-data", "chestxray14", "--dataset-dir", str(tmp_path / "nowhere"),
         "--output", str(tmp_path / "d.json")],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert str(tmp_path / "nowhere") in result.stderr
    assert not (tmp_path / "d.json").exists()


@pytest.mark.parametrize("dataset", ["cbis-ddsm", "inbreast"])
def test_mammography_generate_then_prepare(tmp_path: Path, dataset: str) -> None:
    assert main(["generate-data", dataset, "--output-dir", str(tmp_path / "d"), "--patients", "12",
                 "--image-size", "64"]) == 0
    out = tmp_path / "datalist.json"
    assert main(["prepare-data", dataset, "--dataset-dir", str(tmp_path / "d"), "--output", str(out)]) == 0
    datalist = json.loads(out.read_text())
    assert all(item["label"] in ([0.0], [1.0]) for split in datalist.values() for item in split)
