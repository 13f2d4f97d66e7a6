"""What each fine-tuning strategy means across federated rounds, and which combinations are refused.

Under :mod:`common.federated.site` the bundle's trainer lives for the whole federation and its epochs are
numbered by global round (round ``r`` trains epochs ``r*E+1 .. (r+1)*E`` for ``E`` local epochs), so:

* **LP-FT**: linear probing for the first ``lp_epochs / E`` rounds, full fine-tuning from the next round on, at
  every site in the same round. ``lp_epochs`` must be a multiple of ``E`` (else the switch would fall inside a
  round and the probed head would be averaged with half fine-tuned backbones): refused otherwise.
* **Gradual unfreezing**: unfreezes by global epoch, the same way, at every site in the same epoch (a step may fall
  inside a round; all sites take it together).
* **L2-SP / L1-SP**: the anchor is the pretrained weights (taken when the site's optimizer is built, after the
  bundle's ``initialize`` loads ``pretrained``), not the last global model; the first global model is those same
  pretrained weights (:func:`common.federated.model.write_initial_model`). ``pretrained: none`` is refused: there
  would be no pretrained point to anchor to.
* **Auto-RGN**: relative gradient norms are recomputed locally at the start of every local epoch, on the site's
  own batches, after the global weights are loaded; nothing about them is sent.
* **LP, BitFit, surgical, cut-off layer**: frozen tensors are never changed at a site, so their differences are
  exactly zero and the global copy stays bit-for-bit the starting one (tested).
* **Cached-feature variants** (``lp_cached``, ``cutoff_cached``) train a head-only network on cached features:
  the trained module is not the global model, so they are refused.

Example:
    >>> check_strategy("configs/finetune/lp_ft.json", local_epochs=1, pretrained="imagenet")  # doctest: +SKIP
    'lp_ft'
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from common.errors import ConfigError

__all__ = ["STRUCTURAL_KEYS", "check_strategy", "strategy_name"]

#: overlay keys that replace what the trainer trains (the global model would no longer be the trained module)
STRUCTURAL_KEYS = ("train#trainer#network", "feature_cache", "network_def", "network")
_ANCHORED = ("common.finetune.L2SP", "common.finetune.L1SP")
_EPOCH_SCHEDULES = {"common.finetune.LPFT": "lp_epochs"}


def strategy_name(overlay: str | os.PathLike | None) -> str:
    """The strategy's name in results: the overlay's file stem (``ft`` when there is none).

    Example:
        >>> strategy_name("configs/finetune/lp_ft.json"), strategy_name(None)
        ('lp_ft', 'ft')
    """
    return Path(overlay).stem if overlay else "ft"


def _value(overlay: dict[str, Any], value: Any) -> Any:
    """An overlay value, following one ``@key`` reference to a top-level scalar of the overlay."""
    if isinstance(value, str) and value.startswith("@") and value[1:] in overlay:
        return overlay[value[1:]]
    return value


def check_strategy(overlay: str | os.PathLike | None, local_epochs: int, pretrained: Any) -> str:
    """Refuse a strategy overlay whose meaning does not survive federated rounds; return its name.

    Args:
        overlay: a ``configs/finetune/*.json`` file, or ``None`` for the bundle's own (full fine-tuning).
        local_epochs: local epochs per round.
        pretrained: the bundle's ``pretrained`` setting as the federation runs it.

    Raises:
        ConfigError: unreadable overlay, a cached-feature variant, an epoch schedule that is not a multiple of
            ``local_epochs``, or L2-SP / L1-SP without pretrained weights; the message names the file and key.
    """
    if overlay is None:
        return "ft"
    path = Path(overlay)
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"cannot read strategy overlay {path}: {error}") from error
    structural = [key for key in STRUCTURAL_KEYS if key in config]
    if structural:
        raise ConfigError(f"{path}: sets {structural}, so each site would train a different module than the global "
                          "model (cached-feature variants); use the uncached overlay (e.g. lp.json, cutoff.json)")
    finetune = config.get("finetune", {})
    target = str(finetune.get("_target_", "")) if isinstance(finetune, dict) else ""
    if target in _ANCHORED and str(pretrained).lower() == "none":
        raise ConfigError(f"{path}: {target.rsplit('.', 1)[-1]} anchors to the pretrained weights, but pretrained "
                          "is 'none'; set pretrained to a weight source")
    key = _EPOCH_SCHEDULES.get(target)
    if key is not None:
        epochs = _value(config, finetune.get(key, 1))
        if not isinstance(epochs, int) or epochs % local_epochs:
            raise ConfigError(f"{path}: finetune#{key} = {epochs!r} is not a multiple of the {local_epochs} local "
                              "epoch(s) per round; the schedule must switch on a round boundary")
    return strategy_name(path)
