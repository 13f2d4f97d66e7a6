"""FindingGradCAM: MONAI's GradCAM per class, input-sized maps, per-architecture target layers."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from monai.visualize import GradCAM

from common.errors import ConfigError
from common.explain import TARGET_LAYERS, FindingGradCAM, max_normalise, target_layer
from common.networks import build_classifier


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3))  # fmt: skip


def test_maps_equal_monai_gradcam_called_directly() -> None:
    network, x = tiny_net(), torch.rand(2, 3, 12, 10)
    maps = FindingGradCAM(network, layer="2")(x, [0, 2])
    assert maps.shape == (2, 2, 12, 10)
    reference = GradCAM(tiny_net(), target_layers="2", postprocessing=lambda m: m)
    for channel, index in enumerate([0, 2]):
        raw = reference(x, class_idx=index)
        peak = raw.flatten(1).amax(1).view(-1, 1, 1, 1)
        torch.testing.assert_close(maps[:, channel:channel + 1], raw / peak)
    assert float(maps.amax()) == pytest.approx(1.0) and float(maps.amin()) >= 0.0


def test_max_normalise_keeps_zero_maps_zero() -> None:
    maps = torch.stack([torch.zeros(1, 4, 4), torch.full((1, 4, 4), 2.0)])
    out = max_normalise(maps)
    assert torch.equal(out[0], torch.zeros(1, 4, 4)) and torch.equal(out[1], torch.ones(1, 4, 4))


@pytest.mark.parametrize("arch", ["resnet18"], ids=["resnet18"])
def test_registered_arch_gives_input_sized_maps(arch: str) -> None:
    network = build_classifier(arch, 4)
    for p in network.parameters():  # frozen weights: the map must still exist
        p.requires_grad_(False)
    maps = FindingGradCAM(network, arch)(torch.rand(1, 3, 32, 32), [1, 3])
    assert maps.shape == (1, 2, 32, 32) and network.training


def test_target_layers_are_modules_of_each_arch() -> None:
    for arch, layer in TARGET_LAYERS.items():
        assert layer in dict(build_classifier(arch, 2).named_modules()), arch


def test_unknown_arch_refused_listing_supported() -> None:
    with pytest.raises(ConfigError, match=r"'vgg19'.*supported: densenet121 \(features.denseblock4\), resnet18"):
        target_layer("vgg19")
    with pytest.raises(ConfigError, match="not a module"):
        FindingGradCAM(tiny_net(), layer="features.norm5")


def test_swin_target_is_channels_first_stage4() -> None:
    # torchvision's Swin stages are channels-last; "permute" is the (B, C, H, W) view MONAI's Grad-CAM expects.
    network = build_classifier("swin_t", 2)
    seen: list[tuple[int, ...]] = []
    network.get_submodule(target_layer("swin_t")).register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    maps = FindingGradCAM(network, "swin_t")(torch.rand(1, 3, 64, 64), [0])
    assert seen[0] == (1, 768, 2, 2) and maps.shape == (1, 1, 64, 64)
