"""medxfer's shared library: data adapters, transforms, networks, metrics and engines for the bundles."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
