"""The third-party packages vendored code imports, declared in a bundle's metadata and pinned as medxfer pins them.

A vendored bundle no longer needs ``medxfer`` (:mod:`common.sharing.vendor`), but it needs what the copied modules
import: :func:`third_party_imports` finds those imports (inside functions too: MONAI reads
``optional_packages_version`` as a deprecated spelling of ``required_packages_version``, so there is no separate
optional list), and :func:`declare_requirements` writes them into ``required_packages_version`` under their
distribution names (``cv2`` -> ``opencv-python-headless``), pinned as in ``requirements.txt`` (the installed
version when that file is not at hand). torch, monai and numpy have metadata keys of their own and are left out.

Example:
    >>> declare_requirements({"required_packages_version": {"medxfer": "0.1.0"}}, {"sklearn"})  # doctest: +SKIP
    {'required_packages_version': {'scikit-learn': '1.5.2'}}
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import common
from common.sharing.errors import PackError

__all__ = ["OWN_KEYS", "REQUIREMENTS", "declare_requirements", "pinned_versions", "third_party_imports"]

#: medxfer's pins, ``name==version`` per line
REQUIREMENTS = Path(common.__file__).resolve().parent.parent / "requirements.txt"
#: third-party packages whose versions metadata.json states in keys of their own
OWN_KEYS = {"torch": "pytorch_version", "monai": "monai_version", "numpy": "numpy_version"}
_DROPPED = "medxfer"  # the package a vendored bundle no longer needs


def third_party_imports(tree: ast.Module, own: Iterable[str] = ("common", "scripts")) -> set[str]:
    """Top-level names of the third-party modules ``tree`` imports, at module level or inside functions.

    ``own``: top-level packages that are not third-party (the vendored package under both its names).
    """
    skip = {*own, "__future__"}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        else:
            continue
        for name in names:
            head = name.split(".")[0]
            if head not in sys.stdlib_module_names and head not in skip:
                found.add(head)
    return found


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_versions(file: Path = REQUIREMENTS) -> dict[str, str]:
    """``{distribution name (normalised): version}`` from ``file``'s ``name==version`` lines (none when absent)."""
    pins: dict[str, str] = {}
    if file.is_file():
        for line in file.read_text(encoding="utf-8").splitlines():
            match = re.match(r"^\s*([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)", line)
            if match:
                pins[_normalise(match.group(1))] = match.group(2)
    return pins


@functools.cache
def _module_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()  # reads every installed distribution: seconds, so once


def _distribution(module: str) -> str:
    """The installed distribution that provides top-level module ``module`` (``cv2`` -> opencv-python-headless)."""
    candidates = _module_distributions().get(module, [])
    if not candidates:
        raise PackError(f"vendored code imports {module!r}, which no installed distribution provides; "
                        "install it (requirements.txt) before packing")
    return sorted(candidates)[0]


def declare_requirements(metadata: dict[str, Any], modules: set[str]) -> dict[str, Any]:
    """``metadata`` without ``medxfer`` and with every distribution providing ``modules`` pinned (a new dict).

    Raises:
        PackError: no installed distribution provides one of ``modules``.
    """
    pins = pinned_versions()
    required = {k: v for k, v in metadata.get("required_packages_version", {}).items() if _normalise(k) != _DROPPED}
    declared = {_normalise(name) for name in required}
    for module in sorted(modules - set(OWN_KEYS)):
        dist = _distribution(module)
        if _normalise(dist) not in declared:
            required[dist] = pins.get(_normalise(dist)) or importlib.metadata.version(dist)
            declared.add(_normalise(dist))
    return {**metadata, "required_packages_version": dict(sorted(required.items()))}
