"""Resumable training: a full training state saved atomically every epoch, and restored on the next start.

:class:`TrainingCheckpoint` is a trainer handler (the last of a bundle's ``train#handlers``). At the end of every
epoch, after validation and the scheduler step, it writes ``models/checkpoint.pt`` atomically with everything
a resumed run needs to continue exactly where the killed one stopped:

* network, optimizer, learning-rate scheduler and AMP grad scaler state dicts;
* the trainer's progress (epoch, iteration) and the validator's best metric and best epoch;
* the best-model saver's tracking list (so a worse epoch after resuming does not replace ``model.pt``);
* the fine-tuning strategy's state (frozen parameters, held BatchNorm statistics, e.g. LP-FT's phase);
* random states: Python, NumPy, torch (CPU and CUDA) and every random transform of the training dataset
  (MONAI seeds those once per DataLoader, so they are not derived from the global seed at each epoch);
* the run's settings fingerprint (:func:`run_fingerprint`).

When training starts, ``resume`` decides what happens to an existing checkpoint:

* ``"auto"`` (default): continue from it when its fingerprint equals this run's; otherwise start afresh.
* ``"never"``: always start afresh.
* ``"force"``: continue from it even when the settings differ (e.g. more epochs); it must exist.

Starting afresh never overwrites a previous run's models: ``model.pt``, its card and ``checkpoint.pt`` are
moved into ``models/previous-<time>/`` and the log says so. On CPU with the same seed, a run killed after
epoch k and resumed ends with the same weights as an uninterrupted run (tested bit for bit).
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from ignite.engine import Engine, Events
from monai.transforms import Randomizable, Transform

from common.errors import ConfigError, WeightsError
from common.io import atomic_torch_save
from common.networks.checkpoint_card import card_path, file_sha256, fingerprint
from common.networks.unwrap import unwrap

__all__ = ["RESUME_MODES", "TrainingCheckpoint", "random_states", "restore_random_states", "run_fingerprint"]

logger = logging.getLogger(__name__)

RESUME_MODES = ("auto", "never", "force")
#: settings that do not change what a run computes (so a resume with another value is the same run)
UNFINGERPRINTED = frozenset({"num_workers", "resume", "check_images", "val_batch_size", "dataset_dir", "datalist"})
CHECKPOINT_VERSION = 1


def run_fingerprint(settings: Mapping[str, Any], finetune: Any = None,
                    datalist: str | os.PathLike | None = None) -> str:
    """Fingerprint of what a training run computes: its settings, strategy and datalist content.

    ``num_workers``, ``val_batch_size``, ``check_images``, ``resume`` and the dataset's location are left out
    (they do not change the result); the datalist file enters by content, so a moved dataset still resumes.
    """
    kept = {k: v for k, v in settings.items() if k not in UNFINGERPRINTED}
    data = file_sha256(datalist) if datalist and Path(datalist).is_file() else None
    return fingerprint({"settings": kept, "finetune": repr(finetune) if finetune is not None else None,
                        "datalist_sha256": data})


def _random_generators(obj: Any, seen: set[int] | None = None) -> list[np.random.RandomState]:
    """Every NumPy generator a transform pipeline draws from, in a fixed order.

    MONAI's random transforms each hold one (``R``), and so do the array transforms inside dictionary ones
    (``RandAffined.rand_affine.rand_affine_grid.R``), so the search goes through attributes, lists and dicts.
    """
    seen = set() if seen is None else seen
    found: list[np.random.RandomState] = []
    if id(obj) in seen:
        return found
    seen.add(id(obj))
    if isinstance(obj, np.random.RandomState):
        return [obj]
    if isinstance(obj, list | tuple):
        children: list[Any] = list(obj)
    elif isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, Randomizable | Transform):
        children = list(vars(obj).values())
    else:
        return found
    for child in children:
        found += _random_generators(child, seen)
    return found


def _numpy_state(rng: np.random.RandomState) -> dict[str, Any]:
    name, keys, pos, has_gauss, gauss = rng.get_state()
    return {"name": name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _set_numpy_state(rng: np.random.RandomState, state: Mapping[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    rng.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["gauss"]))


def random_states(transform: Any = None) -> dict[str, Any]:
    """Python, NumPy, torch (CPU, CUDA) and ``transform``'s random transforms' states, loadable with weights_only."""
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
        "numpy": _numpy_state(np.random.mtrand._rand),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "transforms": [_numpy_state(r) for r in _random_generators(transform)],
    }


def restore_random_states(state: Mapping[str, Any], transform: Any = None) -> None:
    """Inverse of :func:`random_states` (the transform must hold the same random transforms, in order)."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    _set_numpy_state(np.random.mtrand._rand, state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    generators = _random_generators(transform)
    if len(generators) != len(state["transforms"]):
        raise WeightsError(f"the checkpoint holds {len(state['transforms'])} random transform states but the training "
                           f"pipeline has {len(generators)}: it is from another configuration")
    for generator, saved in zip(generators, state["transforms"], strict=True):
        _set_numpy_state(generator, saved)


