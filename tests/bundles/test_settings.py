"""Every bundle's top-level settings are gathered in ``settings`` (so none escapes the check or the fingerprint),
and the shipped values pass common.bundle_settings.check_settings."""

from __future__ import annotations

import json

import pytest
from monai.bundle import ConfigParser

from common.bundle_settings import RULES, check_settings
from tests.bundles.conftest import ALL_BUNDLES, BUNDLES

NOT_SETTINGS = {"imports", "bundle_root", "initialize", "run", "finalize", "settings", "checkpoint_card",
                "settings_fingerprint"}


def _looks_like_setting(key: str, value: object) -> bool:
    if key in NOT_SETTINGS:
        return False
    if isinstance(value, str):
        return not value.startswith(("$", "@", "%")) or key in ("datalist", "class_names")
    if isinstance(value, bool | int | float):
        return True
    return isinstance(value, list) and all(isinstance(v, str | int | float) and not str(v).startswith(("$", "@"))
                                           for v in value)


@pytest.mark.parametrize("config", ["train.json", "inference.json"])
@pytest.mark.parametrize("name", ALL_BUNDLES)
def test_every_top_level_setting_is_checked(name: str, config: str) -> None:
    raw = json.loads((BUNDLES / name / "configs" / config).read_text())
    expected = {k for k, v in raw.items() if _looks_like_setting(k, v)}
    assert set(raw["settings"]) == expected
    assert all(v == f"@{k}" for k, v in raw["settings"].items())
    assert raw["initialize"][0] == "$common.bundle_settings.check_settings(@settings)"


@pytest.mark.parametrize("name", ALL_BUNDLES)
def test_shipped_settings_pass(name: str) -> None:
    for files in (["train.json"], ["train.json", "evaluate.json"], ["inference.json"]):
        parser = ConfigParser()
        parser.read_config([str(BUNDLES / name / "configs" / f) for f in files])
        settings = {k: parser.get_parsed_content(f"settings#{k}") for k in parser["settings"]
                    if k != "class_names" or not str(parser["class_names"]).startswith("$common")}
        assert check_settings(settings) is settings


def test_every_rule_is_used_by_some_bundle() -> None:
    used = set()
    for name in ALL_BUNDLES:
        for config in ("train.json", "inference.json", "evaluate.json"):
            raw = json.loads((BUNDLES / name / "configs" / config).read_text())
            used |= set(raw.get("settings", {})) | {k.split("#", 1)[1] for k in raw if k.startswith("settings#")}
    assert set(RULES) - used == set()


@pytest.mark.parametrize(("flag", "expected"), [
    (["--batch_size", "abc"], "error: setting batch_size='abc' (str) is not valid: expected an integer >= 1"),
], ids=["batch_size"])  # the in-process checks of every kind are in test_resume.py
def test_monai_bundle_run_refuses_a_bad_setting_in_one_line(tmp_path, flag: list[str], expected: str) -> None:
    """What a user typing the README's train command with a bad value sees: one line, status 2, no traceback."""
    import os
    import subprocess
    import sys

    configs = BUNDLES / "chest_xray_classification" / "configs"
    env = {k: v for k, v in os.environ.items() if k != "MEDXFER_DEBUG"}
    result = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", str(configs / "train.json"),
                             "--meta_file", str(configs / "metadata.json"), "--bundle_root", str(tmp_path),
                             "--dataset_dir", str(tmp_path), *flag], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert lines == [expected + " (override it with --" + flag[0][2:] + " VALUE)"]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "models").exists()
