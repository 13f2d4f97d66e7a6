"""Typed errors raised for user-facing problems (bad data, bad configuration, missing weights).

Every message names the file, row or key at fault, what was expected and what was found, so a
command-line run can print it as one readable line.
"""

from __future__ import annotations

__all__ = ["MedxferError", "DataError", "ConfigError", "WeightsError"]


class MedxferError(Exception):
    """Base class of every error medxfer raises on purpose."""


class DataError(MedxferError, ValueError):
    """A dataset file, row, label or image is missing, unreadable or not what was expected."""


class ConfigError(MedxferError, ValueError):
    """A configuration value (strategy, architecture, key, path) is unknown or invalid."""


class WeightsError(MedxferError, RuntimeError):
    """Pretrained weights are missing, unreadable or do not fit the network."""
