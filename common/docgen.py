"""Sections of README.md and the model cards written from the code, so that the numbers they quote cannot drift.

A section sits between two markers; everything between them is replaced by what its generator returns::

    <!-- generated:demo-settings -->
    ... (written by python -m common.docgen) ...
    <!-- /generated -->

Generators (``generated:<name>`` or ``generated:<name> <argument>``):

- ``demo-settings``: the demo grid (``configs/grids/demo.yaml``): task, data, cells, per-cell overrides, stage 2.
- ``tour-settings``: ``python -m common demo --tour``: :func:`common.demo.run_tour`'s defaults and constants.
- ``bundle-defaults <bundle>``: the training defaults of ``bundles/<bundle>/configs/train.json``.

``python -m common.docgen`` rewrites the sections in place; ``--check`` only lists stale files (exit status 1).
``tests/test_docs.py`` fails while a section differs from its generator: change the code or config, then run
``python -m common.docgen``. Measured numbers (leaderboards, timings) are never generated: they stay in the prose
with the command and commit that produced them.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from common.errors import ConfigError

__all__ = ["DOC_FILES", "GENERATORS", "REPO", "bundle_defaults", "demo_settings", "main", "refresh", "stale_files",
           "tour_settings"]

REPO = Path(__file__).resolve().parents[1]
#: Files whose generated sections are kept up to date (and checked by tests/test_docs.py).
DOC_FILES = (REPO / "README.md", *sorted((REPO / "bundles").glob("*/docs/README.md")))

_SECTION = re.compile(
    r"(<!-- generated:(?P<name>[\w-]+)(?: (?P<arg>[\w./-]+))? -->\n)(?P<body>.*?)(<!-- /generated -->)", re.S
)
#: train.json keys shown as a bundle's training defaults, in this order, when the bundle defines them as values.
DEFAULT_KEYS = ("arch", "pretrained", "image_size", "patch_size", "samples_per_image", "epochs", "batch_size",
                "val_batch_size", "learning_rate", "weight_decay", "val_interval", "num_workers", "seed", "precision",
                "channels_last", "compile", "augment_device")


def _value(value: Any) -> str:
    if isinstance(value, float):
        return re.sub(r"e([+-])0*(\d)", r"e\1\2", format(value, "g")).replace("e+", "e")
    return str(value)


def _pairs(mapping: dict[str, Any]) -> str:
    return ", ".join(f"`{key}` {_value(value)}" for key, value in mapping.items())


def _ordered(mapping: dict[str, Any]) -> dict[str, Any]:
    """``mapping`` with the keys of :data:`DEFAULT_KEYS` first, in that order."""
    rank = {key: i for i, key in enumerate(DEFAULT_KEYS)}
    return dict(sorted(mapping.items(), key=lambda item: rank.get(item[0], len(rank))))


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (as the docs quote paths)."""
    return str(path.resolve().relative_to(REPO)) if path.resolve().is_relative_to(REPO) else str(path)


def _initialisation(stage1: str, stage2: str) -> str:
    names = {("none", "none"): "scratch", ("imagenet", "none"): "ImageNet",
             ("imagenet", "medical"): "ImageNet -> medical"}
    return names.get((stage1, stage2), f"`{stage1}` -> `{stage2}`")


def _data(spec: Any) -> str:
    if spec.embedded is None:
        return f"`{spec.dataset_dir}`"
    return f"`embedded: {spec.embedded}`, generated with {_pairs(spec.generate)}; split {_pairs(spec.split)}"


def demo_settings(grid_file: str | Path | None = None) -> str:
    """The demo grid as a Markdown list: what ``make demo`` runs, read from the grid the demo uses."""
    from common.demo import DEMO_GRID
    from common.experiments.cells import expand, pretrain_cells
    from common.experiments.grid import load_grid

    grid = load_grid(grid_file or DEMO_GRID)
    cells = expand(grid)
    task_names = ", ".join(f"`{task.bundle.name}`" for task in grid.tasks)
    archs = sorted({cell.arch for cell in cells})
    inits = list(dict.fromkeys(_initialisation(cell.stage1, cell.stage2) for cell in cells))
    lines = [
        f"- grid `{_shown(Path(grid.source or grid_file or DEMO_GRID))}`: task {task_names}; data "
        + "; ".join(_data(task.data) for task in grid.tasks),
        f"- {len(cells)} cells: architecture {', '.join(f'`{a}`' for a in archs)} x initialisation "
        f"({', '.join(inits)}) x strategy ({', '.join(f'`{s.label}`' for s in grid.strategies)}) x seed "
        f"({', '.join(str(s) for s in grid.seeds)})",
        f"- every cell overrides the bundle's `train.json` with {_pairs(grid.overrides)}",
    ]
    pcells = pretrain_cells(cells)
    if grid.pretraining is not None and pcells:
        sources = ", ".join(f"`{p.stage1}`" for p in pcells)
        lines.append(f"- stage 2 (`{grid.pretraining.bundle.name}`, from {sources}, run once when the first "
                     f"ImageNet -> medical cell needs it): data {_data(grid.pretraining.data)}; "
                     f"{_pairs(grid.pretraining.overrides)}")
    return "\n".join(lines) + "\n"


