"""Checkpoint cards: a trained model says what it is, and evaluation / inference check it before loading.

Every ``models/model.pt`` a bundle's training writes gets a ``models/model.json`` beside it
(:class:`common.engines.ModelCheckpointSaver` writes both, each atomically)::

    {"format": "medxfer-checkpoint-card/1", "file": "model.pt", "sha256": "...", "arch": "densenet121",
     "num_classes": 14, "class_names": [...], "preprocessing": {"image_size": 224, "use_clahe": true, ...},
     "preprocessing_fingerprint": "3f2a...", "settings_fingerprint": "...", "epoch": 7,
     "metric": {"val_mean_auc": 0.84}, "medxfer_version": "0.1.0", "torch_version": "...", "created": "..."}

The model file stays a plain state dict, so MONAI's ``CheckpointLoader``, ``ckpt_export`` and other tools read it
unchanged; the card is a sidecar written after the model, with the model's sha256, so a card left behind by an
interrupted save is recognised rather than trusted. :func:`check_checkpoint` (called from every bundle's
evaluate and inference ``initialize``) refuses a model that does not fit the run with one line naming the key and
both values, e.g. ``models/model.pt was trained with arch='efficientnet_lite0' but this run has
arch='densenet121'; pass --arch efficientnet_lite0``, and refuses weights that are not finite.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from common.errors import WeightsError
from common.io import atomic_write_json, file_sha256

__all__ = [
    "CARD_FORMAT",
    "card_path",
    "check_checkpoint",
    "trained_settings",
    "file_sha256",
    "fingerprint",
    "make_card",
    "read_card",
    "require_finite",
    "write_card",
]

logger = logging.getLogger(__name__)

CARD_FORMAT = "medxfer-checkpoint-card/1"


def fingerprint(value: Any) -> str:
    """A short stable hash of a JSON-able value (keys sorted; tuples as lists); also the experiment cells'.

    Example:
        >>> fingerprint({"image_size": 224}) == fingerprint({"image_size": 224})
        True
    """
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def card_path(model_path: str | os.PathLike) -> Path:
    """The card of ``models/model.pt`` is ``models/model.json``."""
    path = Path(model_path)
    return path.with_name(path.stem + ".json")


def _medxfer_version() -> str:
    from common import __version__

    return __version__


def make_card(model_path: str | os.PathLike, *, arch: str, class_names: Sequence[str],
              preprocessing: Mapping[str, Any], settings_fingerprint: str | None = None,
              epoch: int | None = None, metric: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The card of the (already written) model file at ``model_path``.

    Args:
        model_path: the saved model file (its sha256 goes into the card).
        arch: the network's architecture name (the bundle's ``arch``).
        class_names: output names, in output order.
        preprocessing: every setting that changes what the network sees (``image_size``, CLAHE ...).
        settings_fingerprint: fingerprint of the training settings (:func:`common.engines.resume.run_fingerprint`).
        epoch: the training epoch the model is from.
        metric: ``{key metric name: value}`` at that epoch.
    """
    path = Path(model_path)
    preprocessing = json.loads(json.dumps(dict(preprocessing), default=str))
    return {
        "format": CARD_FORMAT,
        "file": path.name,
        "sha256": file_sha256(path),
        "arch": str(arch),
        "num_classes": len(class_names),
        "class_names": [str(c) for c in class_names],
        "preprocessing": preprocessing,
        "preprocessing_fingerprint": fingerprint(preprocessing),
        "settings_fingerprint": settings_fingerprint,
        "epoch": epoch,
        "metric": dict(metric or {}),
        "medxfer_version": _medxfer_version(),
        "torch_version": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_card(path: str | os.PathLike, card: Mapping[str, Any]) -> Path:
    """Write a card atomically."""
    return atomic_write_json(path, dict(card))


def trained_settings(card: Mapping[str, Any] | None) -> dict[str, Any]:
    """Config overrides that reproduce what a model was trained with: its card's preprocessing and ``arch``.

    A model trained at ``image_size=64`` is then served or evaluated at 64 px without the user repeating it.
    Empty for ``None`` (no card).
    """
    if not card:
        return {}
    out = dict(card.get("preprocessing") or {})
    if card.get("arch"):
        out["arch"] = str(card["arch"])
    return out


def read_card(model_path: str | os.PathLike) -> dict[str, Any] | None:
    """The card beside ``model_path``, or ``None`` when there is none (a model from elsewhere, or older)."""
    path = card_path(model_path)
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WeightsError(f"checkpoint card {path} is unreadable ({err}); delete it to load {Path(model_path).name} "
                           f"without checking its settings") from err
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise WeightsError(f"{path} is not a medxfer checkpoint card (expected format {CARD_FORMAT!r})")
    return card


def require_finite(state: Mapping[str, torch.Tensor], source: str | os.PathLike) -> None:
    """Raise ``WeightsError`` naming ``source`` and the first tensor holding NaN or infinity."""
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise WeightsError(f"{source}: tensor {key!r} holds {bad} NaN/infinite values; the weights are corrupt "
                               f"(a diverged or damaged training run) and are refused")


def _flag(key: str, value: Any) -> str:
    shown = json.dumps(value) if not isinstance(value, str) else value
    return f"--{key} {shown!r}" if isinstance(value, list) else f"--{key} {shown}"


def _compare(model: Path, key: str, trained: Any, current: Any) -> None:
    if isinstance(trained, float) or isinstance(current, float):
        same = isinstance(trained, int | float) and isinstance(current, int | float) and math.isclose(
            float(trained), float(current), rel_tol=1e-9, abs_tol=1e-12)
    else:
        same = trained == current
    if not same:
        raise WeightsError(f"{model} was trained with {key}={trained!r} but this run has {key}={current!r}; "
                           f"pass {_flag(key, trained)}")


def _check_fit(model: Path, state: Mapping[str, torch.Tensor], network: nn.Module, arch: str) -> None:
    from common.networks.unwrap import unwrap

    expected = unwrap(network).state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"{len(missing)} missing" if missing else "", f"{len(unexpected)} unexpected" if unexpected else "",
                 f"{len(wrong)} of another shape (e.g. {wrong[0]}: {tuple(state[wrong[0]].shape)} vs "
                 f"{tuple(expected[wrong[0]].shape)})" if wrong else ""]
        raise WeightsError(f"{model} does not fit the network arch={arch!r}: "
                           f"{', '.join(p for p in parts if p)} tensors; it has no checkpoint card saying what it "
                           f"was trained as: pass the arch, classes and image size it was trained with")


