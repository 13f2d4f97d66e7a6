"""The global model's architecture and starting weights, both taken from the bundle itself.

The server needs the network only for its parameter names and shapes (:func:`bundle_network`, referenced by dotted
path in the job); the starting weights are the bundle's ``pretrained`` source loaded exactly as a site loads it
(:func:`write_initial_model`), so every site's L2-SP / L1-SP anchor equals the first global model.

Example:
    >>> net = bundle_network("bundles/chest_xray_classification", {"arch": "resnet18"})  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch.nn as nn

from common.errors import ConfigError
from common.io import atomic_torch_save

__all__ = ["bundle_network", "bundle_parser", "write_initial_model"]


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
