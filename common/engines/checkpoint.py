"""Crash-safe model saving through MONAI's ``CheckpointSaver``, with a card saying what the model is.

MONAI's ``CheckpointSaver`` writes through ignite's ``DiskSaver(atomic=False)``, and with a fixed file name
(``key_metric_filename="model.pt"``) ignite removes the previous best file *before* writing the new one: a
kill during the save leaves a truncated ``model.pt`` and no other copy. :class:`ModelCheckpointSaver` is the
same handler with its save handler replaced by :class:`AtomicDiskSaver`: the new file is written to a
temporary sibling, flushed to disk (``fsync``) and renamed over the old one, so at every instant ``model.pt``
is either the previous complete file or the new complete file.

Beside every saved model it writes a **checkpoint card** (``model.json``, see
:mod:`common.networks.checkpoint_card`): architecture, class names, preprocessing settings and their
fingerprint, the training settings' fingerprint, epoch, metric, medxfer version and the model file's
sha256. Evaluation and inference read the card and refuse a model that does not fit their settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ignite.engine import Engine
from ignite.handlers.checkpoint import BaseSaveHandler
from monai.handlers import CheckpointSaver

from common.io import atomic_torch_save
from common.networks.checkpoint_card import card_path, make_card, write_card

__all__ = ["AtomicDiskSaver", "ModelCheckpointSaver"]


class AtomicDiskSaver(BaseSaveHandler):
    """An ignite save handler that writes every checkpoint atomically (and its card, when given one).

    Args:
        dirname: the folder checkpoints go to (created).
        filename: a fixed file name (``"model.pt"``) used instead of ignite's generated one; removing the
            previous file is then a no-op, since the atomic rename already replaced it.
        card: checkpoint-card fields (see :func:`common.networks.checkpoint_card.make_card`); ``None``
            writes no card.
    """

    def __init__(self, dirname: str | os.PathLike, filename: str | None = None,
                 card: Mapping[str, Any] | None = None) -> None:
        self.dirname = Path(dirname)
        self.filename = filename
        self.card = dict(card) if card is not None else None
        self.engine: Engine | None = None

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        path = self.dirname / (self.filename or filename)
        atomic_torch_save(checkpoint, path)
        if self.card is not None:
            state = getattr(self.engine, "state", None)
            metric_name = getattr(state, "key_metric_name", None)
            metrics = getattr(state, "metrics", {}) or {}
            metric = {metric_name: float(metrics[metric_name])} if metric_name in metrics else {}
            write_card(card_path(path), make_card(path, epoch=getattr(state, "epoch", None), metric=metric,
                                                  **self.card))

    def remove(self, filename: str) -> None:
        if self.filename is not None:
            return  # the fixed file was replaced atomically by the save that follows; deleting it would lose it
        path = self.dirname / filename
        path.unlink(missing_ok=True)
        card_path(path).unlink(missing_ok=True)


class ModelCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` whose every save is atomic and, for the best model, comes with a card.

    Takes every argument of :class:`monai.handlers.CheckpointSaver`, plus:

    Args:
        card: checkpoint-card fields written beside the key-metric model (``arch``, ``class_names``,
            ``preprocessing``, ``settings_fingerprint`` ...; see :func:`common.networks.checkpoint_card.make_card`).

    Example (a bundle's ``validate#handlers``)::

        {"_target_": "common.engines.ModelCheckpointSaver", "save_dir": "@ckpt_dir",
         "save_dict": {"model": "@network"}, "save_key_metric": true, "key_metric_filename": "model.pt",
         "card": "@checkpoint_card"}
    """

    def __init__(self, *args: Any, card: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._savers: list[AtomicDiskSaver] = []
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is None:
                continue
            fixed = getattr(checkpoint.save_handler, "filename", None)
            with_card = card if checkpoint is self._key_metric_checkpoint else None
            saver = AtomicDiskSaver(self.save_dir, filename=fixed, card=with_card)
            checkpoint.save_handler = saver
            self._savers.append(saver)

    def attach(self, engine: Engine) -> None:
        for saver in self._savers:
            saver.engine = engine
        super().attach(engine)

    def state_dict(self) -> dict[str, Any]:
        """The key-metric tracking list (best score so far), for resuming a run."""
        checkpoint = self._key_metric_checkpoint
        return checkpoint.state_dict() if checkpoint is not None else {}
