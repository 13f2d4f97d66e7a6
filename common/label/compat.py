"""Let pydicom-seg 0.4.1 (a monailabel 0.8.5 dependency) import under pydicom 3.

pydicom-seg imports ``SegmentationStorage`` from ``pydicom._storage_sopclass_uids``, a private module pydicom 3
removed; the same UIDs are public in ``pydicom.uid``. Downgrading pydicom is not an option (medxfer's DICOM
reading uses ``pydicom.pixels``, new in 3.0), so this module serves the old name from the new one, and only that
name: an import hook (a ``sys.meta_path`` finder) that answers for ``pydicom._storage_sopclass_uids`` alone.

The hook must be in place before ``monailabel.app`` is imported, in the server and in the training subprocess
MONAI Label starts. ``make`` installs ``medxfer_label_compat.pth`` into the virtual environment (``python -m
common.label.compat``), whose one line loads this file on its own (as ``_medxfer_label_compat``, without importing
the ``common`` package: importing it that early would make ``common`` miss that it runs under ``python -m
monai.bundle``) and calls :func:`install`. It needs only the standard library.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import sys
import sysconfig
import types
from pathlib import Path

__all__ = ["PTH_NAME", "OLD_MODULE", "install", "write_pth"]

OLD_MODULE = "pydicom._storage_sopclass_uids"
PTH_NAME = "medxfer_label_compat.pth"


class _SopClassUidsLoader(importlib.abc.Loader):
    """Create ``pydicom._storage_sopclass_uids`` whose names are looked up in ``pydicom.uid``."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = types.ModuleType(spec.name, "pydicom 3's pydicom.uid under pydicom 2's private name (medxfer)")
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        import pydicom.uid

        def __getattr__(name: str) -> object:  # noqa: N807 (module-level __getattr__, PEP 562)
            try:
                return getattr(pydicom.uid, name)
            except AttributeError:
                raise AttributeError(f"module {OLD_MODULE!r} (medxfer shim over pydicom.uid) has no {name!r}") from None

        module.__getattr__ = __getattr__  # type: ignore[attr-defined]


class _SopClassUidsFinder(importlib.abc.MetaPathFinder):
    """Answer for :data:`OLD_MODULE` only, and only when pydicom itself lacks it."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != OLD_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            if finder.find_spec(fullname, path, target) is not None:  # an older pydicom that still has it
                return None
        return importlib.machinery.ModuleSpec(fullname, _SopClassUidsLoader())


def install() -> None:
    """Add the finder to ``sys.meta_path`` (once; later calls do nothing)."""
    # by name: the .pth loads this file as another module than ``common.label.compat``, with its own classes
    if not any(type(finder).__name__ == _SopClassUidsFinder.__name__ for finder in sys.meta_path):
        sys.meta_path.append(_SopClassUidsFinder())


def write_pth(site_dir: str | Path | None = None) -> Path:
    """Write :data:`PTH_NAME` into ``site_dir`` (default: this interpreter's purelib) so every start installs the hook.

    Returns:
        The written file.
    """
    folder = Path(site_dir) if site_dir is not None else Path(sysconfig.get_paths()["purelib"])
    dest = folder / PTH_NAME
    source = str(Path(__file__).resolve())
    dest.write_text(
        f"import os, importlib.util as _u; _f = {source!r}; _s = os.path.isfile(_f) and "
        "_u.spec_from_file_location('_medxfer_label_compat', _f); _m = _s and _u.module_from_spec(_s); "
        "_s and (_s.loader.exec_module(_m), _m.install())\n"
    )
    return dest


def main(argv: list[str] | None = None) -> int:
    """``python -m common.label.compat [--site-dir DIR]``: install the start-up hook (see module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m common.label.compat", description=__doc__.split("\n\n")[0])
    parser.add_argument("--site-dir", default=None,
                        help=f"site-packages folder to write {PTH_NAME} into (default: this interpreter's)")
    args = parser.parse_args(argv)
    sys.stdout.write(f"wrote {write_pth(args.site_dir)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
