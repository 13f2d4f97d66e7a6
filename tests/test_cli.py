"""``python -m common``: every command has --help; user errors are one line and exit status 2."""

from __future__ import annotations

import csv
import errno
import json
import os
import re
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
     ["prepare-data", "bcss"], ["generate-data", "bcss"], ["prepare-data", "class-folders"],
     ["prepare-data", "label-csv"], ["prepare-data", "medmnist"], ["generate-data", "dermoscopy"],
     ["generate-data", "endoscopy"], ["generate-data", "brain-mri"], ["generate-data", "medmnist"],
     ["generate-data", "sites"]],
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


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A ChestX-ray14-layout folder, a ChestMNIST npz (and another one) and a general-medical sources file."""
    from common.synthetic.general_medical import write_synthetic_chestmnist

    root = tmp_path_factory.mktemp("inputs")
    assert main(["generate-data", "chestxray14", "--output-dir", str(root / "cxr"), "--patients", "12",
                 "--image-size", "32"]) == 0  # fmt: skip
    write_synthetic_chestmnist(root / "a.npz", 12, 28, seed=0)
    write_synthetic_chestmnist(root / "b.npz", 12, 28, seed=1)
    (root / "broken.json").write_text("{not json")
    for name, npz, extra in (("sources", "a.npz", []), ("sources_b", "b.npz", []),
                             ("sources_b_broken", "b.npz", [{"name": "zz", "kind": "datalist", "modality": "xray",
                                                             "path": str(root / "broken.json")}])):  # fmt: skip
        spec = [{"name": "cmnist", "kind": "medmnist", "path": str(root / npz), "modality": "xray",
                 "class_names": "chestmnist"}, *extra]  # fmt: skip
        (root / f"{name}.json").write_text(json.dumps({"sources": spec}))
    (root / "hostname").write_text("a regular file")
    return root


def fs_commands(inputs: Path, output: Path) -> dict[str, list[str]]:
    """Every command that writes, with its output at ``output``."""
    return {
        "prepare chestxray14": ["prepare-data", "chestxray14", "--dataset-dir", str(inputs / "cxr"), "--output",
                                str(output / "datalist.json"), "--val-fraction", "0.25"],
        "prepare chestmnist": ["prepare-data", "chestmnist", "--npz", str(inputs / "a.npz"), "--output",
                               str(output / "datalist.json")],
        "prepare general-medical": ["prepare-data", "general-medical", "--sources", str(inputs / "sources.json"),
                                    "--output", str(output), "--val-fraction", "0.25"],
        "generate chestxray14": ["generate-data", "chestxray14", "--output-dir", str(output), "--patients", "8",
                                 "--image-size", "32"],
        "generate bcss": ["generate-data", "bcss", "--output-dir", str(output), "--patients", "2",
                          "--tile-size", "64"],
    }  # fmt: skip


COMMANDS = ["prepare chestxray14", "prepare chestmnist", "prepare general-medical", "generate chestxray14",
            "generate bcss"]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_below_a_regular_file_is_one_line_and_status_2(
    inputs: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    output = inputs / "hostname" / "out"
    assert main(fs_commands(inputs, output)[command]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and re.match(rf"error: cannot (write|create folder) {output}", lines[0])
    assert lines[0].endswith(f"{inputs / 'hostname'} is a file, not a folder")
    assert (inputs / "hostname").read_text() == "a regular file"


@pytest.mark.parametrize(
    "patched, reason",
    [("replace", "Read-only file system"), ("fsync", "No space left on device")],
    ids=["read-only", "no-space-left"],
)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_read_only_or_full_disk_is_one_line_and_status_2_and_nothing_is_half_written(
    inputs: Path, tmp_path: Path, command: str, patched: str, reason: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import common.io

    code = errno.EROFS if patched == "replace" else errno.ENOSPC

    def fail(*args: object) -> None:
        raise OSError(code, os.strerror(code))

    output = tmp_path / "out"
    monkeypatch.setattr(common.io.os, patched, fail)
    assert main(fs_commands(inputs, output)[command]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot write {output}") and lines[0].endswith(reason)
    left = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert left == [], left  # no datalist, no image, no hidden temporary file


def test_the_error_line_comes_from_a_real_process_and_debug_shows_the_traceback(inputs: Path) -> None:
    argv = fs_commands(inputs, inputs / "hostname" / "out")["prepare chestmnist"]
    for debug in ([], ["--debug"]):
        result = subprocess.run([sys.executable, "-m", "common", *debug, *argv], capture_output=True, text=True,
                                check=False, env={k: v for k, v in os.environ.items() if k != "MEDXFER_DEBUG"})
        assert result.returncode == 2
        assert len(error_lines(result.stderr)) == 1 and result.stderr.rstrip().splitlines()[-1].startswith("error:")
        assert ("Traceback" in result.stderr) == bool(debug), result.stderr


def test_medxfer_debug_shows_the_traceback(inputs: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("MEDXFER_DEBUG", "1")
    assert main(fs_commands(inputs, inputs / "hostname" / "out")["prepare chestmnist"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "OutputError" in err and err.rstrip().splitlines()[-1].startswith("error: cannot")


def png_pixels(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def test_a_failed_chestmnist_reprepare_keeps_the_previous_images_and_datalist(
    inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import common.data.chestmnist

    out = tmp_path / "chestmnist"
    out.mkdir()
    (out / "notes.txt").write_text("the user's")
    argv = ["prepare-data", "chestmnist", "--output", str(out / "datalist.json"), "--npz"]
    assert main([*argv, str(inputs / "a.npz")]) == 0
    before = (png_pixels(out / "images"), (out / "datalist.json").read_text())
    real = common.data.chestmnist.atomic_write_json

    def full_disk_at_the_datalist(path: Path, data: object) -> Path:
        if Path(path).name == "datalist.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, data)

    monkeypatch.setattr(common.data.chestmnist, "atomic_write_json", full_disk_at_the_datalist)
    assert main([*argv, str(inputs / "b.npz")]) == 2
    assert (png_pixels(out / "images"), (out / "datalist.json").read_text()) == before
    assert sorted(p.name for p in out.iterdir()) == ["datalist.json", "images", "notes.txt"]
    monkeypatch.setattr(common.data.chestmnist, "atomic_write_json", real)
    assert main([*argv, str(inputs / "b.npz")]) == 0
    assert png_pixels(out / "images") != before[0] and (out / "datalist.json").read_text() != before[1]


def test_a_failed_general_medical_rebuild_keeps_the_previous_pngs_and_datalist(
    inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "general"
    argv = ["prepare-data", "general-medical", "--output", str(out), "--val-fraction", "0.25", "--sources"]
    assert main([*argv, str(inputs / "sources.json")]) == 0
    before = (png_pixels(out / "cmnist"), (out / "datalist.json").read_text())
    # the first source (other pixels under the same PNG names) reads fine, the second is broken JSON
    assert main([*argv, str(inputs / "sources_b_broken.json")]) == 2
    assert "broken.json is not valid JSON" in capsys.readouterr().err
    assert (png_pixels(out / "cmnist"), (out / "datalist.json").read_text()) == before
    assert sorted(p.name for p in out.iterdir()) == ["cmnist", "datalist.json"]
    assert main([*argv, str(inputs / "sources_b.json")]) == 0
    assert png_pixels(out / "cmnist") != before[0]


@pytest.mark.parametrize(
    "dataset, generate, classes",
    [("dermoscopy", ["--patients", "15", "--image-size", "16"], ["keratosis", "melanoma", "nevus"]),
     ("endoscopy", ["--patients", "15", "--image-size", "16"], ["normal", "polyp", "ulcerative-colitis"]),
     ("brain-mri", ["--patients", "24", "--image-size", "16"], ["glioma", "meningioma", "notumor", "pituitary"])],
    ids=["dermoscopy", "endoscopy", "brain-mri"],
)  # fmt: skip
def test_generate_then_prepare_class_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str], dataset: str,
                                             generate: list[str], classes: list[str]) -> None:  # fmt: skip
    root = tmp_path / dataset
    assert main(["generate-data", dataset, "--output-dir", str(root), *generate]) == 0
    assert main(["prepare-data", "class-folders", "--dataset-dir", str(root), "--output", str(root / "datalist.json"),
                 "--val-fraction", "0.2"]) == 0  # fmt: skip
    datalist = json.loads((root / "datalist.json").read_text())
    assert datalist["classes"] == classes and all(isinstance(i["label"], int) for i in datalist["training"])
    assert classes[0] in capsys.readouterr().out


def test_generate_then_prepare_medmnist_and_label_csv(tmp_path: Path) -> None:
    assert main(["generate-data", "medmnist", "--output-dir", str(tmp_path), "--flag", "bloodmnist", "--size", "64",
                 "--train", "16", "--val", "8", "--test", "8"]) == 0  # fmt: skip
    out = tmp_path / "blood" / "datalist.json"
    assert main(["prepare-data", "medmnist", "--npz", str(tmp_path / "bloodmnist_64.npz"), "--output", str(out)]) == 0
    datalist = json.loads(out.read_text())
    assert datalist["classes"][0] == "basophil" and (out.parent / datalist["test"][0]["image"]).is_file()
    with open(out.parent / "table.csv", "w", newline="") as handle:  # class names hold commas: quoted
        csv.writer(handle).writerows([("file", "cell", "split")] + [
            (item["image"], datalist["classes"][item["label"]], split)
            for split in ("training", "validation", "test") for item in datalist[split]])  # fmt: skip
    assert main(["prepare-data", "label-csv", "--dataset-dir", str(out.parent), "--csv", "table.csv", "--output",
                 str(out.parent / "from_csv.json"), "--image-column", "file", "--label-column", "cell"]) == 0
    from_csv = json.loads((out.parent / "from_csv.json").read_text())
    assert len(from_csv["test"]) == 8 and sorted(from_csv["classes"]) == sorted(datalist["classes"])


def test_prepare_chestxray14_binary_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate-data", "chestxray14", "--output-dir", str(tmp_path / "cxr"), "--patients", "40",
                 "--image-size", "16", "--prevalence", "0.05"]) == 0  # fmt: skip
    out = tmp_path / "any.json"
    assert main(["prepare-data", "chestxray14", "--dataset-dir", str(tmp_path / "cxr"), "--output", str(out),
                 "--task", "any", "--val-fraction", "0.25"]) == 0  # fmt: skip
    assert json.loads(out.read_text())["classes"] == ["No Finding", "Any finding"]
    assert "binary task 'Any finding'" in capsys.readouterr().out
    assert main(["prepare-data", "chestxray14", "--dataset-dir", str(tmp_path / "cxr"), "--output", str(out),
                 "--task", "Efusion"]) == 2  # fmt: skip


def test_generate_sites_writes_two_hospitals_with_disjoint_patients(tmp_path: Path) -> None:
    """``generate-data sites`` (issue 13) writes one ChestX-ray14-layout folder per site; no patient is at two sites."""
    assert main(["generate-data", "sites", "--output-dir", str(tmp_path / "fl"), "--patients", "8",
                 "--image-size", "32"]) == 0
    patients = []
    for site in ("site-1", "site-2"):
        datalist = json.loads((tmp_path / "fl" / site / "datalist.json").read_text())
        patients.append({item["patient_id"] for split in datalist.values() for item in split})
    assert patients[0] and patients[1] and not patients[0] & patients[1]


def test_probe_cutoff_runs_on_a_single_label_datalist_with_set(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """``probe-cutoff --set`` gives the single-label bundle its classes and colour; the probe ranks the layers."""
    root = tmp_path / "derm"
    assert main(["generate-data", "dermoscopy", "--output-dir", str(root), "--patients", "24", "--image-size",
                 "32"]) == 0  # fmt: skip
    assert main(["prepare-data", "class-folders", "--dataset-dir", str(root), "--output", str(root / "datalist.json"),
                 "--val-fraction", "0.3"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["probe-cutoff", "--bundle", "bundles/medical_image_classification", "--dataset-dir", str(root),
                 "--layers", "layer3", "layer4", "--pretrained", "none", "--image-size", "32", "--num-workers", "0",
                 "--set", "arch=resnet18", "--set", 'class_names=["keratosis","melanoma","nevus"]',
                 "--set", "check_images=false"]) == 0  # fmt: skip
    rows = capsys.readouterr().out.splitlines()[1:]
    aucs = [float(line.split()[2]) for line in rows]
    assert [line.split()[0] for line in rows] == ["layer3", "layer4"] and all(0.0 <= a <= 1.0 for a in aucs)
