"""Tests of common.bundle_logs: bundle INFO lines leave the console inside the block, go to the detail file, and
every logger is as it was afterwards, even though a bundle run re-applies its logging.conf in between."""

from __future__ import annotations

import io
import logging
import logging.config
from pathlib import Path

import pytest

from common.bundle_logs import BundleInfoFilter, quiet_bundle_logs

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "chest_xray_classification"
LOGGING_CONF = BUNDLE / "configs" / "logging.conf"


def _record(name: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 0, "message", None, None)


@pytest.mark.parametrize(
    ("name", "level", "shown"),
    [
        ("monai.handlers.StatsHandler", logging.INFO, False),
        ("ignite.engine.engine.SupervisedTrainer", logging.INFO, False),
        ("common.engines.report", logging.INFO, False),
        ("common.finetune.base", logging.DEBUG, False),
        ("common.engines.report", logging.WARNING, True),
        ("monai.handlers.StatsHandler", logging.ERROR, True),
        ("common.experiments.runner", logging.INFO, True),
        ("common.experiments", logging.INFO, True),
        ("common.demo", logging.INFO, True),
        ("commonplace", logging.INFO, True),
        ("matplotlib", logging.INFO, True),
    ],
    ids=["stats-iteration", "ignite-engine", "per-class-table", "debug", "warning", "error", "runner",
         "experiments", "demo", "prefix-is-not-a-parent", "other-library"],
)
def test_filter_hides_bundle_info_only(name: str, level: int, shown: bool) -> None:
    assert BundleInfoFilter().filter(_record(name, level)) is shown


@pytest.fixture
def monai_own_logger():
    """A MONAI-style logger: its own handler, no propagation (as monai.apps.get_logger makes them)."""
    stream = io.StringIO()
    logger = logging.getLogger("monai.test_bundle_logs")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.propagate, logger.level = False, logging.INFO
    yield logger, stream
    logger.removeHandler(handler)


def test_quiet_block_hides_and_restores(tmp_path: Path, monai_own_logger, capsys: pytest.CaptureFixture[str]) -> None:
    own, own_stream = monai_own_logger
    common_top = logging.getLogger("common")
    before = (common_top.propagate, list(common_top.handlers), list(logging.root.handlers), logging.root.level)
    console, detail = io.StringIO(), tmp_path / "detail.log"
    with quiet_bundle_logs(detail, stream=console):
        logging.config.fileConfig(LOGGING_CONF, disable_existing_loggers=False)  # what every bundle run does
        own.info("Epoch: 1/6, Iter: 1/8 -- train_loss: 0.69")
        own.warning("stats warning")
        logging.getLogger("common.engines.report").info("| Atelectasis | 0.5 |")
        logging.getLogger("ignite.engine.engine.SupervisedTrainer").info("Engine run finished")
        logging.getLogger("common.experiments.runner").info("cell 1/12 done")
    assert own_stream.getvalue() == "stats warning\n"
    shown = console.getvalue()
    assert "cell 1/12 done" in shown
    assert "Atelectasis" not in shown and "Engine run finished" not in shown
    assert capsys.readouterr().out == ""  # nothing reached the root handler logging.conf installed (stdout)
    written = detail.read_text()
    for line in ("Iter: 1/8", "stats warning", "Atelectasis", "Engine run finished", "cell 1/12 done"):
        assert line in written, line
    assert (common_top.propagate, list(common_top.handlers), list(logging.root.handlers),
            logging.root.level) == before
    own.info("after the block")
    assert own_stream.getvalue().endswith("after the block\n")


def test_quiet_block_restores_after_an_error(monai_own_logger) -> None:
    own, own_stream = monai_own_logger
    with pytest.raises(RuntimeError, match="cell failed"), quiet_bundle_logs(stream=io.StringIO()):
        raise RuntimeError("cell failed")
    assert logging.getLogger("ignite").propagate and not own.handlers[0].filters
    own.info("shown again")
    assert own_stream.getvalue() == "shown again\n"
