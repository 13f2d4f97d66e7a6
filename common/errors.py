"""Typed errors raised for user-facing problems (bad data, bad configuration, missing weights, unwritable output),
and the one way every command line reports them.

Every message names the file, row or key at fault, what was expected and what was found, so a
command-line run can print it as one readable line: ``error: <message>``, exit status 2. The full
traceback is shown with ``--debug`` or the environment variable ``MEDXFER_DEBUG=1``.
"""

from __future__ import annotations

import atexit
import errno as errno_codes
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any

__all__ = ["MedxferError", "DataError", "ConfigError", "WeightsError", "OutputError", "StaleCacheError", "DEBUG_ENV",
           "debug_enabled", "find_user_error", "format_user_error", "user_message", "run_command",
           "install_excepthook"]  # fmt: skip

#: Environment variable that makes every command show the full traceback of a user error.
DEBUG_ENV = "MEDXFER_DEBUG"

#: Error numbers that only a full, read-only or over-quota file system gives: an environment fault, not a bug.
_FILE_SYSTEM_FAULTS = frozenset({errno_codes.ENOSPC, errno_codes.EROFS, errno_codes.EDQUOT, errno_codes.EFBIG})
#: ``common.errors.DataError: `` at the start of a traceback's last line.
_QUALIFIED_NAME = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception): ")


class MedxferError(Exception):
    """Base class of every error medxfer raises on purpose."""


class DataError(MedxferError, ValueError):
    """A dataset file, row, label or image is missing, unreadable or not what was expected."""


class ConfigError(MedxferError, ValueError):
    """A configuration value (strategy, architecture, key, path) is unknown or invalid."""


class StaleCacheError(DataError):
    """A prepared-image cache does not match the bundle using it: built with other preprocessing settings, from
    files changed since, for other datalist items, incomplete, or not a cache at all (the message says which)."""


class WeightsError(MedxferError, RuntimeError):
    """Pretrained weights are missing, unreadable or do not fit the network."""


class OutputError(MedxferError, OSError):
    """An output could not be written: read-only or full file system, a path below a regular file, no permission.

    ``str(err)`` is ``"cannot <operation> <path>: <reason>"``; ``errno`` and ``filename`` are those of the
    ``OSError`` it wraps, so ``except OSError`` handlers keep working.

    Example:
        >>> str(OutputError("write", "/x/y.json", OSError(30, "Read-only file system")))
        'cannot write /x/y.json: Read-only file system'
    """

    def __init__(self, operation: str, path: str | os.PathLike | None, reason: OSError | str,
                 errno: int | None = None) -> None:  # fmt: skip
        if isinstance(reason, OSError):
            errno = reason.errno if errno is None else errno
            reason = reason.strerror or str(reason)
        super().__init__(errno, reason, None if path is None else os.fspath(path))
        self.operation = operation

    def __str__(self) -> str:
        where = "" if self.filename is None else f" {self.filename}"
        return f"cannot {self.operation}{where}: {self.strerror}"

    def __reduce__(self) -> tuple[type, tuple]:
        return type(self), (self.operation, self.filename, self.strerror, self.errno)


