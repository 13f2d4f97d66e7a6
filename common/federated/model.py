"""The global model's architecture and starting weights, both taken from the bundle itself.

The server needs the network only for its parameter names and shapes (:func:`bundle_network`, referenced by dotted
path in the job); the starting weights are the bundle's ``pretrained`` source loaded exactly as a site loads it
(:func:`write_initial_model`), so every site's L2-SP / L1-SP anchor equals the first global model.

Example:
    >>> net = bundle_network("bundles/chest_xray_classification", {"arch": "resnet18"})  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch.nn as nn

from common.errors import ConfigError
from common.io import atomic_torch_save

__all__ = ["POOLED_TEST_METRICS", "bundle_key_metric", "bundle_network", "bundle_parser", "check_pooled_results",
           "write_initial_model"]

#: validation key metric -> the test metric ``simulate`` pools across sites (the same name in each site's
#: ``metrics.json``; :func:`common.federated.results.pooled_metrics` knows how to pool each of them)
POOLED_TEST_METRICS = {
    "val_mean_auc": "mean_auc",  # multi-label classification: predictions.npz
    "val_macro_auc": "macro_auc",  # single-label classification: predictions.npz (y_true one-hot)
    "val_mean_dice": "mean_dice",  # segmentation: the pixel confusion matrix in metrics.json
}


def bundle_parser(bundle: str | os.PathLike, overrides: Mapping[str, Any] | None = None,
                  extra: list[str | os.PathLike] | None = None) -> Any:
    """A ConfigParser on ``configs/train.json`` (+ ``extra`` overlays) of ``bundle`` with ``overrides``."""
    from monai.bundle import ConfigParser

    root = Path(bundle).resolve()
    train = root / "configs" / "train.json"
    if not train.is_file():
        raise ConfigError(f"{root} is not a bundle: {train} is missing")
    parser = ConfigParser()
    parser.read_config([str(train), *(str(p) for p in extra or [])])
    parser.update({"bundle_root": str(root), **dict(overrides or {})})
    return parser


def bundle_key_metric(bundle: str | os.PathLike) -> str:
    """The name of the bundle's validation key metric (``validate#key_metric`` of ``configs/train.json``).

    The server selects the best global model by the sites' mean of it, so it must be what the bundle's own validator
    reports (``val_mean_auc``, ``val_macro_auc``, ``val_mean_dice`` ...).

    Example:
        >>> bundle_key_metric("bundles/breast_histology_segmentation_unet")  # doctest: +SKIP
        'val_mean_dice'
    """
    train = Path(bundle).resolve() / "configs" / "train.json"
    try:
        names = list(json.loads(train.read_text()).get("validate", {}).get("key_metric") or {})
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read the key metric of {train}: {error}") from error
    if len(names) != 1:
        raise ConfigError(f"{train} needs exactly one validate#key_metric for federated model selection, found {names}")
    return names[0]


def check_pooled_results(bundle: str | os.PathLike) -> str:
    """The test metric ``simulate`` reports for ``bundle`` (per round, per site and pooled), or a refusal.

    The metric is the bundle's own: its validation key metric without ``val_`` (``mean_auc`` for multi-label,
    ``macro_auc`` for single-label classification, ``mean_dice`` for segmentation), which is also the key of each
    site's ``metrics.json``. A bundle scored by anything else is refused before the federation runs, not after.

    Example:
        >>> check_pooled_results("bundles/breast_histology_segmentation_unet")  # doctest: +SKIP
        'mean_dice'

    Raises:
        ConfigError: the bundle's key metric is not one of :data:`POOLED_TEST_METRICS`.
    """
    metric = bundle_key_metric(bundle)
    if metric not in POOLED_TEST_METRICS:
        raise ConfigError(
            f"bundle {Path(bundle).name} is scored by {metric}: `simulate` can pool the sites' test reports of "
            f"{', '.join(POOLED_TEST_METRICS)} only, so its rounds.csv/results.csv cannot be computed. Its FL overlays "
            f"run under MonaiAlgo; use `export` and deploy the job, where each site keeps its own per-round reports "
            f"(docs/federated.md)")
    return POOLED_TEST_METRICS[metric]


def bundle_network(bundle: str, overrides: dict[str, Any] | None = None) -> nn.Module:
    """The bundle's ``network_def`` (no weights), built on the CPU.

    Example:
        >>> net = bundle_network("bundles/chest_xray_classification", {"arch": "resnet18"})  # doctest: +SKIP
    """
    parser = bundle_parser(bundle, overrides)
    return parser.get_parsed_content("network_def", instantiate=True)


def write_initial_model(bundle: str | os.PathLike, overrides: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Build the bundle's network, load its ``pretrained`` source as its ``initialize`` does, save the state dict.

    Example:
        >>> write_initial_model("bundles/chest_xray_classification", {"pretrained": "none"}, "/tmp/init.pt")
        ... # doctest: +SKIP

    Returns:
        ``path``; a plain ``state_dict`` of tensors (readable with ``weights_only=True``).
    """
    parser = bundle_parser(bundle, overrides)
    network = parser.get_parsed_content("network")
    if "pretrained_report" in parser:  # the bundle's own weight loading (common.networks.weights)
        parser.get_parsed_content("pretrained_report")
    state = {name: tensor.detach().cpu().clone() for name, tensor in network.state_dict().items()}
    return atomic_torch_save(state, path)
