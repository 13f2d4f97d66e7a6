"""run: refuses a bundle whose audit flags anything (none of it runs); runs a clean one and returns its status."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from common.sharing import run as run_module
from common.sharing.__main__ import main
from common.sharing.errors import SharingError


def _bundle(root: Path, config: dict) -> Path:
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "inference.json").write_text(json.dumps(config, indent=4))
    return root


def _hostile(tmp_path: Path) -> tuple[Path, Path]:
    """A bundle whose inference writes a marker file through ``open``: what a payload would do."""
    marker = tmp_path / "pwned"
    bundle = _bundle(tmp_path / "hostile", {"imports": ["$import os"], "marker": str(marker),
                                            "run": ["$open(@marker, 'w').write('ran')"]})
    return bundle, marker


def _clean(tmp_path: Path) -> Path:
    """A bundle that sums three numbers and writes the result through medxfer's own ``common.io``."""
    return _bundle(tmp_path / "clean", {
        "imports": ["$import common", "$import common.io"], "out": "", "numbers": [1, 2, 3],
        "run": ["$common.io.atomic_write_json(@out, {'sum': sum(@numbers)})"]})


def test_hostile_bundle_is_refused_and_nothing_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    bundle, marker = _hostile(tmp_path)

    def no_process(*args: object, **kwargs: object) -> None:
        raise AssertionError("a refused bundle must not start monai.bundle run")

    monkeypatch.setattr(run_module.subprocess, "run", no_process)
    status = main(["run", str(bundle), "--", "--config_file", "configs/inference.json"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1, err
    assert "the audit flags 1 finding (inspect with python -m common.sharing audit" in err[0]
    assert "--trust runs it anyway" in err[0]
    assert not marker.exists()


def test_config_file_outside_configs_is_audited_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = _clean(tmp_path)
    (bundle / "extra.json").write_text(json.dumps({"run": ["$__import__('os').system('id')"]}))
    monkeypatch.setattr(run_module.subprocess, "run", lambda *a, **k: pytest.fail("ran a refused bundle"))
    assert main(["run", str(bundle), "--", "--config_file", "['configs/inference.json','extra.json']"]) == 1


def test_trust_runs_the_flagged_bundle(tmp_path: Path) -> None:
    """The refusal above matters: with --trust the same bundle's payload does run."""
    bundle, marker = _hostile(tmp_path)
    assert main(["run", str(bundle), "--trust", "--", "--config_file", "configs/inference.json"]) == 0
    assert marker.read_text() == "ran"


def test_clean_bundle_runs(tmp_path: Path) -> None:
    bundle = _clean(tmp_path)
    out = tmp_path / "result.json"
    assert main(["run", str(bundle), "--", "--config_file", "configs/inference.json", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == {"sum": 6}


def test_child_starts_in_the_bundle_with_it_on_pythonpath_and_its_status_is_returned(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = _clean(tmp_path)
    seen = {}

    def fake_run(command: list[str], cwd: Path, env: dict[str, str], check: bool) -> argparse.Namespace:
        seen.update(command=command, cwd=cwd, pythonpath=env["PYTHONPATH"].split(":"))
        return argparse.Namespace(returncode=7)

    monkeypatch.setattr(run_module.subprocess, "run", fake_run)
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    assert main(["run", str(bundle), "--", "--config_file", "configs/inference.json", "--out", "x.json"]) == 7
    assert seen["command"][1:] == ["-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
                                   "--out", "x.json"]
    assert seen["cwd"] == bundle and seen["pythonpath"] == [str(bundle.resolve()), "/elsewhere"]


@pytest.mark.parametrize("argv,trust,monai_args", [
    (["b", "--", "--config_file", "c.json"], False, ["--config_file", "c.json"]),
    (["b", "--trust", "--", "--config_file", "c.json"], True, ["--config_file", "c.json"]),
    (["--trust", "b", "--", "--x", "1"], True, ["--x", "1"]),
    (["b", "--config_file", "c.json"], False, ["--config_file", "c.json"]),
], ids=["plain", "trust_after", "trust_before", "no_separator"])
def test_our_options_before_the_separator_monai_after(argv: list[str], trust: bool, monai_args: list[str]) -> None:
    parser = argparse.ArgumentParser()
    run_module.add_arguments(parser)
    assert run_module._split(parser.parse_args(argv)) == (trust, monai_args)


def test_unknown_option_before_separator_is_a_usage_error() -> None:
    parser = argparse.ArgumentParser()
    run_module.add_arguments(parser)
    with pytest.raises(SharingError, match="unknown option.* --force before '--'; choose from: --trust"):
        run_module._split(parser.parse_args(["b", "--force", "--", "--x"]))
