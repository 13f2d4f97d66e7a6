"""Backbones, their head and layer registry, and pretrained weight transfer."""

from __future__ import annotations

from common.networks.checkpoint_card import check_checkpoint, read_card
from common.networks.factory import build_classifier
from common.networks.layer_groups import LayerGroup, encoder_modules, layer_groups
from common.networks.registry import ARCHITECTURES, ArchSpec, get_arch
from common.networks.resnet_encoder import TorchvisionResNetEncoder
from common.networks.segmentation import SEGMENTERS, SegmenterSpec, build_segmenter, check_patch_size, get_segmenter
from common.networks.weights import (
    TransferReport,
    imagenet_weights_file,
    load_pretrained,
    read_state_dict,
    require_checkpoint,
    resolve_state_dict,
)

__all__ = [
    "LayerGroup",
    "encoder_modules",
    "layer_groups",
    "ARCHITECTURES",
    "ArchSpec",
    "SEGMENTERS",
    "SegmenterSpec",
    "TorchvisionResNetEncoder",
    "TransferReport",
    "build_classifier",
    "check_checkpoint",
    "read_card",
    "build_segmenter",
    "check_patch_size",
    "get_arch",
    "get_segmenter",
    "imagenet_weights_file",
    "load_pretrained",
    "read_state_dict",
    "require_checkpoint",
    "resolve_state_dict",
]
