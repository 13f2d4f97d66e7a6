"""Tests of common.experiments.progress: counts, the session-only ETA and what the bar prints."""

from __future__ import annotations

import io
import logging

import pytest

from common.experiments.progress import CellProgress


def test_eta_uses_only_cells_run_in_this_session() -> None:
    stream = io.StringIO()
    with CellProgress(total=6, already_done=2, file=stream, disable=False) as progress:
        assert (progress.done, progress.eta_seconds) == (2, None)
        progress.start("c2")
        progress.finish("c2", seconds=65.0, value=0.81234)
        assert (progress.done, progress.eta_seconds) == (3, 3 * 65.0)
        progress.start("c3")
        progress.finish("c3", seconds=55.0, value=None)
        assert (progress.done, progress.eta_seconds) == (4, 2 * 60.0)  # mean of 65 s and 55 s, 2 cells left
    text = stream.getvalue()
    assert "cells: 2/6" in text and "running c2 | ETA ?" in text
    assert "c2 0.8123 in 01:05 | ETA 03:15" in text
    assert "cells: 4/6" in text and "c3 failed in 00:55 | ETA 02:00" in text


def test_each_finished_cell_is_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="common.experiments.progress"), \
            CellProgress(total=3, disable=True) as progress:
        progress.finish("c0", seconds=30.0, value=0.8)
        progress.finish("c1", seconds=90.0, value=None)
    assert caplog.messages == ["cell 1/3 done: c0 0.8000 in 00:30 (ETA 01:00)",
                               "cell 2/3 done: c1 failed in 01:30 (ETA 01:00)"]


def test_disabled_when_not_a_terminal() -> None:
    stream = io.StringIO()  # not a TTY, so the default disable=None hides the bar
    with CellProgress(total=2, file=stream) as progress:
        progress.start("c0")
        progress.finish("c0", seconds=1.0, value=0.5)
        assert (progress.done, progress.eta_seconds) == (1, 1.0)
    assert stream.getvalue() == ""


@pytest.mark.parametrize(("total", "already_done"), [(3, 4), (3, -1), (-1, 0)], ids=["over", "negative", "total"])
def test_rejects_impossible_counts(total: int, already_done: int) -> None:
    with pytest.raises(ValueError, match="already_done must be between 0 and total"):
        CellProgress(total=total, already_done=already_done, disable=True)
