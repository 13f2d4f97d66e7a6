"""What the console shows while bundles run in a loop (the demo, a grid): progress, not every iteration.

A bundle run logs at INFO through three kinds of loggers: MONAI's ``StatsHandler`` (one line per training
iteration, two per validation, through ``monai.handlers.StatsHandler``, a logger with its own stdout handler
that does not propagate), ignite's engines (``ignite.engine.engine.SupervisedTrainer`` /
``SupervisedEvaluator``: run, epoch, learning-rate and best-metric lines) and our own ``common.*`` modules
(parameter groups, weight transfer, the per-class table of every evaluation). That is right for one run and
far too much for twelve: the demo printed about 2,250 lines, 744 of them per-iteration losses.

:func:`quiet_bundle_logs` keeps those INFO records off the console for the duration of a ``with`` block and
restores everything afterwards; WARNING and above still show, and so does INFO from the loggers in ``keep``
(the experiment runner, the demo). With ``detail_file``, every record, hidden or not, is also appended there.
The root logger's handlers and level, which each bundle run replaces with its own ``logging.conf``, are put back
as they were on entry.

It works on the logging side only, because a bundle's ``configs/logging.conf`` is re-applied by every
``ConfigWorkflow`` (which replaces the root logger's handlers): the ``common`` and ``ignite`` loggers stop
propagating to root and get a console handler of their own that filters; MONAI's own stdout handlers get the
same filter. The per-iteration losses stay in each run's TensorBoard logs (``logs/``).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import TextIO

from tqdm import tqdm

__all__ = ["HIDDEN_PREFIXES", "KEPT_PREFIXES", "BundleInfoFilter", "quiet_bundle_logs"]

#: Loggers whose INFO records a bundle run emits (and their children).
HIDDEN_PREFIXES = ("common", "ignite", "monai")
#: Loggers under those that still reach the console at INFO: the loop's own progress and summaries.
KEPT_PREFIXES = ("common.cli", "common.demo", "common.experiments")
#: MONAI's default StatsHandler logger; created here if no StatsHandler has run yet, exactly as
#: ``StatsHandler.__init__`` would create it, so that its stdout handler exists and can be filtered.
STATS_HANDLER_LOGGER = "monai.handlers.StatsHandler"

_CONSOLE_FORMAT = "%(asctime)s %(levelname)s %(message)s"
_DETAIL_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _under(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


class BundleInfoFilter(logging.Filter):
    """Refuse records below WARNING from loggers under ``hidden`` unless they are under ``keep``.

    Example:
        >>> def record(name, level=logging.INFO):
        ...     return logging.LogRecord(name, level, "", 0, "message", None, None)
        >>> f = BundleInfoFilter()
        >>> f.filter(record("monai.handlers.StatsHandler")), f.filter(record("common.experiments.runner"))
        (False, True)
    """

    def __init__(self, hidden: Sequence[str] = HIDDEN_PREFIXES, keep: Sequence[str] = KEPT_PREFIXES) -> None:
        super().__init__()
        self.hidden, self.keep = tuple(hidden), tuple(keep)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING or not _under(record.name, self.hidden):
            return True
        return _under(record.name, self.keep)


class _TqdmStreamHandler(logging.StreamHandler):
    """Writes through ``tqdm.write``, so a progress bar on the same terminal is redrawn under the message."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging's own convention: report through handleError, never raise
            self.handleError(record)


def _own_handler_loggers(prefixes: Sequence[str]) -> list[logging.Logger]:
    """Existing loggers under ``prefixes`` that do not propagate and write through handlers of their own."""
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict) if _under(name, prefixes)]
    return [lg for lg in loggers if not lg.propagate and lg.handlers]


@contextmanager
def quiet_bundle_logs(
    detail_file: str | os.PathLike | None = None,
    keep: Sequence[str] = KEPT_PREFIXES,
    stream: TextIO | None = None,
) -> Iterator[None]:
    """Keep bundle runs' INFO lines off the console inside the block; restore the logging set-up afterwards.

    Args:
        detail_file: if given, every record of those loggers (INFO and up, hidden ones included) is appended
            to this file, e.g. ``demo_output/demo.log``.
        keep: logger names (and their children) whose INFO records still reach the console.
        stream: console stream (default: ``sys.stderr`` at entry).

    Example:
        >>> with quiet_bundle_logs("demo_output/demo.log"):  # doctest: +SKIP
        ...     run_grid(grid, "demo_output/grid")
    """
    console_filter = BundleInfoFilter(keep=keep)
    console = _TqdmStreamHandler(stream if stream is not None else sys.stderr)
    console.setFormatter(logging.Formatter(_CONSOLE_FORMAT))
    console.addFilter(console_filter)
    with ExitStack() as restore:
        # every ConfigWorkflow re-applies its bundle's logging.conf to the root logger: put the caller's back.
        restore.callback(_restore_root, list(logging.root.handlers), logging.root.level)
        detail: logging.Handler | None = None
        if detail_file is not None:
            detail = logging.FileHandler(detail_file, mode="a", encoding="utf-8")
            detail.setFormatter(logging.Formatter(_DETAIL_FORMAT))
            restore.callback(detail.close)
        added = [h for h in (console, detail) if h is not None]
        # ignite and common propagate to root, whose handlers every ConfigWorkflow replaces: route them here.
        for name in ("common", "ignite"):
            top = logging.getLogger(name)
            propagate = top.propagate
            top.propagate = False
            for handler in added:
                top.addHandler(handler)
            restore.callback(_undo_route, top, added, propagate)
        # MONAI's loggers write through their own stdout handlers: filter those, copy records to the file.
        if STATS_HANDLER_LOGGER not in logging.root.manager.loggerDict:
            from monai.apps import get_logger

            get_logger(STATS_HANDLER_LOGGER)
        for own in _own_handler_loggers(("monai",)):
            for handler in list(own.handlers):
                handler.addFilter(console_filter)
                restore.callback(handler.removeFilter, console_filter)
            if detail is not None:
                own.addHandler(detail)
                restore.callback(own.removeHandler, detail)
        yield


def _restore_root(handlers: list[logging.Handler], level: int) -> None:
    root = logging.root
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


def _undo_route(top: logging.Logger, added: list[logging.Handler], propagate: bool) -> None:
    for handler in added:
        top.removeHandler(handler)
    top.propagate = propagate
