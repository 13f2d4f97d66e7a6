"""``run``: ``python -m monai.bundle run`` on a received bundle, refused when its audit flags anything.

A thin wrapper: it audits the bundle's configs (:mod:`common.sharing.audit`; every config file under
``configs/`` and any ``--config_file`` / ``--meta_file`` given outside it), refuses with one line and exit
status 1 when anything is flagged (inspect with ``python -m common.sharing audit``) unless ``--trust`` is given,
and otherwise runs ``python -m monai.bundle run <the remaining arguments>`` in a child process whose working
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
from common.sharing.errors import SharingError, VerificationError

__all__ = ["add_arguments", "monai_command", "run", "run_bundle"]

logger = logging.getLogger(__name__)

#: MONAI ``run`` arguments naming config files; files outside ``configs/`` are audited as extra configs
_CONFIG_ARGUMENTS = ("--config_file", "--meta_file")


def _config_arguments(bundle: Path, monai_args: Sequence[str]) -> list[Path]:
    """The files given to ``--config_file``/``--meta_file`` (a path, a comma list or a Python-style list)."""
    files: list[Path] = []
    for index, arg in enumerate(monai_args):
        name, _, value = arg.partition("=")
        if name not in _CONFIG_ARGUMENTS:
            continue
        if not value and index + 1 < len(monai_args):
            value = monai_args[index + 1]
        for part in value.strip("[]()").split(","):
            part = part.strip().strip("'\"")
            if part:
                path = Path(part) if Path(part).is_absolute() else bundle / part
                files.append(path)
    return files


def _extra_configs(bundle: Path, monai_args: Sequence[str]) -> list[Path]:
    configs = (bundle / "configs").resolve()
    extras = []
    for path in _config_arguments(bundle, monai_args):
        if not path.is_file():
            raise SharingError(f"{path}: config file given to monai.bundle run not found")
        if not path.resolve().is_relative_to(configs):
            extras.append(path)
    return extras


def monai_command(monai_args: Sequence[str]) -> list[str]:
    """The child process's command line: this Python, ``-m monai.bundle run`` and ``monai_args``."""
    return [sys.executable, "-m", "monai.bundle", "run", *monai_args]


def _environment(bundle: Path) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(bundle.resolve()), *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def run_bundle(bundle: str | os.PathLike, monai_args: Sequence[str], trust: bool = False) -> int:
    """Audit the bundle folder ``bundle``, then run ``monai.bundle run monai_args`` in it; returns its exit status.

    Raises:
        VerificationError: the audit flags something and ``trust`` is off (nothing was run).
        SharingError: a config file named in ``monai_args`` does not exist; the bundle has no ``configs/``.
    """
    root = Path(bundle)
    report = audit_bundle(root, _extra_configs(root, monai_args))
    flagged = report.flagged
    if flagged and not trust:
        raise VerificationError(f"{bundle}: the audit flags {len(flagged)} finding"
                                f"{'s' if len(flagged) != 1 else ''} (inspect with python -m common.sharing audit "
                                f"{bundle}); --trust runs it anyway")
    if flagged:
        logger.warning("running %s with %d flagged audit findings (--trust)", bundle, len(flagged))
    command = monai_command(monai_args)
    logger.info("running in %s: %s", root, " ".join(command[1:]))
    return subprocess.run(command, cwd=root, env=_environment(root), check=False).returncode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m common.sharing run``: ours before ``--``, MONAI's after it."""
    parser.usage = "python -m common.sharing run [--trust] ARCHIVE_OR_DIR [--trust] -- MONAI_RUN_ARGUMENTS..."
    parser.epilog = ("exit status: monai.bundle run's own when it runs; 1 refused (the audit flags something); "
                     "2 usage or input error")
    parser.add_argument("source", metavar="ARCHIVE_OR_DIR", type=Path, help="a bundle archive (.zip) or folder")
    parser.add_argument("--trust", action="store_true",
                        help="run even when the audit flags something (you have read the audit and accept it)")
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
