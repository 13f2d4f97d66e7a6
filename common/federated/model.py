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

__all__ = ["POOLED_KEY_METRIC", "bundle_key_metric", "bundle_network", "bundle_parser", "check_pooled_results",
           "write_initial_model"]

#: the validation key metric of the bundles whose per-site test predictions ``simulate`` can pool (multi-label
#: classification: :func:`common.federated.results.pooled_metrics` reads predictions.npz and reports ``mean_auc``)
POOLED_KEY_METRIC = "val_mean_auc"


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


def check_pooled_results(bundle: str | os.PathLike) -> None:
    """Refuse a bundle whose test reports ``simulate`` cannot pool into rounds.csv / results.csv.

    The site side (FL overlays under MonaiAlgo, ``export``) works for every bundle with overlays; the simulator's
    per-round and pooled results use the multi-label classification metrics (``mean_auc`` from predictions.npz).
    Single-label bundles report ``macro_auc`` and segmentation bundles a Dice / HD95 report without predictions.npz,
    so pooling them would fail only after the whole federation ran, or report a metric under the wrong name.

    Raises:
        ConfigError: the bundle's key metric is not :data:`POOLED_KEY_METRIC`.
    """
    metric = bundle_key_metric(bundle)
    if metric != POOLED_KEY_METRIC:
        raise ConfigError(
            f"bundle {Path(bundle).name} is scored by {metric}: `simulate` pools the sites' test predictions with the "
            f"multi-label classification metrics ({POOLED_KEY_METRIC}) only, so its rounds.csv/results.csv cannot be "
            f"computed yet. Its FL overlays run under MonaiAlgo; use `export` and deploy the job, where each site "
            f"keeps its own per-round reports (docs/federated.md)")


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
