"""Small helpers the metric modules and reports share: JSON-safe numbers, table cells, figures."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["NA", "fmt", "finite_or_none", "mean_or_none", "new_figure"]

NA = "n/a"


def finite_or_none(value: float) -> float | None:
    """``value`` as a float, or ``None`` when it is NaN/inf (JSON has no NaN)."""
    value = float(value)
    return value if math.isfinite(value) else None


def mean_or_none(values: Sequence[float | None]) -> float | None:
    """Mean of the values that are not ``None``, or ``None`` when there are none."""
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def fmt(value: float | None, digits: int = 3) -> str:
    """A table cell: the number with ``digits`` decimals, or ``n/a``."""
    return NA if value is None else f"{value:.{digits}f}"


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib figure with its own Agg canvas (no pyplot global state)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig
