"""Drive a fine-tuning strategy inside a MONAI ``SupervisedTrainer``."""

from __future__ import annotations

from typing import Any

from ignite.engine import Engine, Events
from monai.engines import IterationEvents
from monai.utils.enums import CommonKeys

from common.finetune.base import FinetuneStrategy

__all__ = ["FinetuneHandler"]


class FinetuneHandler:
    """Attach a :class:`FinetuneStrategy` to a trainer: epoch hook, loss penalty, post-backward hook.

    The penalty is added at ``LOSS_COMPLETED``, before the trainer calls ``backward`` on
    ``engine.state.output["loss"]``, so it is part of the gradient and of the logged loss. A strategy's
    ``after_backward`` sees true (unscaled) gradients under AMP.

    Args:
        strategy: the strategy (the bundle's ``finetune`` object).
        lr_scheduler: the bundle's scheduler, so strategies that change learning rates keep its progress.
    """

    def __init__(self, strategy: FinetuneStrategy, lr_scheduler: Any = None) -> None:
        self.strategy = strategy
        strategy.lr_scheduler = lr_scheduler

    def attach(self, engine: Engine) -> None:
        """Register the strategy's hooks on ``engine``."""
        engine.add_event_handler(Events.EPOCH_STARTED, self.strategy.on_epoch_start)
        engine.add_event_handler(IterationEvents.LOSS_COMPLETED, self._add_penalty)
        if type(self.strategy).after_backward is not FinetuneStrategy.after_backward:
            engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self._after_backward)

    def _after_backward(self, engine: Engine) -> None:
        # Under AMP the gradients are still multiplied by the loss scale here; unscale them once (the
        # GradScaler then skips its own unscale in step()), as PyTorch documents for gradient clipping.
        scaler = getattr(engine, "scaler", None)
        if getattr(engine, "amp", False) and scaler is not None:
            scaler.unscale_(engine.optimizer)
        self.strategy.after_backward(engine)

    def _add_penalty(self, engine: Engine) -> None:
        extra = self.strategy.penalty(engine.network)
        if extra is not None:
            engine.state.output[CommonKeys.LOSS] = engine.state.output[CommonKeys.LOSS] + extra
