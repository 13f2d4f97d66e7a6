"""common.experiments' modules import each other without a circle, counting every import statement: module-level,
inside functions and under ``TYPE_CHECKING`` (a circle hidden in a function is still a circle)."""

from __future__ import annotations

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "common" / "experiments"


def _module(file: Path) -> str:
    parts = file.relative_to(PACKAGE.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(file: Path, known: set[str]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(file.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found |= {n for n in names if n in known}
    return found


def test_the_experiments_modules_import_each_other_without_a_circle() -> None:
    files = {_module(f): f for f in PACKAGE.rglob("*.py")}
    # Package __init__ files only name their children lazily (PEP 562) or list them: left out as nodes.
    modules = {m for m, f in files.items() if f.name != "__init__.py"}
    graph = {m: _imports(files[m], modules) - {m} for m in modules}
    assert graph["common.experiments.grid"] >= {"common.experiments.checks", "common.experiments.data"}
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as err:
        raise AssertionError(f"import circle: {' -> '.join(err.args[1])}") from err
    assert order.index("common.experiments.specs") < order.index("common.experiments.grid")


def test_a_cell_worker_starts_without_the_training_stack() -> None:
    """``python -m common.experiments.worker`` imports neither torch nor MONAI before its job needs them (a cell that
    fails at once costs no import time), and its imports resolve in a fresh interpreter (no half-imported module)."""
    code = ("import sys, common.experiments.worker, common.experiments.executors.local; "
            "print(sorted(m for m in ('torch', 'monai', 'numpy', 'submitit') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parents[1], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