def _is_main_process() -> bool:
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or \
        torch.distributed.get_rank() == 0


class TrainingCheckpoint:
    """Save the whole training state every epoch and resume from it (see the module docstring).

    Args:
        ckpt_dir: the bundle's ``models`` folder.
        network: the full network (``@network``; with a feature cache the trainer trains only its top).
        optimizer: the optimizer.
        lr_scheduler: the scheduler, or ``None``.
        finetune: the fine-tuning strategy (its frozen set is saved).
        validator: the validation evaluator (best metric), or ``None``.
        model_saver: the best-model saver (:class:`common.engines.ModelCheckpointSaver`), or ``None``.
        dataset: the training dataset (its transform's random states are saved), or ``None``.
        fingerprint: :func:`run_fingerprint` of this run.
        resume: ``"auto"``, ``"never"`` or ``"force"``.
        filename: the checkpoint's name under ``ckpt_dir``.
    """

    def __init__(self, ckpt_dir: str | os.PathLike, network: nn.Module, optimizer: torch.optim.Optimizer,
                 lr_scheduler: Any = None, finetune: Any = None, validator: Engine | None = None,
                 model_saver: Any = None, dataset: Any = None, fingerprint: str = "", resume: str = "auto",
                 filename: str = "checkpoint.pt") -> None:
        if resume not in RESUME_MODES:
            raise ConfigError(f"resume must be one of {list(RESUME_MODES)}, got {resume!r}")
        self.path = Path(ckpt_dir) / filename
        self.network, self.optimizer, self.lr_scheduler = network, optimizer, lr_scheduler
        self.finetune, self.validator, self.model_saver = finetune, validator, model_saver
        self.dataset, self.fingerprint, self.resume = dataset, fingerprint, resume
        self.resumed_from: int | None = None

    def attach(self, engine: Engine) -> None:
        """Restore at STARTED (before the first epoch), save at every EPOCH_COMPLETED."""
        engine.add_event_handler(Events.STARTED, self.start)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.save)

    # -- saving -------------------------------------------------------------------------------------------------
    def state(self, engine: Engine) -> dict[str, Any]:
        """Everything :meth:`save` writes."""
        scaler = getattr(engine, "scaler", None)
        validator_state = getattr(self.validator, "state", None)
        return {
            "version": CHECKPOINT_VERSION,
            "fingerprint": self.fingerprint,
            "model": unwrap(self.network).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict() if self.lr_scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "trainer": {"epoch": engine.state.epoch, "iteration": engine.state.iteration,
                        "max_epochs": engine.state.max_epochs, "epoch_length": engine.state.epoch_length},
            "validator": {"best_metric": float(getattr(validator_state, "best_metric", -1.0)),
                          "best_metric_epoch": int(getattr(validator_state, "best_metric_epoch", -1))},
            "model_saver": self.model_saver.state_dict() if self.model_saver is not None else None,
            "finetune": self.finetune.state_dict(self.network) if self.finetune is not None else None,
            "random": random_states(getattr(self.dataset, "transform", None)),
        }

    def save(self, engine: Engine) -> None:
        """Write the training state atomically (main process only)."""
        if _is_main_process():
            atomic_torch_save(self.state(engine), self.path)

    # -- starting -----------------------------------------------------------------------------------------------
    def _read(self) -> dict[str, Any]:
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any reader failure becomes one typed, named error
            reason = str(err).split(". ")[0]
            raise WeightsError(f"cannot read the training checkpoint {self.path} ({reason}); move it away, or set "
                               f"resume to 'never' to start afresh (it is then kept in a previous-* folder)") from err
        if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
            raise WeightsError(f"{self.path} is not a medxfer training checkpoint (version {CHECKPOINT_VERSION})")
        return state

    def _move_aside(self) -> None:
        folder = self.path.parent
        files = [f for f in (folder / "model.pt", card_path(folder / "model.pt"), self.path) if f.exists()]
        if not files or not _is_main_process():
            return
        aside = folder / time.strftime("previous-%Y%m%d-%H%M%S")
        while aside.exists():
            aside = aside.with_name(aside.name + "_")
        aside.mkdir()
        for file in files:
            os.replace(file, aside / file.name)
        logger.warning("starting a new training run: the previous run's %s moved to %s",
                       ", ".join(f.name for f in files), aside)

    def start(self, engine: Engine) -> None:
        """Resume from the checkpoint or start afresh, as ``resume`` says."""
        exists = self.path.is_file()
        if self.resume == "force" and not exists:
            raise ConfigError(f"resume is 'force' but there is no training checkpoint {self.path}")
        state = self._read() if exists and self.resume != "never" else None
        if state is not None and state["fingerprint"] != self.fingerprint and self.resume == "auto":
            logger.warning("%s is from a run with other settings (fingerprint %s, this run %s): not resuming "
                           "(set resume to 'force' to continue it anyway)", self.path, state["fingerprint"],
                           self.fingerprint)
            state = None
        if state is None:
            self._move_aside()
            return
        self._load(engine, state)

    def _load(self, engine: Engine, state: dict[str, Any]) -> None:
        unwrap(self.network).load_state_dict(state["model"])
        if self.finetune is not None and state["finetune"] is not None:
            try:
                self.finetune.load_state_dict(state["finetune"], self.network)
            except KeyError as err:
                raise WeightsError(f"{self.path}: the strategy state does not fit this network ({err})") from err
        self.optimizer.load_state_dict(state["optimizer"])
        if self.lr_scheduler is not None and state["lr_scheduler"] is not None:
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        scaler = getattr(engine, "scaler", None)
        if scaler is not None and state["scaler"] is not None:
            scaler.load_state_dict(state["scaler"])
        if self.model_saver is not None and state["model_saver"]:
            self.model_saver.load_state_dict(state["model_saver"])
        if self.validator is not None:
            self.validator.state.best_metric = state["validator"]["best_metric"]
            self.validator.state.best_metric_epoch = state["validator"]["best_metric_epoch"]
        done = int(state["trainer"]["epoch"])
        if done > engine.state.max_epochs:
            raise ConfigError(f"{self.path} has {done} epochs done but this run has epochs={engine.state.max_epochs}; "
                              f"set epochs >= {done} or resume to 'never'")
        engine.state.epoch = done
        engine.state.iteration = int(state["trainer"]["iteration"])
        restore_random_states(state["random"], getattr(self.dataset, "transform", None))
        self.resumed_from = done
        if done >= engine.state.max_epochs:
            logger.info("training already finished (%d of %d epochs in %s); set resume to 'never' to train again",
                        done, engine.state.max_epochs, self.path)
        else:
            logger.info("resuming training after epoch %d of %d from %s (best %s at epoch %d)", done,
                        engine.state.max_epochs, self.path, json.dumps(state["validator"]["best_metric"]),
                        state["validator"]["best_metric_epoch"])