def debug_enabled() -> bool:
    """Whether ``MEDXFER_DEBUG`` asks for full tracebacks (any value but empty, ``0``, ``false``, ``no``)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception it was raised from or during (``__cause__`` first, then ``__context__``)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        todo += [current.__cause__, current.__context__]
    return seen


def find_user_error(exc: BaseException) -> MedxferError | None:
    """The :class:`MedxferError` behind ``exc``, unwrapping the chains MONAI and ignite add.

    MONAI wraps an error raised while evaluating a config item (``RuntimeError: Failed to evaluate
    ConfigExpression ...`` ``from`` ours), so ``exc`` itself is often not ours. A bare ``OSError`` that only a
    full, read-only or over-quota file system gives becomes an :class:`OutputError`. Returns ``None`` for
    anything else (a bug: its traceback must be seen).
    """
    chain = _chain(exc)
    for current in chain:
        if isinstance(current, MedxferError):
            return current
    for current in chain:
        if isinstance(current, OSError) and current.errno in _FILE_SYSTEM_FAULTS:
            filename = current.filename if isinstance(current.filename, str | os.PathLike) else None
            return OutputError("write", filename, current)
    return None


def user_message(exc: BaseException) -> str:
    """One line describing ``exc``: the message of the user error behind it, else ``Type: message``."""
    err = find_user_error(exc)
    text = str(err) if err is not None else f"{type(exc).__name__}: {exc}"
    if "Traceback (most recent call last)" in text:
        # torch re-raises a DataLoader worker's error with the worker's traceback as message: keep its last line.
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = _QUALIFIED_NAME.sub("", last.strip(), count=1)
    return " ".join(text.split())


def format_user_error(err: BaseException) -> str:
    """The line a command prints for a user error: ``error: <message>`` (no newline, never several lines)."""
    return f"error: {user_message(err)}"


def run_command(command: Callable[[], int], debug: bool = False) -> int:
    """Run a command-line ``command`` and return its exit status; a user error prints one line and returns 2.

    Anything that is not a user error (see :func:`find_user_error`) propagates with its traceback. With
    ``debug`` (``--debug``) or ``MEDXFER_DEBUG=1`` the traceback of a user error is printed before its line.

    Example:
        >>> sys.exit(run_command(lambda: main_body(args), debug=args.debug))  # doctest: +SKIP
    """
    try:
        return command()
    except Exception as exc:
        err = find_user_error(exc)
        if err is None:
            raise
        if debug or debug_enabled():
            traceback.print_exception(exc)
        sys.stdout.flush()
        sys.stderr.write(format_user_error(err) + "\n")
        sys.stderr.flush()
        return 2


def install_excepthook() -> None:
    """Make an uncaught user error end the process with one line on stderr and exit status 2.

    For ``python -m monai.bundle run ...`` of our bundles, whose configs ``import common``: MONAI does not
    catch our errors, so they would end as a long traceback of config-evaluation wrappers and status 1.
    Only an exception whose chain holds a :class:`MedxferError` (or a full / read-only file system) is
    handled, and only while ``MEDXFER_DEBUG`` is unset; everything else goes to the previous hook unchanged.

    An excepthook runs after the interpreter has decided on status 1, and ``SystemExit`` raised inside it is
    only reported, not obeyed. So the hook runs the ``atexit`` handlers itself (logging flushes its files,
    multiprocessing stops its workers, temporary folders are removed), flushes stdout and stderr, and ends
    the process with ``os._exit(2)``. Object finalisers and non-daemon threads are not waited for: the run
    has failed anyway. Installing twice keeps one hook.
    """
    previous = sys.excepthook
    if getattr(previous, "_medxfer", False):
        return

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        err = find_user_error(exc) if isinstance(exc, Exception) else None
        if err is None or debug_enabled():
            previous(exc_type, exc, tb)
            return
        try:
            sys.stdout.flush()
            sys.stderr.write(format_user_error(err) + "\n")
            sys.stderr.flush()
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(2)

    hook._medxfer = True  # type: ignore[attr-defined]
    sys.excepthook = hook
    _drop_user_error_tracebacks_from_logs()


def _drop_user_error_tracebacks_from_logs() -> None:
    """Log records about a user error keep their message but lose the traceback (unless debugging).

    ignite logs "Engine run is terminating due to exception" and MONAI's ``StatsHandler`` logs the exception
    with its traceback before re-raising it, so a bad image found mid-epoch printed six tracebacks above the
    one-line error. A log record factory (it survives the ``logging.conf`` every bundle run applies, which
    replaces handlers and their filters) drops ``exc_info`` from exactly those records.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_medxfer", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, Exception) and find_user_error(exc) is not None and not debug_enabled():
            record.exc_info, record.exc_text = None, None
        return record

    factory._medxfer = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
