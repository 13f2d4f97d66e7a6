"""A progress bar over a grid's cells: done / total, the cell running, its result, and an ETA from this session.

Each finished cell is also logged as one INFO line (``cell 3/12 done: <id> 0.8123 in 01:05 (ETA 09:45)``), the
summary that remains on the console when the bar is hidden (not a terminal) or a run's own lines are
(:func:`common.bundle_logs.quiet_bundle_logs`).

tqdm's own ETA would count cells skipped because they had already finished; here the estimate is the mean time of
the cells run in this session times the cells left.
"""

from __future__ import annotations

import logging
import math
import sys
from types import TracebackType
from typing import TextIO

from tqdm import tqdm

__all__ = ["CellProgress"]

logger = logging.getLogger(__name__)

# tqdm puts ", " before a non-empty postfix: "cells: 3/12 |##  | [01:05, running c3 | ETA 08:40]".
_BAR_FORMAT = "{desc}: {n_fmt}/{total_fmt} |{bar}| [{elapsed}{postfix}]"


class CellProgress:
    """Show grid cells done / total on stderr, with the ETA of the rest.

    Args:
        total: cells in the grid, finished ones included.
        already_done: cells finished before this session (skipped, not timed).
        desc: label in front of the bar.
        file: stream to draw on; stderr by default.
        disable: ``None`` (default) hides the bar when ``file`` is not a terminal, as tqdm does.

    Raises:
        ValueError: ``already_done`` is not in ``[0, total]``.

    Example:
        >>> with CellProgress(total=12, already_done=4) as progress:  # doctest: +SKIP
        ...     progress.start("chest-densenet121-imagenet-none-ft-s0")
        ...     progress.finish("chest-densenet121-imagenet-none-ft-s0", seconds=61.5, value=0.812)
    """

    def __init__(
        self,
        total: int,
        already_done: int = 0,
        desc: str = "cells",
        file: TextIO | None = None,
        disable: bool | None = None,
    ) -> None:
        if total < 0 or not 0 <= already_done <= total:
            raise ValueError(f"already_done must be between 0 and total ({total}); found {already_done}")
        self.total, self.already_done = int(total), int(already_done)
        self.session_seconds: list[float] = []
        self._status = f"{already_done} already done" if already_done else ""
        self._bar = tqdm(total=self.total, initial=self.already_done, desc=desc, file=file or sys.stderr,
                         disable=disable, bar_format=_BAR_FORMAT, dynamic_ncols=True)
        self._refresh()

    @property
    def done(self) -> int:
        """Cells finished, including those done before this session."""
        return self.already_done + len(self.session_seconds)

    @property
    def eta_seconds(self) -> float | None:
        """Cells left times the mean time of the cells run in this session; ``None`` before the first one ends."""
        if not self.session_seconds:
            return None
        return (self.total - self.done) * math.fsum(self.session_seconds) / len(self.session_seconds)

    def start(self, cell_id: str) -> None:
        """Show that ``cell_id`` is running."""
        self._status = f"running {cell_id}"
        self._refresh()

    def finish(self, cell_id: str, seconds: float, value: float | None = None) -> None:
        """Count ``cell_id`` as done after ``seconds``; ``value`` (its metric) is shown, ``None`` shown as failed.

        Logs the cell's one-line summary at INFO.
        """
        self.session_seconds.append(float(seconds))
        result = "failed" if value is None else f"{value:.4f}"
        self._status = f"{cell_id} {result} in {tqdm.format_interval(seconds)}"
        self._bar.update(1)
        self._refresh()
        logger.info("cell %d/%d done: %s (ETA %s)", self.done, self.total, self._status,
                    tqdm.format_interval(self.eta_seconds or 0.0))

    def close(self) -> None:
        """Finish the bar's line."""
        self._bar.close()

    def _refresh(self) -> None:
        eta = self.eta_seconds
        parts = [self._status] if self._status else []
        parts.append(f"ETA {'?' if eta is None else tqdm.format_interval(eta)}")
        self._bar.set_postfix_str(" | ".join(parts))

    def __enter__(self) -> CellProgress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
