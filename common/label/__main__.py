"""``python -m common.label <command>``: the MONAI Label side of medxfer.

Commands live in :data:`SUBCOMMANDS` (name -> help, a function adding its arguments, a function running it), so a
new one is one entry. A user error prints one line to stderr, ``error: <message>``, and exits with status 2
(:func:`common.errors.run_command`); ``--debug`` or ``MEDXFER_DEBUG=1`` shows its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from common.errors import DEBUG_ENV, run_command

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

#: A sub-command: its one-line help, a function adding its arguments, a function running it (returns the status).
Subcommand = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


def _add_studies_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True, type=Path,
                        help="studies folder to write: new, empty, or one this command wrote (replaced whole)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the images and of which ones are labelled")
    parser.add_argument("--labelled-fraction", type=float, default=0.5,
                        help="share of each bundle's images saved with a 'final' label (default 0.5)")


def _run_studies(args: argparse.Namespace) -> int:
    from common.label.studies import make_studies

    logging.getLogger("common.data").setLevel(logging.WARNING)  # the generators name the scratch folders
    summary = make_studies(args.output, seed=args.seed, labelled_fraction=args.labelled_fraction)
    per_bundle = ", ".join(f"{name} {entry['images']} ({entry['labelled']} labelled, {entry['prefix']}_*)"
                           for name, entry in summary["bundles"].items())  # fmt: skip
    sys.stdout.write(f"wrote {summary['images']} images ({summary['labelled']} labelled) to {args.output}: "
                     f"{per_bundle}\n")  # fmt: skip
    return 0


def _add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    from common.label.serve import add_arguments

    add_arguments(parser)


def _run_serve(args: argparse.Namespace) -> int:
    from common.label.serve import run

    logging.getLogger("monailabel").setLevel(logging.NOTSET)  # the server's own log is wanted here
    return run(args)


SUBCOMMANDS: dict[str, Subcommand] = {
    "studies": ("write demo studies (synthetic images of every bundle, some labelled) for a MONAI Label server",
                _add_studies_arguments, _run_studies),
    "serve": ("start the MONAI Label server with the medxfer app (every bundle: infer, train, active learning)",
              _add_serve_arguments, _run_serve),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m common.label`` argument parser, one sub-command per :data:`SUBCOMMANDS` entry."""
    parser = argparse.ArgumentParser(prog="python -m common.label", description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true",
                        help=f"show the full traceback of a user error (or set {DEBUG_ENV}=1)")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, run) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        add_arguments(sub)
        sub.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the process exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("monailabel").setLevel(logging.WARNING)  # its datastore logs three lines per image
    return run_command(lambda: args.run(args), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
