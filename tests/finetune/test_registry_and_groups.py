"""Layer-group registry coverage for every architecture, the strategy registry and the handler."""

from __future__ import annotations

import pytest
import torch
import torchvision
from monai.networks import nets

from common.errors import ConfigError
from common.finetune import STRATEGIES, build_strategy
from common.networks.layer_groups import layer_groups

MODELS = {
    "densenet121": lambda: torchvision.models.densenet121(num_classes=2),
    "resnet18": lambda: torchvision.models.resnet18(num_classes=2),
    "resnet50": lambda: torchvision.models.resnet50(num_classes=2),
    "vgg19": lambda: torchvision.models.vgg19(num_classes=2),
    "swin_t": lambda: torchvision.models.swin_t(num_classes=2),
    "efficientnet": lambda: nets.EfficientNetBN("efficientnet-b0", pretrained=False, spatial_dims=2, num_classes=2),
    "monai_densenet121": lambda: nets.DenseNet121(spatial_dims=2, in_channels=3, out_channels=2),
    "unet": lambda: nets.UNet(2, 3, 6, (8, 16, 32, 64), (2, 2, 2)),
    "swin_unetr": lambda: nets.SwinUNETR(in_channels=3, out_channels=6, spatial_dims=2, feature_size=12),
}


@pytest.mark.parametrize("arch", list(MODELS), ids=list(MODELS))
def test_groups_cover_every_parameter_once_and_end_with_head(arch: str) -> None:
    model = MODELS[arch]()
    groups = layer_groups(model)
    assert groups[-1].name == "head" and len(groups) >= 4
    for name, _ in model.named_parameters():
        assert sum(g.owns(name) for g in groups) == 1, name


def test_unregistered_model_is_refused() -> None:
    with pytest.raises(ConfigError, match="no layer groups registered for Linear"):
        layer_groups(torch.nn.Linear(2, 2))


def test_unknown_strategy_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match="unknown strategy 'lpft'; did you mean 'lp_ft'\\? choose from: ft, lp"):
        build_strategy("lpft")


def test_bad_strategy_arguments() -> None:
    with pytest.raises(ConfigError, match="bad arguments for strategy 'lp'"):
        build_strategy("lp", epochs=3)


@pytest.mark.parametrize("name", list(STRATEGIES), ids=list(STRATEGIES))
def test_every_strategy_builds_groups_on_densenet(name: str) -> None:
    model = MODELS["densenet121"]()
    groups = build_strategy(name).param_groups(model, 1e-3)
    assert groups and all({"name", "params", "lr", "weight_decay"} <= set(g) for g in groups)
    assert any(p.requires_grad for g in groups for p in g["params"])


def test_handler_unscales_amp_gradients_before_after_backward() -> None:
    from types import SimpleNamespace

    from ignite.engine import Engine
    from monai.engines import IterationEvents

    from common.finetune import FinetuneHandler, FinetuneStrategy

    seen: list[str] = []

    class Probe(FinetuneStrategy):
        def after_backward(self, engine: object) -> None:
            seen.append("after_backward")

    class Scaler:
        def unscale_(self, optimizer: object) -> None:
            seen.append("unscale")

    engine = Engine(lambda e, b: None)
    engine.register_events(*IterationEvents)
    engine.amp, engine.scaler, engine.optimizer = True, Scaler(), SimpleNamespace()
    FinetuneHandler(Probe()).attach(engine)
    engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
    assert seen == ["unscale", "after_backward"]
