"""``python -m common.label serve``: start MONAI Label's server with the medxfer app, offline.

It is ``monailabel start_server --app apps/monailabel --studies DIR --conf ...`` with the pydicom-seg import hook
installed first (so it works without the ``.pth`` file too), the host defaulting to 127.0.0.1 (the studies are
patient images: exposing them is a choice, ``--host 0.0.0.0``), and the URL plus a few curl lines printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from common.errors import ConfigError

__all__ = ["APP_DIR", "add_arguments", "curl_examples", "run", "start_server_argv"]

APP_DIR = Path(__file__).resolve().parents[2] / "apps" / "monailabel"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` options."""
    parser.add_argument("--studies", required=True, help="studies folder (images; labels under labels/final/)")
    parser.add_argument("--models", default="all", help="comma-separated bundle names to serve (default: all)")
    parser.add_argument("--workspace", default=None,
                        help="where trained models and training datalists go (default: <studies>/.medxfer)")
    parser.add_argument("--bundles", default=None, help="folder holding the bundles (default: this repo's bundles/)")
    parser.add_argument("--min-labels", type=int, default=2, help="labelled images needed before /train (default 2)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--app", default=str(APP_DIR), help=f"MONAI Label app folder (default {APP_DIR})")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def start_server_argv(args: argparse.Namespace) -> list[str]:
    """The ``monailabel start_server`` arguments for ``args``."""
    conf = {"models": args.models, "min_labels": str(args.min_labels)}
    if args.workspace:
        conf["workspace"] = str(Path(args.workspace).resolve())
    if args.bundles:
        conf["bundles"] = str(Path(args.bundles).resolve())
    argv = ["start_server", "--app", str(args.app), "--studies", str(Path(args.studies).resolve()),
            "--host", args.host, "--port", str(args.port), "--log_level", args.log_level]
    for key, value in conf.items():
        argv += ["--conf", key, value]
    return argv


def curl_examples(url: str, model: str = "chest_xray_classification") -> str:
    """A few requests to try against a running server."""
    return "\n".join([
        f"  curl {url}/info/",
        f"  curl -X POST '{url}/activelearning/random' -H 'Content-Type: application/json' "
        f"-d '{{\"model\": \"{model}\"}}'",
        f"  curl -X POST '{url}/infer/{model}?image=<image id>&output=json'",
        f"  curl -X POST '{url}/train/{model}' -H 'Content-Type: application/json' "
        "-d '{\"max_epochs\": 1, \"pretrained\": \"none\"}'",
        f"  curl {url}/train/",
    ])


def run(args: argparse.Namespace) -> int:
    """Start the server (blocks until it is stopped)."""
    from common.label import compat

    if not Path(args.studies).is_dir():
        raise ConfigError(f"studies folder not found: {args.studies}; make one with "
                          f"`python -m common.label studies --output {args.studies}`")  # fmt: skip
    if not (Path(args.app) / "main.py").is_file():
        raise ConfigError(f"no MONAI Label app at {args.app} (main.py missing)")
    compat.install()
    os.environ.setdefault("MONAI_LABEL_DATASTORE_AUTO_RELOAD", "false")
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    url = f"http://{shown}:{args.port}"
    sys.stdout.write(f"medxfer MONAI Label server: {url}  (API docs: {url}/docs; stop with Ctrl-C)\n"
                     f"try:\n{curl_examples(url)}\n")
    sys.stdout.flush()
    from monailabel.main import Main

    sys.argv = ["monailabel", *start_server_argv(args)]
    Main().run()
    return 0
