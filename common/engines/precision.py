"""Numeric precision and memory layout of a bundle's trainer and evaluators: the ``precision`` and
``channels_last`` config keys turned into what MONAI's engines take (``amp``, ``amp_kwargs``, a memory format).

``precision`` is one of :data:`PRECISIONS`:

* ``"auto"`` (default): ``"bf16"`` on a CUDA device that supports it (``torch.cuda.is_bf16_supported()``,
  Ampere and newer), ``"fp16"`` on an older CUDA device, ``"fp32"`` on the CPU;
* ``"bf16"``: autocast to bfloat16; bfloat16 has float32's exponent range, so no loss scaling is needed and
  :class:`PrecisionHandler` hands the trainer a disabled ``GradScaler`` (MONAI's trainer only autocasts when it
  holds a scaler, and builds an enabled one in ``run()``);
* ``"fp16"``: autocast to float16 with MONAI's dynamic ``GradScaler``;
* ``"fp32"``: no autocast.

MONAI's engines autocast with ``torch.autocast("cuda", ...)``, so reduced precision needs a CUDA device: asking
for ``"bf16"`` or ``"fp16"`` on the CPU is refused rather than silently running in float32.

Example:
    >>> resolve_precision("auto", "cpu")
    'fp32'
    >>> autocast_enabled("fp32", "cpu"), autocast_kwargs("fp32", "cpu")
    (False, {})
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from ignite.engine import Engine, Events

from common.errors import ConfigError

__all__ = ["PRECISIONS", "PrecisionHandler", "autocast_enabled", "autocast_kwargs", "memory_format",
           "resolve_precision", "use_channels_last"]  # fmt: skip

logger = logging.getLogger(__name__)

#: Accepted values of the ``precision`` config key.
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _is_cuda(device: torch.device | str) -> bool:
    return torch.device(device).type == "cuda"


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """The precision a run on ``device`` uses: ``"bf16"``, ``"fp16"`` or ``"fp32"`` (``"auto"`` resolved).

    Raises:
        ConfigError: ``precision`` is not one of :data:`PRECISIONS`, or is reduced on a non-CUDA device.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"setting precision={precision!r} is not valid: choose from {list(PRECISIONS)} "
                          f"(override it with --precision VALUE)")  # fmt: skip
    cuda = _is_cuda(device)
    if precision == "auto":
        if not cuda:
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision != "fp32" and not cuda:
        raise ConfigError(f"setting precision={precision!r} needs a CUDA device (MONAI autocasts on 'cuda' only); "
                          f"device is {torch.device(device)}: use 'auto' or 'fp32'")  # fmt: skip
    return precision


def autocast_enabled(precision: str, device: torch.device | str) -> bool:
    """MONAI's ``amp`` flag for ``precision`` on ``device``: True for bf16 and fp16."""
    return resolve_precision(precision, device) != "fp32"


def autocast_kwargs(precision: str, device: torch.device | str) -> dict[str, Any]:
    """MONAI's ``amp_kwargs`` (``torch.autocast`` arguments) for ``precision``: ``{"dtype": ...}`` or ``{}``."""
    resolved = resolve_precision(precision, device)
    return {"dtype": _DTYPES[resolved]} if resolved in _DTYPES else {}


def use_channels_last(channels_last: bool | str, device: torch.device | str) -> bool:
    """Whether to use the channels-last memory format: ``"auto"`` means on CUDA (tensor cores want NHWC).

    ``"auto"`` leaves the CPU path as it was (contiguous). Measured on the CPU (``benchmarks/gpu_throughput.py``,
    32 px, batch 32, one thread): DenseNet-121 43.5 -> 51.4 img/s channels-last, ResNet-50 25.4 -> 26.6, ResNet-18
    47.5 -> 47.3; ``--channels_last true`` is worth trying on a CPU.

    Raises:
        ConfigError: ``channels_last`` is not ``True``, ``False`` or ``"auto"``.
    """
    if channels_last == "auto":
        return _is_cuda(device)
    if not isinstance(channels_last, bool):
        raise ConfigError(f"setting channels_last={channels_last!r} is not valid: choose from [True, False, 'auto']")
    return channels_last


def memory_format(channels_last: bool | str, device: torch.device | str) -> torch.memory_format:
    """``torch.channels_last`` or ``torch.contiguous_format``, for ``module.to(device, memory_format=...)``."""
    return torch.channels_last if use_channels_last(channels_last, device) else torch.contiguous_format


class PrecisionHandler:
    """Give a MONAI trainer the loss scaling its precision needs, when each run starts.

    MONAI's ``Trainer.run()`` builds an enabled ``GradScaler`` whenever ``amp`` is on, and its iteration
    autocasts only while it holds a scaler. For bf16 this handler swaps in a *disabled* scaler
    (``scale`` and ``unscale_`` are no-ops, ``step`` is ``optimizer.step``) on ``STARTED``, before any
    iteration; fp16 keeps MONAI's scaler; fp32 has none. Put it first in ``train#handlers`` so a resumed
    checkpoint's scaler state is loaded into the scaler that is used.

    Args:
        precision: the ``precision`` config value.
        device: the trainer's device.
    """

    def __init__(self, precision: str, device: torch.device | str) -> None:
        self.precision = resolve_precision(precision, device)

    def attach(self, engine: Engine) -> None:
        """Register on ``engine``'s ``STARTED`` event."""
        engine.add_event_handler(Events.STARTED, self.set_scaler)

    def set_scaler(self, engine: Engine) -> None:
        """Replace ``engine.scaler`` by a disabled one for bf16; leave it for fp16 and fp32."""
        if self.precision == "bf16":
            engine.scaler = torch.amp.GradScaler("cuda", enabled=False)  # type: ignore[attr-defined]
        logger.info("training precision %s (%s)", self.precision,
                    "loss scaling" if getattr(engine, "scaler", None) is not None and engine.scaler.is_enabled()
                    else "no loss scaling")  # fmt: skip
