"""evaluate: a received bundle on this site's data, its labels spelled its own way, beside the sender's numbers."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from common.errors import ConfigError
from common.sharing.__main__ import main
from common.sharing.errors import VerificationError
from common.sharing.evaluate import compare_metrics, evaluate_received, flatten_metrics
from common.sharing.pack import pack_bundle
from tests.sharing.conftest import CHEST

SITE_NAMES = {"Effusion": "Pleural effusion", "Pleural_Thickening": "Pleural thickening"}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, trained_chest_bundle: Path) -> Path:
    """The trained chest bundle packed (unsigned) as site A would send it."""
    return pack_bundle(trained_chest_bundle, tmp_path_factory.mktemp("outbox"), version="0.4.0",
                       changelog="shared for evaluation", record=False)


@pytest.fixture(scope="module")
def plain(archive: Path, chest_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The received model evaluated on the site's data as it is (same label names and order)."""
    return evaluate_received(archive, chest_dataset, output=tmp_path_factory.mktemp("plain"))


def _site_datalist(chest_dataset: Path, classes: list[str], folder: Path) -> tuple[Path, list[str]]:
    """The site's own datalist: classes reversed, two renamed, Hernia not labelled, an extra 'Tumour' column."""
    site_order = [c for c in reversed(classes) if c != "Hernia"]
    names = [SITE_NAMES.get(c, c) for c in site_order] + ["Tumour"]
    content = json.loads((chest_dataset / "datalist.json").read_text())
    for items in content.values():
        for item in items:
            label = dict(zip(classes, item["label"], strict=True))
            item["label"] = [label[c] for c in site_order] + [1]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "datalist.json").write_text(json.dumps(content))
    return folder / "datalist.json", names


def _per_class_auc(metrics_file: str) -> dict[str, float | None]:
    metrics = json.loads(Path(metrics_file).read_text())
    return {row["name"]: row.get("auc") for row in metrics["per_class"]}


def test_sender_numbers_beside_the_site_numbers(plain: dict, archive: Path) -> None:
    rows = {row["metric"]: row for row in plain["rows"]}
    assert "mean_auc" in rows and "per_class.Atelectasis.auc" in rows
    row = rows["mean_auc"]
    assert row["difference"] == pytest.approx(row["site"] - row["origin"])
    # the sender evaluated on the same synthetic test split: no shift, so the numbers agree
    assert row["site"] == pytest.approx(row["origin"], abs=1e-9)
    site = json.loads(Path(plain["site_metrics"]).read_text())
    assert site["bootstrap"]["unit"] == "patient"  # the datalist's patient ids reach the evaluator's intervals
    report = (Path(plain["site_metrics"]).parents[2] / "site_report.md").read_text()
    assert "| mean_auc |" in report and "sender" in report


def test_site_labels_are_mapped_onto_the_model_classes(plain: dict, archive: Path, chest_dataset: Path,
                                                       tmp_path: Path) -> None:
    classes = json.loads((Path(plain["site_metrics"]).parent / "metrics.json").read_text())["class_names"]
    datalist, names = _site_datalist(chest_dataset, classes, tmp_path / "site")
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"dataset_dir": str(chest_dataset), "datalist": str(datalist),
                                "labels": {"names": names, "map": {v: k for k, v in SITE_NAMES.items()}},
                                "settings": {"num_workers": 0, "val_batch_size": 4}}))
    mapped = evaluate_received(archive, site_file=site, output=tmp_path / "out")
    assert mapped["labels"]["unknown_at_site"] == ["Hernia"] and mapped["labels"]["dropped"] == ["Tumour"]
    assert mapped["labels"]["mapped"]["Effusion"] == "Pleural effusion"
    ours, reference = _per_class_auc(mapped["site_metrics"]), _per_class_auc(plain["site_metrics"])
    for name in classes:
        if name != "Hernia":
            assert ours[name] == reference[name], name  # the same labels reach the same classes
    assert ours["Hernia"] is None  # not labelled at this site: unknown, not negative


def test_code_in_a_site_file_is_refused_before_anything_runs(archive: Path, chest_dataset: Path,
                                                            tmp_path: Path) -> None:
    site = tmp_path / "site.json"
    marker = tmp_path / "ran"
    site.write_text(json.dumps({"settings": {"num_workers": f"$open('{marker}', 'w')"}}))
    with pytest.raises(ConfigError, match="settings.num_workers"):
        evaluate_received(archive, chest_dataset, site_file=site, output=tmp_path / "out")
    assert not marker.exists()


def test_a_tampered_archive_is_refused(archive: Path, chest_dataset: Path, tmp_path: Path) -> None:
    tampered = tmp_path / archive.name
    with zipfile.ZipFile(archive) as zin, zipfile.ZipFile(tampered, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info, data.replace(b'"val_batch_size": 32', b'"val_batch_size": 31')
                          if info.filename == f"{CHEST}/configs/train.json" else data)
    with pytest.raises(VerificationError, match="configs/train.json"):
        evaluate_received(tampered, chest_dataset, output=tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_cli_prints_the_table(archive: Path, chest_dataset: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    """The table through ``main`` in this process (the evaluation itself is the cost, not the import); the usage
    error through a real ``python -m common.sharing`` process, for the exit status the shell sees."""
    status = main(["evaluate", str(archive), "--dataset-dir", str(chest_dataset), "--output", str(tmp_path / "out")])
    done = capsys.readouterr()
    assert status == 0, done.err[-2000:]
    assert "| metric | sender | this site | difference |" in done.out
    no_data = subprocess.run([sys.executable, "-m", "common.sharing", "evaluate", str(archive), "--output",
                              str(tmp_path / "out2")], capture_output=True, text=True, check=False)
    assert no_data.returncode == 2 and "dataset folder" in no_data.stderr


def test_flatten_and_compare() -> None:
    origin = {"mean_auc": 0.8, "mean_auc_ci": [0.7, 0.9], "per_class": [{"name": "Mass", "auc": 0.7}]}
    site = {"mean_auc": 0.75, "per_class": [{"name": "Mass", "auc": 0.6}, {"name": "Nodule", "auc": 0.5}],
            "n_images": 10}
    assert flatten_metrics(site) == {"mean_auc": 0.75, "per_class.Mass.auc": 0.6, "per_class.Nodule.auc": 0.5,
                                     "n_images": 10.0}
    rows = compare_metrics(origin, site)
    assert [(r["metric"], round(r["difference"], 6)) for r in rows] == [("mean_auc", -0.05),
                                                                        ("per_class.Mass.auc", -0.1)]
