"""One module per fine-tuning strategy."""

from __future__ import annotations

from common.finetune.strategies.auto_rgn import AutoRGN
from common.finetune.strategies.bitfit import BitFit
from common.finetune.strategies.cutoff import CutoffLayer
from common.finetune.strategies.discriminative import DiscriminativeLR
from common.finetune.strategies.ft import FT
from common.finetune.strategies.gradual import GradualUnfreezing
from common.finetune.strategies.lp import LP
from common.finetune.strategies.lp_ft import LPFT
from common.finetune.strategies.sp_regularisation import L1SP, L2SP
from common.finetune.strategies.surgical import Surgical

__all__ = ["AutoRGN", "FT", "LP", "LPFT", "GradualUnfreezing", "L2SP", "L1SP", "DiscriminativeLR", "Surgical", "BitFit",
           "CutoffLayer"]
