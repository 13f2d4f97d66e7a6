"""A bundle's ``logging.conf``: refused when ``logging.config.fileConfig`` would run code from it.

``fileConfig`` eval()s a handler's ``class``, ``args`` and ``kwargs`` and imports a formatter's ``class``, and
``monai.bundle run`` applies a bundle's ``configs/logging.conf`` before any of its configs is parsed, so this
file is code that the configs' audit never sees. :func:`logging_conf_problem` says why one file is refused;
``verify`` (check ``logging_conf``) and ``run`` (refusal before anything starts) both use it.

Example:
    >>> logging_conf_problem(Path("bundle/configs/logging.conf"), Path("bundle"))  # doctest: +SKIP
    "configs/logging.conf: [handler_h] args='(\\"%(p)s\\",)' uses %(name)s interpolation, which fileConfig ..."
"""

from __future__ import annotations

import ast
import configparser
import logging
import logging.handlers
from pathlib import Path

__all__ = ["logging_conf_problem", "logging_conf_problems"]

_LOGGING_MODULES = {"logging": logging, "logging.handlers": logging.handlers}
_STREAMS = ("sys.stdout", "sys.stderr")


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a name or attribute chain, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _class_problem(node: ast.AST, formatter: bool) -> str | None:
    dotted = _dotted(node)
    if dotted is None:
        return "is not a class name (fileConfig eval()s it)"
    module, _, attribute = dotted.rpartition(".")
    if not module:
        if formatter:  # fileConfig's _resolve() runs __import__(name) on a formatter's class
            return ("is a bare name, which fileConfig imports as a module (a Formatter.py in the working folder "
                    "would run); write logging.Formatter")
        module = "logging"  # a handler's class is eval()ed in the logging module's namespace
    resolved = getattr(_LOGGING_MODULES.get(module), attribute, None)
    if not (isinstance(resolved, type) and issubclass(resolved, logging.Handler | logging.Formatter)):
        return "is not a handler or formatter class of logging or logging.handlers"
    return None


def _literal_problem(node: ast.AST) -> str | None:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant | ast.Tuple | ast.List | ast.Dict | ast.Set | ast.Load):
            continue
        dotted = _dotted(sub) if isinstance(sub, ast.Name | ast.Attribute) else None
        if dotted and any(stream == dotted or stream.startswith(f"{dotted}.") for stream in _STREAMS):
            continue
        return f"is not a literal (a {type(sub).__name__}; only constants, containers, sys.stdout, sys.stderr)"
    return None


def _value_problem(section: str, option: str, value: str) -> str | None:
    if "%(" in value:
        return "uses %(name)s interpolation, which fileConfig substitutes before its eval()"
    try:
        node = ast.parse(value.replace("%%", "%"), mode="eval").body  # the text fileConfig evaluates
    except SyntaxError:
        return "is not a Python expression"
    if option == "class":
        return _class_problem(node, formatter=section.startswith("formatter_"))
    return _literal_problem(node)


def logging_conf_problem(path: Path, folder: Path) -> str | None:
    """Why ``logging.fileConfig`` would run code from the INI file ``path``, or None; names the file and section.

    ``fileConfig`` eval()s a handler's ``class``, ``args`` and ``kwargs`` and imports a formatter's ``class``.
    MONAI 1.6.1 checks this before applying a bundle's logging.conf (``monai.bundle.workflows.
    _reject_executable_logging_config``, GHSA-wvpx-5qmp-46g3): class in ``logging``/``logging.handlers`` and a
    Handler/Formatter subclass, args and kwargs literals plus ``sys.stdout``/``sys.stderr``. This mirrors those
    rules instead of calling that private function, and closes two ways past it found while testing it:
    it reads the raw text, while fileConfig evaluates values after ``%(name)s`` interpolation
    (``args=("%(p)s",)`` with ``p=", __import__('os').system('x'), "`` passes MONAI's check and runs), so any
    interpolation in these fields is refused; and it accepts a formatter ``class=Formatter``, which fileConfig
    resolves with ``__import__('Formatter')``, running a ``Formatter.py`` from the working folder (MONAI runs a
    bundle from its folder), so a formatter class must be written ``logging.Formatter``. Every section is
    checked, ``[DEFAULT]`` included (its options reach every section).

    Args:
        path: the INI file.
        folder: the bundle root; the message names ``path`` relative to it (absolute when outside it).
    """
    resolved, root = path.resolve(), folder.resolve()
    name = resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else str(path)
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(path.read_text(encoding="utf-8"), source=name)
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        return f"{name}: not a readable INI file ({' '.join(str(exc).split())})"
    for section in [parser.default_section, *parser.sections()]:
        for option in ("class", "args", "kwargs"):
            value = parser[section].get(option, "").strip()
            reason = _value_problem(section, option, value) if value else None
            if reason:
                return f"{name}: [{section}] {option}={value!r} {reason}"
    return None


def logging_conf_problems(folder: Path, extra: list[Path] | tuple[Path, ...] = ()) -> tuple[list[Path], list[str]]:
    """``(files checked, problems)`` for every ``configs/*.conf`` of the bundle ``folder`` and the files ``extra``.

    ``extra``: further INI files the run would apply (``--logging_file``, a ``logging.conf`` beside a config
    given outside ``configs/``); a file listed twice is checked once.
    """
    unique = {path.resolve(): path for path in [*sorted((folder / "configs").glob("*.conf")), *map(Path, extra)]}
    files = sorted(unique.values())
    return files, [problem for path in files if (problem := logging_conf_problem(path, folder))]