def tour_settings() -> str:
    """``python -m common demo --tour`` as a Markdown list, from :func:`common.demo.run_tour`'s defaults."""
    from common import demo

    defaults = {name: p.default for name, p in inspect.signature(demo.run_tour).parameters.items()}
    chest = _train_config("chest_xray_classification")
    chest_run = _ordered({"arch": chest["arch"], **demo.TOUR_CHEST_OVERRIDES, "image_size": defaults["image_size"],
                          "epochs": defaults["epochs"]})
    mammo_run = _ordered({**demo.TOUR_MAMMO_OVERRIDES, "epochs": demo.TOUR_MAMMO_EPOCHS})
    return (f"- `chest_xray_classification` on {defaults['n_patients']} synthetic patients in the ChestX-ray14 "
            f"layout: {_pairs(chest_run)}\n"
            f"- `breast_mammo_classification` on {demo.TOUR_MAMMO_PATIENTS} synthetic patients' DICOM mammograms in "
            f"the CBIS-DDSM layout: {_pairs(mammo_run)}\n")


def _train_config(bundle: str) -> dict[str, Any]:
    file = REPO / "bundles" / bundle / "configs" / "train.json"
    if not file.is_file():
        raise ConfigError(f"bundle-defaults: no bundle {bundle!r} ({file} not found)")
    return json.loads(file.read_text())


def bundle_defaults(bundle: str) -> str:
    """The training defaults of ``bundles/<bundle>/configs/train.json`` as one Markdown paragraph."""
    config = _train_config(bundle)
    shown = {key: config[key] for key in DEFAULT_KEYS
             if key in config and not (isinstance(config[key], str) and config[key].startswith(("$", "@")))}
    return (f"Defaults in `configs/train.json` (top-level keys; override with `--<key> <value>`): "
            f"{_pairs(shown)}.\n")


#: name -> generator; those in _WITH_ARGUMENT take the marker's argument as their one parameter.
GENERATORS: dict[str, Callable[..., str]] = {
    "demo-settings": demo_settings,
    "tour-settings": tour_settings,
    "bundle-defaults": bundle_defaults,
}
_WITH_ARGUMENT = frozenset({"bundle-defaults"})


def refresh(text: str, source: str = "<text>") -> str:
    """``text`` with every generated section rewritten by its generator.

    Raises:
        ConfigError: a section names an unknown generator, or lacks / has an argument it needs / does not take.
    """

    def render(match: re.Match[str]) -> str:
        name, arg = match["name"], match["arg"]
        if name not in GENERATORS:
            raise ConfigError(f"{source}: unknown generated section {name!r}; choose from: {', '.join(GENERATORS)}")
        takes_arg = name in _WITH_ARGUMENT
        if takes_arg != (arg is not None):
            raise ConfigError(f"{source}: section {name!r} {'needs' if takes_arg else 'takes no'} argument")
        body = GENERATORS[name](arg) if takes_arg else GENERATORS[name]()
        return match.group(1) + body + match.group(5)

    return _SECTION.sub(render, text)


def stale_files(files: Sequence[Path] = DOC_FILES) -> list[Path]:
    """The files whose generated sections differ from what the code generates now."""
    return [file for file in files if refresh(file.read_text(), str(file)) != file.read_text()]


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite the generated sections of :data:`DOC_FILES` (``--check``: only report stale files, exit 1)."""
    parser = argparse.ArgumentParser(prog="python -m common.docgen", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="list files with stale sections; change nothing")
    args = parser.parse_args(argv)
    stale = stale_files()
    for file in stale:
        if args.check:
            sys.stdout.write(f"stale: {file.relative_to(REPO)}\n")
        else:
            file.write_text(refresh(file.read_text(), str(file)))
            sys.stdout.write(f"rewrote {file.relative_to(REPO)}\n")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
