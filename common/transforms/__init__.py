"""Transforms the bundles' JSON configs reference (MONAI array + dictionary pairs)."""

from __future__ import annotations

from common.transforms.labels import MultiLabel, MultiLabeld
from common.transforms.radiograph import LoadRadiograph, LoadRadiographd, read_radiograph

__all__ = ["LoadRadiograph", "LoadRadiographd", "read_radiograph", "MultiLabel", "MultiLabeld"]
