"""``run``: ``python -m monai.bundle run`` on a received bundle, refused when it could run code unchecked.

A thin wrapper. Before anything starts it refuses, with one line naming the file and exit status 1, unless
``--trust`` is given:

- importable Python at the bundle root outside ``scripts/``
  (:func:`~common.sharing.code_location.importable_outside_scripts`): the root goes first on ``PYTHONPATH``, so a
  ``torch/__init__.py`` there would be imported instead of torch;
- a logging file that ``logging.config.fileConfig`` would run code from
  (:func:`~common.sharing.logging_check.logging_conf_problem`): every ``configs/*.conf``, the ``logging.conf``
  MONAI applies by default (beside the first config file) and any ``--logging_file``. MONAI 1.6.1 checks this
  file itself, but misses ``%(name)s`` interpolation and a formatter ``class=Formatter`` imported from the
  working folder;
- anything its audit flags (:mod:`common.sharing.audit`; every config file under ``configs/`` and any
  ``--config_file`` / ``--meta_file`` / ``--args_file`` given outside it, directly or through the args file;
  inspect with ``python -m common.sharing audit``).

Otherwise it runs ``python -m monai.bundle run <the remaining arguments>`` in a child process whose working
directory is the bundle root, with the bundle root first on ``PYTHONPATH`` so vendored ``scripts`` imports
(MONAI evaluates ``imports`` while parsing, before it would add the bundle to ``sys.path`` itself). The child's
exit status is returned unchanged.

Everything after ``--`` goes to MONAI, as it would on its own command line (paths relative to the bundle root)::

    python -m common.sharing run received/chest_xray_classification -- \\
        --config_file configs/inference.json --meta_file configs/metadata.json --dataset_dir /data/site_b

An archive is unpacked (with :func:`~common.sharing.safezip.received_bundle`'s checks) into a temporary folder
that is removed when the run ends: give outputs a path outside it (``--output_dir /results``), or unpack the
bundle once with ``fetch`` and run the folder. The audit does not verify hashes or signatures: run ``verify``
(or ``fetch``, which verifies) on what you received first. Overrides given on the command line
(``--network_def#_target_ ...``) are the site's own and are not audited; config files they name are.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from common.sharing.audit import audit_bundle
from common.sharing.code_location import importable_outside_scripts
from common.sharing.errors import SharingError, VerificationError
from common.sharing.logging_check import logging_conf_problems

__all__ = ["add_arguments", "bundle_environment", "check_runnable", "monai_command", "run", "run_bundle"]

logger = logging.getLogger(__name__)

#: MONAI ``run`` arguments naming config files (an args file holds overrides); those outside ``configs/`` are
#: audited as extra configs
_CONFIG_ARGUMENTS = ("config_file", "meta_file", "args_file")
_LOGGING_ARGUMENT = "logging_file"


def _argument_values(monai_args: Sequence[str], name: str) -> list[str]:
    """Every value given to ``--name`` (``--name value`` or ``--name=value``) on the command line."""
    values = []
    for index, arg in enumerate(monai_args):
        flag, equals, value = arg.partition("=")
        if flag != f"--{name}":
            continue
        if not equals and index + 1 < len(monai_args):
            value = monai_args[index + 1]
        values.append(value)
    return values


def _args_file_values(bundle: Path, monai_args: Sequence[str], name: str) -> list[str]:
    """``name``'s values in the ``--args_file`` MONAI would read (JSON or YAML), which can name config files too."""
    import yaml
    from monai.bundle import ConfigParser

    values = []
    for value in _argument_values(monai_args, "args_file"):
        path = _bundle_path(bundle, value)
        if not path.is_file():
            raise SharingError(f"{path}: args file given to monai.bundle run not found")
        try:
            loaded = ConfigParser.load_config_file(str(path))
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise SharingError(f"{path}: args file given to monai.bundle run is not JSON or YAML ({exc})") from exc
        found = loaded.get(name) if isinstance(loaded, dict) else None
        if isinstance(found, list | tuple):
            values += [str(item) for item in found]
        elif found is not None:
            values.append(str(found))
    return values


def _bundle_path(bundle: Path, text: str) -> Path:
    """A path given on MONAI's command line: relative ones are relative to the bundle root (the child's cwd)."""
    return Path(text) if Path(text).is_absolute() else bundle / text


def _named_files(bundle: Path, monai_args: Sequence[str], name: str) -> list[Path]:
    """The files given to ``--name``, on the command line or in ``--args_file`` (a path, a comma list or a
    Python-style list), in the order MONAI reads them."""
    files: list[Path] = []
    for value in [*_argument_values(monai_args, name), *_args_file_values(bundle, monai_args, name)]:
        for part in value.strip("[]()").split(","):
            part = part.strip().strip("'\"")
            if part:
                files.append(_bundle_path(bundle, part))
    return files


def _extra_configs(bundle: Path, monai_args: Sequence[str]) -> list[Path]:
    configs = (bundle / "configs").resolve()
    extras = []
    for name in _CONFIG_ARGUMENTS:
        for path in _named_files(bundle, monai_args, name):
            if not path.is_file():
                raise SharingError(f"{path}: config file given to monai.bundle run not found")
            if not path.resolve().is_relative_to(configs):
                extras.append(path)
    return extras


def _logging_files(bundle: Path, monai_args: Sequence[str]) -> list[Path]:
    """The logging files MONAI would apply besides ``configs/*.conf``: ``--logging_file``, else ``logging.conf``
    beside the first config file (MONAI's default; it lies outside ``configs/`` when that config does)."""
    given = _named_files(bundle, monai_args, _LOGGING_ARGUMENT)
    configs = _named_files(bundle, monai_args, "config_file")
    default = [configs[0].parent / "logging.conf"] if configs else []
    return [path for path in given or default if path.is_file()]


