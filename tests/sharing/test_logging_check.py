"""logging_conf_problem: every way a logging.conf makes fileConfig run code is refused, MONAI's own check included."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.sharing.logging_check import logging_conf_problem, logging_conf_problems

LOGGING_HEAD = "[loggers]\nkeys=root\n\n[handlers]\nkeys=h\n\n[formatters]\nkeys=f\n\n[logger_root]\nlevel=INFO\n" \
               "handlers=h\n\n"

# fileConfig eval()s handler class/args/kwargs and imports a formatter class; each of these would run code.
HOSTILE_LOGGING = {
    "class-eval": "[handler_h]\nclass=eval\nargs=(\"__import__('os').system('x')\",)\n",
    "class-call": "[handler_h]\nclass=__import__('os').system('x')\n",
    "class-os": "[handler_h]\nclass=os.system\nargs=('x',)\n",
    "args-call": "[handler_h]\nclass=StreamHandler\nargs=(__import__('os').system('x'),)\n",
    "kwargs-call": "[handler_h]\nclass=StreamHandler\nkwargs={'stream': open('/etc/passwd')}\n",
    "args-dunder": "[handler_h]\nclass=StreamHandler\nargs=(().__class__.__bases__,)\n",
    "args-lambda": "[handler_h]\nclass=StreamHandler\nargs=((lambda: 0)(),)\n",
    "formatter-class": "[handler_h]\nclass=StreamHandler\n\n[formatter_f]\nclass=subprocess.Popen\n",
    "default-args": "[DEFAULT]\nargs=(__import__('os').system('x'),)\n\n[handler_h]\nclass=StreamHandler\n",
    "interpolated-args": "[handler_h]\nclass=StreamHandler\np=\", __import__('os').system('x'), \"\n"
                         "args=(\"%(p)s\",)\n",
    "interpolated-class": "[handler_h]\nc=os.system\nclass=%(c)s\n",
    "formatter-bare-name": "[handler_h]\nclass=StreamHandler\nargs=(sys.stdout,)\n\n[formatter_f]\nclass=Formatter\n",
}
SAFE_LOGGING = {
    "stream": "[handler_h]\nclass=StreamHandler\nlevel=INFO\nargs=(sys.stdout,)\n",
    "file": "[handler_h]\nclass=FileHandler\nargs=('train.log', 'a')\n",
    "rotating": "[handler_h]\nclass=logging.handlers.RotatingFileHandler\nargs=('run.log',)\n"
                "kwargs={'maxBytes': 1000, 'backupCount': 2}\n",
    "formatter": "[handler_h]\nclass=StreamHandler\nargs=(sys.stderr,)\n\n[formatter_f]\nclass=logging.Formatter\n"
                 "format=%(asctime)s %(message)s\n",
}


@pytest.mark.parametrize("body", HOSTILE_LOGGING.values(), ids=HOSTILE_LOGGING.keys())
def test_hostile_logging_conf_is_refused(tmp_path: Path, body: str) -> None:
    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "logging.conf"
    path.write_text(LOGGING_HEAD + body)
    problem = logging_conf_problem(path, tmp_path)
    assert problem is not None and problem.startswith("configs/logging.conf: [")


@pytest.mark.parametrize("body", SAFE_LOGGING.values(), ids=SAFE_LOGGING.keys())
def test_plain_logging_conf_is_accepted(tmp_path: Path, body: str) -> None:
    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "logging.conf"
    path.write_text(LOGGING_HEAD + body)
    assert logging_conf_problem(path, tmp_path) is None


def test_every_logging_conf_monai_refuses_is_refused_here(tmp_path: Path) -> None:
    """MONAI's own check is the floor: what it refuses, verify refuses (the two interpolation/import cases more)."""
    from monai.bundle.workflows import _reject_executable_logging_config

    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "logging.conf"
    for body in [*HOSTILE_LOGGING.values(), *SAFE_LOGGING.values()]:
        path.write_text(LOGGING_HEAD + body)
        try:
            _reject_executable_logging_config(str(path))
        except ValueError:
            assert logging_conf_problem(path, tmp_path) is not None, body




def test_every_conf_under_configs_and_each_extra_file_is_checked_once(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "logging.conf").write_text(LOGGING_HEAD + SAFE_LOGGING["stream"])
    (tmp_path / "configs" / "b.conf").write_text(LOGGING_HEAD + HOSTILE_LOGGING["class-os"])
    (tmp_path / "site.conf").write_text(LOGGING_HEAD + HOSTILE_LOGGING["formatter-bare-name"])
    extra = [tmp_path / "site.conf", tmp_path / "configs" / ".." / "configs" / "b.conf"]
    files, problems = logging_conf_problems(tmp_path, extra)
    assert [f.name for f in files] == ["b.conf", "logging.conf", "site.conf"]
    assert [p.split(":")[0] for p in problems] == ["configs/b.conf", "site.conf"]
