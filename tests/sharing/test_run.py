"""run: refuses a bundle whose audit flags anything, whose logging file would run code or whose root holds importable
code (none of it runs); runs a clean one and returns its status."""

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
    _no_process(monkeypatch)
    assert main(["run", str(bundle), "--", "--config_file", "['configs/inference.json','extra.json']"]) == 1


LOGGING_HEAD = "[loggers]\nkeys=root\n\n[handlers]\nkeys=h\n\n[formatters]\nkeys=\n\n[logger_root]\nlevel=INFO\n" \
               "handlers=h\n\n"


def _interpolated_payload(marker: Path) -> str:
    """A logging.conf that MONAI 1.6.1's own check accepts and fileConfig runs: ``%(p)s`` is substituted before eval."""
    return (LOGGING_HEAD + "[handler_h]\nclass=StreamHandler\n"
            f"p=\", __import__('pathlib').Path('{marker}').write_text('ran'), \"\nargs=(\"%(p)s\",)\n")


def _no_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_module.subprocess, "run", lambda *a, **k: pytest.fail("ran a refused bundle"))


@pytest.mark.parametrize("file, args", [
    ("configs/logging.conf", []),
    ("configs/other.conf", []),
    ("logging.conf", ["--config_file", "extra.json"]),  # MONAI's default: logging.conf beside the first config
    ("site.conf", ["--config_file", "configs/inference.json", "--logging_file", "site.conf"]),
], ids=["configs-logging", "configs-other", "beside-outside-config", "logging-file-argument"])
def test_logging_file_that_runs_code_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str], file: str, args: list[str]) -> None:
    bundle, marker = _clean(tmp_path), tmp_path / "pwned"
    (bundle / "extra.json").write_text((bundle / "configs" / "inference.json").read_text())
    (bundle / file).write_text(_interpolated_payload(marker))
    _no_process(monkeypatch)
    status = main(["run", str(bundle), "--", *(args or ["--config_file", "configs/inference.json"])])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1, err
    assert f"{file}: [handler_h] args=" in err[0] and "uses %(name)s interpolation" in err[0], err[0]
    assert err[0].endswith("--trust runs it anyway") and not marker.exists()


def test_formatter_named_by_bare_name_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """``class=Formatter`` is resolved with ``__import__('Formatter')``: a Formatter.py in the bundle would run."""
    bundle = _clean(tmp_path)
    (bundle / "configs" / "logging.conf").write_text(
        LOGGING_HEAD.replace("keys=\n", "keys=f\n") + "[handler_h]\nclass=StreamHandler\nargs=(sys.stdout,)\n\n"
        "[formatter_f]\nclass=Formatter\n")
    _no_process(monkeypatch)
    assert main(["run", str(bundle), "--", "--config_file", "configs/inference.json"]) == 1
    assert "configs/logging.conf: [formatter_f] class='Formatter' is a bare name" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["torch/__init__.py", "monai.py", "Formatter.py", "common/__init__.py"],
                         ids=["package", "module", "formatter-module", "common"])
def test_importable_code_outside_scripts_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str], name: str) -> None:
    bundle, marker = _clean(tmp_path), tmp_path / "pwned"
    (bundle / name).parent.mkdir(parents=True, exist_ok=True)
    (bundle / name).write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    _no_process(monkeypatch)
    assert main(["run", str(bundle), "--", "--config_file", "configs/inference.json"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"importable code outside scripts/: {name} " in err[0], err
    assert not marker.exists()


def test_config_named_in_an_args_file_is_audited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = _clean(tmp_path)
    (bundle / "extra.json").write_text(json.dumps({"run": ["$__import__('os').system('id')"]}))
    (bundle / "args.json").write_text(json.dumps({"config_file": ["configs/inference.json", "extra.json"]}))
    _no_process(monkeypatch)
    assert main(["run", str(bundle), "--", "--args_file", "args.json"]) == 1
    (bundle / "args.json").write_text(json.dumps({"config_file": "configs/inference.json",
                                                  "numbers": "$__import__('os').system('id')"}))
    assert main(["run", str(bundle), "--", "--args_file", "args.json"]) == 1  # its overrides are the bundle's


def test_trust_runs_a_logging_payload_monai_itself_lets_through(tmp_path: Path) -> None:
    """The logging refusal matters: MONAI 1.6.1 applies this file (its own check passes it) and the payload runs."""
    bundle, marker = _clean(tmp_path), tmp_path / "pwned"
    (bundle / "configs" / "logging.conf").write_text(_interpolated_payload(marker))
    main(["run", str(bundle), "--trust", "--", "--config_file", "configs/inference.json", "--out",
          str(tmp_path / "out.json")])
    assert marker.read_text() == "ran"


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
