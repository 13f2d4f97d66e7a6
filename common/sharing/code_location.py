"""Importable Python at a bundle's root: the bundle folder goes on ``PYTHONPATH`` ahead of installed packages.

``net_in_out`` (``verify``), ``run`` and ``evaluate`` start ``monai.bundle`` with the bundle root first on
``PYTHONPATH`` and as the working folder (its vendored ``scripts`` package must import while the configs are
parsed), so a ``torch/__init__.py`` or ``monai.py`` there would be imported instead of the real module. Bundle
code belongs in ``scripts/`` (the model-zoo convention); anything else importable is refused.

Example:
    >>> importable_outside_scripts(Path("received/chest_xray_classification"))  # doctest: +SKIP
    ['torch/__init__.py']
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["IMPORTABLE", "importable_outside_scripts"]

#: What Python imports from a folder on its path: a module here would shadow an installed one (torch, monai).
IMPORTABLE = ("*.py", "*.pyc", "*.so", "*.pyd", "*/__init__.py", "*/__init__.pyc", "*/__init__.so", "*/__init__.pyd")


def importable_outside_scripts(folder: Path) -> list[str]:
    """Python modules and packages at the bundle root other than ``scripts/``, as sorted POSIX paths."""
    return sorted({path.relative_to(folder).as_posix() for pattern in IMPORTABLE for path in folder.glob(pattern)
                   if path.relative_to(folder).parts[0] != "scripts"})
