"""site.json: plain settings of the bundle only (never code), and label mapping onto the bundle's classes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.errors import ConfigError
from common.sharing.site import load_site, remap_datalist, site_settings

CHEST = Path(__file__).resolve().parents[2] / "bundles" / "chest_xray_classification"


def _site(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "site.json"
    path.write_text(json.dumps(content))
    return path


def test_plain_settings_pass(tmp_path: Path) -> None:
    site = load_site(_site(tmp_path, {"settings": {"num_workers": 2, "val_batch_size": 4, "use_clahe": False}}))
    assert site_settings(CHEST, site) == {"num_workers": 2, "val_batch_size": 4, "use_clahe": False}


@pytest.mark.parametrize(("settings", "needle"), [
    ({"num_workers": "$__import__('os').system('touch /tmp/x')"}, "plain JSON value"),
    ({"num_workers": "@bundle_root"}, "plain JSON value"),
    ({"num_workers": ["%configs/train.json#network"]}, "plain JSON value"),
    ({"network_def": {"_target_": "os.system"}}, "not a literal setting"),
    ({"bundle_root": "/elsewhere"}, "not a literal setting"),
    ({"no_such_key": 1}, "not a literal setting"),
    ({"num_workers": {"a": 1}}, "plain JSON value"),
])
def test_code_or_unknown_settings_are_refused(tmp_path: Path, settings: dict, needle: str) -> None:
    site = load_site(_site(tmp_path, {"settings": settings}))
    with pytest.raises(ConfigError, match=needle) as info:
        site_settings(CHEST, site, "site.json")
    assert "site.json: settings." in str(info.value)


@pytest.mark.parametrize(("content", "needle"), [
    ([1, 2], "expected a JSON object"),
    ({"dataset": "x"}, "unknown key"),
    ({"labels": {"names": "Mass"}}, "labels.names"),
    ({"labels": {"names": ["A"], "map": {"B": "Mass"}}}, "not in labels.names"),
])
def test_malformed_site_files_are_refused(tmp_path: Path, content: object, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_site(_site(tmp_path, content))


def test_labels_are_reordered_onto_the_bundle_classes(tmp_path: Path) -> None:
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"test": [{"image": "a.png", "label": [1, 0, 1]},
                                             {"image": "b.png", "label": [0, float("nan"), 0]}]}))
    site = {"labels": {"names": ["Pleural effusion", "Mass", "Tumour"], "map": {"Pleural effusion": "Effusion"}}}
    mapped = remap_datalist(datalist, site, ["Effusion", "Cardiomegaly", "Mass"], tmp_path / "out.json")
    assert mapped == {"mapped": {"Effusion": "Pleural effusion", "Mass": "Mass"}, "unknown_at_site": ["Cardiomegaly"],
                      "dropped": ["Tumour"]}
    out = json.loads((tmp_path / "out.json").read_text())
    assert [item["label"] for item in out["test"]] == [[1, None, 0], [0, None, None]]


def test_mapping_onto_an_unknown_bundle_class_is_refused(tmp_path: Path) -> None:
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"test": [{"image": "a.png", "label": [1]}]}))
    site = {"labels": {"names": ["Effusion"], "map": {"Effusion": "Pleural effusion"}}}
    with pytest.raises(ConfigError, match="Pleural effusion"):
        remap_datalist(datalist, site, ["Effusion", "Mass"], tmp_path / "out.json")


def test_wrong_label_length_names_the_item(tmp_path: Path) -> None:
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"test": [{"image": "a.png", "label": [1, 0]}]}))
    site = {"labels": {"names": ["Effusion"], "map": {}}}
    with pytest.raises(ConfigError, match=r"test\[0\]"):
        remap_datalist(datalist, site, ["Effusion"], tmp_path / "out.json")
