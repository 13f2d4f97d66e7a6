"""The sequential chain of each registered classifier equals its forward; cuts land at block boundaries."""

from __future__ import annotations

import pytest
import torch
import torchvision
from monai.networks.nets import DenseNet121

from common.errors import ConfigError
from common.networks import ARCHITECTURES, build_classifier
from common.networks.layer_groups import head_group
from common.networks.sequential import cut_points, sequential_chain, split_sequential


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES), ids=sorted(ARCHITECTURES))
def classifier(request: pytest.FixtureRequest) -> tuple[str, torch.nn.Module]:
    torch.manual_seed(0)
    return request.param, build_classifier(request.param, 3).eval()


def test_running_the_chain_equals_forward_bit_for_bit(classifier: tuple[str, torch.nn.Module]) -> None:
    _, model = classifier
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = x
        for _, module in sequential_chain(model):
            out = module(out)
        assert torch.equal(out, model(x))


LP_TOP = {"densenet121": ("classifier",), "resnet18": ("fc",), "resnet50": ("fc",), "swin_t": ("head",),
          "vgg19": ("classifier.5", "classifier.6"),  # VGG's dropout before the head stays trainable-side
          "efficientnet_lite0": ("_dropout", "_fc")}


def test_linear_probe_split_keeps_only_the_head_on_top(classifier: tuple[str, torch.nn.Module]) -> None:
    arch, model = classifier
    head = head_group(model)
    split = split_sequential(model, [n for n, _ in model.named_parameters() if not head.owns(n)])
    assert split.top_names == LP_TOP[arch]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(split.top(split.trunk(x)), model(x))
    trunk_params = {id(p) for p in split.trunk.parameters()}
    assert trunk_params.isdisjoint(id(p) for p in split.top.parameters())
    assert len(trunk_params) + sum(1 for _ in split.top.parameters()) == sum(1 for _ in model.parameters())


def test_densenet_cut_after_a_block_and_inside_one() -> None:
    model = torchvision.models.densenet121(num_classes=2)
    names = [n for n, _ in model.named_parameters()]
    upto = names.index("features.denseblock4.denselayer16.conv2.weight")
    split = split_sequential(model, names[: upto + 1])
    assert split.trunk_names[-1] == "features.denseblock4" and split.top_names[0] == "features.norm5"
    inside = names.index("features.denseblock4.denselayer15.conv2.weight")
    with pytest.raises(ConfigError, match=r"inside .features.denseblock4.*Cut after features\.denseblock4 or "):
        split_sequential(model, names[: inside + 1])


def test_nothing_left_to_train_is_refused() -> None:
    model = torchvision.models.resnet18(num_classes=2)
    with pytest.raises(ConfigError, match="nothing is left to train"):
        split_sequential(model, [n for n, _ in model.named_parameters()])


def test_cut_points_are_block_level() -> None:
    points = cut_points(torchvision.models.resnet18(num_classes=2))
    assert points == ["conv1", "bn1", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1",
                      "layer4.0", "layer4.1", "fc"]


def test_unregistered_architecture_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="no sequential chain registered for DenseNet121; known: DenseNet, ResNet"):
        sequential_chain(DenseNet121(spatial_dims=2, in_channels=1, out_channels=2))
