"""Strategy names for grids and command lines: ``build_strategy("lp_ft", lp_epochs=2)``."""

from __future__ import annotations

import difflib
from typing import Any

from common.errors import ConfigError
from common.finetune.base import FinetuneStrategy
from common.finetune.strategies import (
    FT,
    L1SP,
    L2SP,
    LP,
    LPFT,
    AutoRGN,
    BitFit,
    CutoffLayer,
    DiscriminativeLR,
    GradualUnfreezing,
    Surgical,
)

__all__ = ["STRATEGIES", "build_strategy"]

STRATEGIES: dict[str, type[FinetuneStrategy]] = {
    "ft": FT,
    "lp": LP,
    "lp_ft": LPFT,
    "gradual_unfreezing": GradualUnfreezing,
    "l2_sp": L2SP,
    "l1_sp": L1SP,
    "auto_rgn": AutoRGN,
    "discriminative_lr": DiscriminativeLR,
    "surgical": Surgical,
    "bitfit": BitFit,
    "cutoff": CutoffLayer,
}


def build_strategy(name: str, **kwargs: Any) -> FinetuneStrategy:
    """Instantiate the strategy registered as ``name`` with ``kwargs``.

    Raises:
        ConfigError: unknown name (with the closest valid names) or bad arguments.
    """
    if name not in STRATEGIES:
        close = difflib.get_close_matches(name.lower().replace("-", "_"), list(STRATEGIES), n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown strategy {name!r}; {hint}choose from: {', '.join(STRATEGIES)}")
    try:
        return STRATEGIES[name](**kwargs)
    except TypeError as err:
        raise ConfigError(f"bad arguments for strategy {name!r}: {err}") from err
