"""medxfer's shared library: data adapters, transforms, networks, metrics and engines for the bundles."""

from __future__ import annotations

import sys

__all__ = ["__version__"]

__version__ = "0.1.0"


def _running_monai_bundle() -> bool:
    """Whether this process is ``python -m monai.bundle ...`` (whose configs ``import common``)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return getattr(spec, "name", None) in ("monai.bundle", "monai.bundle.__main__")


if _running_monai_bundle():
    # Only there: a user error then ends as one line and exit status 2 instead of MONAI's wrapped traceback.
    # Importing common as a library changes nothing global.
    from common.errors import install_excepthook

    install_excepthook()
