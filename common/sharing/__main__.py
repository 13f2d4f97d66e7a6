"""``python -m common.sharing <verb>``: pack, sign, verify, audit, fetch, run and evaluate shared bundles.

Each verb lives in its own module, which defines ``add_arguments(parser)`` and ``run(args) -> int``; the table
:data:`VERBS` maps a verb to its one-line help and that module. Exit status of every verb: 0 success; 1 the
bundle failed verification or the audit flagged something; 2 a usage or input error, printed as one line
``error: <message>`` on stderr (``--debug`` or ``MEDXFER_DEBUG=1`` shows its traceback).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from common.errors import DEBUG_ENV, run_command
from common.sharing.errors import VerificationError

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "VERBS", "build_parser", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: verb -> (one-line help, module defining add_arguments(parser) and run(args) -> int)
VERBS: dict[str, tuple[str, str]] = {
    "keygen": ("create an Ed25519 key pair for signing bundles", "common.sharing.signing"),
    "pack": ("pack a trained bundle into a signed, model-zoo-layout archive with provenance", "common.sharing.pack"),
    "verify": ("check a received archive or folder: safe unpacking, hashes, signature, schema, model",
               "common.sharing.verify"),
    "audit": ("list every expression, _target_ and import in a bundle's configs and flag unsafe ones",
              "common.sharing.audit"),
    "index": ("write the index.json of a folder registry of bundle archives", "common.sharing.registry"),
    "fetch": ("download a bundle from a folder registry, an http(s) URL or the Hugging Face Hub, then verify it",
              "common.sharing.fetch"),
    "run": ("run a received bundle with monai.bundle run, refused when its audit flags anything",
            "common.sharing.run"),
    "evaluate": ("verify a received bundle, then evaluate it on this site's test split beside its own numbers",
                 "common.sharing.evaluate"),
}


def _verb_module(module: str):  # noqa: ANN202 (a module)
    return importlib.import_module(module)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m common.sharing`` argument parser, one sub-command per :data:`VERBS` entry."""
    parser = argparse.ArgumentParser(prog="python -m common.sharing", description=__doc__.split("\n")[0],
                                     epilog="exit status: 0 success, 1 verification failed or audit flagged, "
                                            "2 usage or input error")
    parser.add_argument("--debug", action="store_true",
                        help=f"show the full traceback of a user error (or set {DEBUG_ENV}=1)")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, module_name) in VERBS.items():
        try:
            module = _verb_module(module_name)
        except ModuleNotFoundError as exc:  # a verb still being built: listed once its module lands
            if exc.name != module_name:
                raise
            continue
        sub = commands.add_parser(name, help=help_text, description=help_text,
                                  epilog="exit status: 0 success, 1 verification failed or audit flagged, "
                                         "2 usage or input error")
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def _run_verb(args: argparse.Namespace) -> int:
    """Run the verb; a refused bundle (:class:`VerificationError`) prints its report and one line, status 1."""
    try:
        return args.run(args)
    except VerificationError as exc:
        if exc.report is not None and hasattr(exc.report, "to_text"):
            sys.stdout.write(exc.report.to_text() + "\n")
        sys.stdout.flush()
        sys.stderr.write(f"refused: {exc}\n")
        return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the verb; returns the process exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return run_command(lambda: _run_verb(args), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
