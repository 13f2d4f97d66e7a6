"""common.synthetic.sites: two scanners, disjoint patients, the real adapter's datalists."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from common.errors import ConfigError, DataError
from common.synthetic.sites import ScannerProfile, add_sites_parser, apply_scanner, check_patients_disjoint


def _pixels(site: dict) -> np.ndarray:
    root = Path(site["dataset_dir"])
    return np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted((root / "images").glob("*.png"))])


def test_patients_are_at_one_site_only(fl_sites: dict) -> None:
    patients = {}
    for name, site in fl_sites["sites"].items():
        datalist = json.loads(Path(site["datalist"]).read_text())
        patients[name] = {item["patient_id"] for items in datalist.values() for item in items}
        assert set(datalist) == {"training", "validation", "test"} and all(datalist.values())
    assert patients["site-1"] and patients["site-2"] and not patients["site-1"] & patients["site-2"]


def test_scanners_differ_in_intensity_noise_and_prevalence(fl_sites: dict) -> None:
    one, two = (fl_sites["sites"][s] for s in ("site-1", "site-2"))
    assert one["scanner"]["prevalence"] > two["scanner"]["prevalence"]
    a, b = _pixels(one).astype(float), _pixels(two).astype(float)
    assert a.std() > b.std()  # site-2's scanner is flatter (contrast 0.7, gamma 0.6)
    assert b.mean() > a.mean() + 10  # and brighter


def test_apply_scanner_is_the_documented_formula() -> None:
    image = np.array([[0, 64, 128, 255]], np.uint8)
    scanner = ScannerProfile(gamma=0.5, contrast=0.8, brightness=0.05)
    x = image / 255.0
    expected = np.clip((np.sqrt(x) - 0.5) * 0.8 + 0.55, 0, 1) * 255 + 0.5
    np.testing.assert_array_equal(apply_scanner(image, scanner, np.random.default_rng(0)), expected.astype(np.uint8))


def test_a_shared_patient_is_a_data_error() -> None:
    lists = {"site-1": {"training": [{"patient_id": "7"}]}, "site-2": {"test": [{"patient_id": "7"}]}}
    with pytest.raises(DataError, match="patient 7 appears at sites 'site-1' and 'site-2'"):
        check_patients_disjoint(lists)


@pytest.mark.parametrize("bad", [{"gamma": 0.0}, {"noise_sd": -1.0}, {"prevalence": 1.5}],
                         ids=["gamma", "noise", "prevalence"])
def test_bad_scanner_is_a_config_error(bad: dict) -> None:
    with pytest.raises(ConfigError, match="scanner"):
        ScannerProfile(**bad)


def test_cli_parser_hook(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_sites_parser(parser.add_subparsers(dest="dataset"))
    args = parser.parse_args(["sites", "--output-dir", str(tmp_path), "--patients", "8", "--image-size", "32"])
    args.func(args)
    manifest = json.loads((tmp_path / "sites.json").read_text())
    assert sorted(manifest["sites"]) == ["site-1", "site-2"]
    # relative to the folder, so the manifest stays right when the folder is moved (the grid runner renames it)
    for info in manifest["sites"].values():
        assert (tmp_path / info["datalist"]).is_file() and (tmp_path / info["dataset_dir"]).is_dir()
        assert not Path(info["datalist"]).is_absolute()


def test_pooled_datalist_reaches_every_site_image(fl_sites: dict, tmp_path: Path) -> None:
    from common.federated.baselines import pooled_datalist
    from common.federated.job import FederationSpec

    spec = FederationSpec(bundle="bundles/chest_xray_classification", workdir=str(tmp_path),
                          sites={s: i["datalist"] for s, i in fl_sites["sites"].items()})
    root = pooled_datalist(spec, tmp_path / "pooled.json")
    pooled = json.loads((tmp_path / "pooled.json").read_text())
    for split in ("training", "validation", "test"):
        assert len(pooled[split]) == sum(site[split] for site in fl_sites["sites"].values())
        assert all((root / item["image"]).is_file() for item in pooled[split])