def _refuse_unchecked_code(root: Path, bundle: str | os.PathLike, monai_args: Sequence[str]) -> None:
    """Raise when the run would import or evaluate code that the config audit does not see."""
    stray = importable_outside_scripts(root)
    if stray:
        raise VerificationError(f"{bundle}: importable code outside scripts/: {', '.join(stray)} (the bundle root "
                                f"goes first on PYTHONPATH, so it would shadow an installed module); --trust runs it "
                                f"anyway")
    _, problems = logging_conf_problems(root, _logging_files(root, monai_args))
    if problems:
        raise VerificationError(f"{bundle}: {problems[0]} (logging.config.fileConfig would run it); --trust runs it "
                                f"anyway")


def monai_command(monai_args: Sequence[str], verb: str = "run") -> list[str]:
    """A ``monai.bundle`` child process's command line: this Python, ``-m monai.bundle <verb>`` and ``monai_args``.

    Example:
        >>> monai_command(["--config_file", "configs/inference.json"])[1:]
        ['-m', 'monai.bundle', 'run', '--config_file', 'configs/inference.json']
    """
    return [sys.executable, "-m", "monai.bundle", verb, *monai_args]


def bundle_environment(bundle: str | os.PathLike) -> dict[str, str]:
    """This process's environment with the bundle root (absolute) first on ``PYTHONPATH``.

    MONAI evaluates a config's ``imports`` while parsing it, before ``monai.bundle run`` adds the bundle root to
    ``sys.path`` itself, so a vendored ``scripts`` package is importable only this way. Empty entries of an
    inherited ``PYTHONPATH`` are dropped (an empty entry means the working folder).
    """
    env = dict(os.environ)
    paths = [str(Path(bundle).resolve()), *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def check_runnable(bundle: str | os.PathLike, monai_args: Sequence[str] = (), trust: bool = False) -> None:
    """Refuse the bundle folder ``bundle`` before ``monai.bundle run monai_args`` starts in it (see the module doc).

    With ``trust`` nothing is refused; audit findings are logged as a warning.

    Raises:
        VerificationError: ``trust`` is off and the bundle has importable code outside ``scripts/``, a logging file
            that would run code, or configs the audit flags.
        SharingError: a config, args or logging file named in ``monai_args`` does not exist or cannot be read.
    """
    root = Path(bundle)
    if not trust:
        _refuse_unchecked_code(root, bundle, monai_args)
    flagged = audit_bundle(root, _extra_configs(root, monai_args)).flagged
    if flagged and not trust:
        raise VerificationError(f"{bundle}: the audit flags {len(flagged)} finding"
                                f"{'s' if len(flagged) != 1 else ''} (inspect with python -m common.sharing audit "
                                f"{bundle}); --trust runs it anyway")
    if flagged:
        logger.warning("running %s with %d flagged audit findings (--trust)", bundle, len(flagged))


def run_bundle(bundle: str | os.PathLike, monai_args: Sequence[str], trust: bool = False) -> int:
    """:func:`check_runnable`, then ``monai.bundle run monai_args`` in the bundle folder; returns its exit status.

    Raises:
        VerificationError: refused by :func:`check_runnable` (nothing was run).
        SharingError: a file named in ``monai_args`` does not exist; the bundle has no ``configs/``.
    """
    check_runnable(bundle, monai_args, trust)
    root = Path(bundle)
    command = monai_command(monai_args)
    logger.info("running in %s: %s", root, " ".join(command[1:]))
    return subprocess.run(command, cwd=root, env=bundle_environment(root), check=False).returncode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m common.sharing run``: ours before ``--``, MONAI's after it."""
    parser.usage = "python -m common.sharing run [--trust] ARCHIVE_OR_DIR [--trust] -- MONAI_RUN_ARGUMENTS..."
    parser.epilog = ("exit status: monai.bundle run's own when it runs; 1 refused (the audit flags something, a "
                     "logging file would run code, importable code outside scripts/); 2 usage or input error")
    parser.add_argument("source", metavar="ARCHIVE_OR_DIR", type=Path, help="a bundle archive (.zip) or folder")
    parser.add_argument("--trust", action="store_true",
                        help="run even when the audit flags something, a logging file would run code or importable "
                             "code sits outside scripts/ (you have read the bundle and accept it)")
    parser.add_argument("monai_args", nargs=argparse.REMAINDER, metavar="-- MONAI_RUN_ARGUMENTS",
                        help="arguments of python -m monai.bundle run, e.g. --config_file configs/inference.json")


def _split(args: argparse.Namespace) -> tuple[bool, list[str]]:
    """(trust, MONAI's arguments): options before ``--`` are ours (``--trust`` only), the rest MONAI's."""
    rest = list(args.monai_args)
    if "--" not in rest:
        ours, theirs = (rest[:1], rest[1:]) if rest[:1] == ["--trust"] else ([], rest)
    else:
        cut = rest.index("--")
        ours, theirs = rest[:cut], rest[cut + 1:]
    unknown = [arg for arg in ours if arg != "--trust"]
    if unknown:
        raise SharingError(f"run: unknown option(s) {' '.join(unknown)} before '--'; choose from: --trust "
                           "(MONAI's arguments go after '--')")
    return args.trust or bool(ours), theirs


def run(args: argparse.Namespace) -> int:
    """``run``: audit, refuse (status 1) or run MONAI; returns MONAI's exit status."""
    from common.sharing.safezip import received_bundle

    trust, monai_args = _split(args)
    with received_bundle(args.source) as folder:
        return run_bundle(folder, monai_args, trust=trust)
