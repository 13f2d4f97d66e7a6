"""One error path: user errors found behind MONAI's wrappers, printed as one line with status 2 by every command,
``python -m monai.bundle run`` of a config that imports common included; tracebacks with MEDXFER_DEBUG=1."""

from __future__ import annotations

import errno
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from common.errors import (
    ConfigError,
    DataError,
    OutputError,
    find_user_error,
    format_user_error,
    run_command,
    user_message,
)

REPO = Path(__file__).resolve().parents[1]


def wrapped_like_monai(err: Exception) -> Exception:
    """An error raised while handling MONAI's ``RuntimeError`` raised from ``err``: __context__, then __cause__."""
    try:
        try:
            raise err
        except Exception as inner:
            raise RuntimeError("Failed to evaluate ConfigExpression: '$common.load(...)'") from inner
    except RuntimeError:
        try:
            raise KeyError("raised while handling it")
        except KeyError as last:
            return last


def test_the_user_error_is_found_behind_wrappers() -> None:
    err = DataError("/data/x.npz, key 'train_labels', row 3: label value 2 is not 0 or 1")
    wrapped = wrapped_like_monai(err)
    assert find_user_error(wrapped) is err
    assert format_user_error(wrapped) == f"error: {err}"
    assert find_user_error(RuntimeError("a bug")) is None


def test_a_chain_with_a_cycle_ends() -> None:
    first, second = RuntimeError("a"), RuntimeError("b")
    first.__context__, second.__context__ = second, first
    assert find_user_error(first) is None


def test_a_full_disk_is_a_user_error_a_missing_file_is_not() -> None:
    found = find_user_error(OSError(errno.ENOSPC, "No space left on device", "/out/x.png"))
    assert isinstance(found, OutputError) and str(found) == "cannot write /out/x.png: No space left on device"
    assert find_user_error(FileNotFoundError(errno.ENOENT, "No such file or directory", "x")) is None


def test_a_dataloader_worker_traceback_becomes_its_last_line() -> None:
    message = ("Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
               '  File "x.py", line 1, in f\ncommon.errors.DataError: /d/img.png: cannot read the image\n')  # fmt: skip
    assert user_message(DataError(message)) == "/d/img.png: cannot read the image"
    assert user_message(ConfigError("two\nlines")) == "two lines"


def test_output_error_is_an_oserror_that_pickles() -> None:
    err = OutputError("write", "/x/y.json", OSError(errno.EROFS, "Read-only file system"))
    again = pickle.loads(pickle.dumps(err))
    assert isinstance(again, OSError) and again.errno == errno.EROFS and again.filename == "/x/y.json"
    assert str(again) == str(err) == "cannot write /x/y.json: Read-only file system"


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_run_command_prints_one_line_and_returns_2(
    debug: bool, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MEDXFER_DEBUG", raising=False)

    def fails() -> int:
        raise wrapped_like_monai(ConfigError("unknown strategy 'lpft'; did you mean 'lp_ft'?"))

    assert run_command(fails, debug=debug) == 2
    err = capsys.readouterr().err
    assert err.endswith("error: unknown strategy 'lpft'; did you mean 'lp_ft'?\n")
    assert ("Traceback" in err) == debug
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        run_command(lambda: 1 // 0)


def run_monai_bundle(tmp_path: Path, expression: str, **env: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"imports": ["$import common", "$import common.errors"], "run": [expression]},
                                 indent=4))  # fmt: skip
    (tmp_path / "metadata.json").write_text(json.dumps({"version": "0.1.0"}))
    environment = {k: v for k, v in os.environ.items() if k != "MEDXFER_DEBUG"}
    environment |= {"PYTHONPATH": str(REPO), **env}
    return subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", str(config),
                           "--meta_file", str(tmp_path / "metadata.json")],
                          cwd=tmp_path, env=environment, capture_output=True, text=True, check=False, timeout=300)


RAISE_CONFIG_ERROR = "$(_ for _ in ()).throw(common.errors.ConfigError('bad value 7 for key x; choose from: 1, 2'))"


def test_monai_bundle_run_prints_our_error_as_one_line_with_status_2(tmp_path: Path) -> None:
    result = run_monai_bundle(tmp_path, RAISE_CONFIG_ERROR)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: bad value 7 for key x; choose from: 1, 2"]
    assert "Traceback" not in result.stderr and result.stderr.rstrip().endswith(errors[0])


def test_monai_bundle_run_shows_the_traceback_with_medxfer_debug(tmp_path: Path) -> None:
    result = run_monai_bundle(tmp_path, RAISE_CONFIG_ERROR, MEDXFER_DEBUG="1")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "Failed to evaluate ConfigExpression" in result.stderr
    assert "common.errors.ConfigError: bad value 7 for key x" in result.stderr


def test_monai_bundle_run_keeps_the_traceback_of_other_errors(tmp_path: Path) -> None:
    result = run_monai_bundle(tmp_path, "$1 // 0")
    assert result.returncode == 1 and "ZeroDivisionError" in result.stderr and "Traceback" in result.stderr


def test_importing_common_as_a_library_leaves_the_excepthook_alone() -> None:
    code = "import sys; hook = sys.excepthook; import common, common.errors; print(sys.excepthook is hook)"
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)},
                            capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
    assert result.stdout.strip() == "True"


def log_then_raise_user_error() -> None:
    """What ignite and MONAI's StatsHandler do with an error raised mid-epoch: log it with its traceback, re-raise."""
    import logging

    try:
        raise DataError("images/a.png: not a readable image file")
    except DataError as err:
        logging.getLogger("ignite.engine.engine.SupervisedTrainer").exception("Exception: %s", err)
        raise


def test_monai_bundle_run_logs_a_user_error_without_its_traceback(tmp_path: Path) -> None:
    expression = "$__import__('tests.test_errors', fromlist=['_']).log_then_raise_user_error()"
    result = run_monai_bundle(tmp_path, expression)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Exception: images/a.png: not a readable image file" in result.stderr  # the log line stays
    assert "Traceback" not in result.stderr  # MEDXFER_DEBUG=1 keeps tracebacks: see the test above