def check_checkpoint(model_path: str | os.PathLike, *, arch: str, class_names: Sequence[str],
                     preprocessing: Mapping[str, Any], network: nn.Module | None = None) -> Path:
    """Refuse a trained model that is missing, corrupt, not finite, or trained with other settings.

    Reads ``model.json`` beside the model when there is one and compares ``arch``, ``class_names`` and each
    ``preprocessing`` setting with this run's (one line naming the key and both values). A model without a card
    (trained elsewhere, or before cards existed) is checked for fit against ``network`` instead.

    Returns:
        ``model_path`` as a Path (so a config can use the call as the path).
    """
    from common.networks.weights import read_state_dict, require_checkpoint

    model = require_checkpoint(model_path)
    card = read_card(model)
    if card is not None:
        if card.get("sha256") != file_sha256(model):
            raise WeightsError(f"{card_path(model)} describes another file than {model} (sha256 differs): the save "
                               f"was interrupted between the two files; rerun training (it resumes), or delete "
                               f"{card_path(model).name} to load the model without checking its settings")
        _compare(model, "arch", card.get("arch"), str(arch))
        trained_names, names = list(card.get("class_names", [])), [str(c) for c in class_names]
        if trained_names != names:
            raise WeightsError(f"{model} was trained for {len(trained_names)} classes {trained_names} but this run "
                               f"has {len(names)} classes {names}; pass the trained class_names")
        trained_pre = card.get("preprocessing", {})
        for key, value in preprocessing.items():
            if key in trained_pre:
                _compare(model, key, trained_pre[key], json.loads(json.dumps(value, default=str)))
    state = read_state_dict(model)  # refuses non-finite weights too
    if card is None:
        logger.warning("%s has no checkpoint card (model.json): its arch, classes and preprocessing are not "
                       "verified", model)
        if network is not None:
            _check_fit(model, state, network, arch)
    return model
