"""Fine-tuning strategies selectable from any bundle's ``finetune`` key, and the handler that drives them."""

from __future__ import annotations

from common.finetune.base import FinetuneStrategy, log_param_groups, set_group_lrs
from common.finetune.feature_cache import CachedFeatureDataset, FrozenFeatureCache
from common.finetune.freezing import freeze_all, is_frozen_bn, set_trainable
from common.finetune.handler import FinetuneHandler
from common.finetune.probe import probe_bundle_cutoff, probe_cutoff_layers
from common.finetune.registry import STRATEGIES, build_strategy
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

__all__ = [
    "AutoRGN",
    "FT",
    "LP",
    "LPFT",
    "L1SP",
    "L2SP",
    "BitFit",
    "CachedFeatureDataset",
    "CutoffLayer",
    "DiscriminativeLR",
    "FinetuneHandler",
    "FinetuneStrategy",
    "FrozenFeatureCache",
    "GradualUnfreezing",
    "STRATEGIES",
    "Surgical",
    "build_strategy",
    "freeze_all",
    "is_frozen_bn",
    "log_param_groups",
    "probe_bundle_cutoff",
    "probe_cutoff_layers",
    "set_group_lrs",
    "set_trainable",
]
