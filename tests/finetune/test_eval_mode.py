"""A frozen part runs in eval mode entirely (issue 16 items 3 and 6): BatchNorm statistics and dropouts.

The reference linear probe extracts features with the whole backbone in eval mode; VGG-19's classifier
dropouts (classifier.2, classifier.5) sit in the frozen part under LP, so with MONAI calling ``network.train()``
every iteration they must still not drop anything. Surgical fine-tuning (anniesch/surgical-finetuning) trains
the chosen block with the rest in eval mode; the new head trains too.
"""

from __future__ import annotations

import pytest
import torch

from common.finetune import LP, LPFT, Surgical
from common.finetune.freezing import is_frozen_bn, is_held_dropout, restore_trainable_state, trainable_state
from common.networks import build_classifier
from tests.finetune.conftest import snapshot, train_steps


@pytest.fixture(scope="module")
def vgg19() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_classifier("vgg19", 3)


def _dropouts(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}


def _train_twice_then_eval(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two forward passes in train mode, then one in eval mode, on one fixed input."""
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.train()
        first, second = model(x), model(x)
        model.eval()
        return first, second, model(x)


def test_lp_holds_the_frozen_dropouts_so_train_mode_equals_eval_mode(vgg19: torch.nn.Module) -> None:
    assert sorted(_dropouts(vgg19)) == ["classifier.2", "classifier.5"]
    LP().param_groups(vgg19, 0.1)
    assert all(is_held_dropout(m) for m in _dropouts(vgg19).values())
    first, second, reference = _train_twice_then_eval(vgg19)
    assert torch.equal(first, second) and torch.equal(first, reference)


def test_lp_ft_releases_the_dropouts_for_the_ft_phase(vgg19: torch.nn.Module) -> None:
    strategy = LPFT(lp_epochs=1)
    train_steps(vgg19, strategy, steps=1, epoch=1)
    assert all(is_held_dropout(m) for m in _dropouts(vgg19).values())
    train_steps(vgg19, strategy, steps=1, epoch=2)
    assert not any(is_held_dropout(m) for m in _dropouts(vgg19).values())


def test_trainable_state_round_trips_held_dropouts(vgg19: torch.nn.Module) -> None:
    LP().param_groups(vgg19, 0.1)
    state = trainable_state(vgg19)
    assert state["dropout_held"] == ["classifier.2", "classifier.5"]
    torch.manual_seed(1)
    fresh = build_classifier("vgg19", 3)
    restore_trainable_state(fresh, state)
    assert all(is_held_dropout(m) for m in _dropouts(fresh).values())
    restore_trainable_state(fresh, {k: v for k, v in state.items() if k != "dropout_held"})  # an older checkpoint
    assert not any(is_held_dropout(m) for m in _dropouts(fresh).values())


def test_surgical_trains_the_block_and_head_with_the_rest_in_eval_mode(resnet: torch.nn.Module) -> None:
    before = snapshot(resnet)
    train_steps(resnet, Surgical(groups=["block1"]), steps=2)
    changed = {k for k, v in resnet.state_dict().items() if not torch.equal(before[k], v)}
    assert changed and all(k.startswith(("layer1.", "fc.")) for k in changed)
    assert any(k.startswith("layer1.") and k.endswith("running_mean") for k in changed)  # the block's BN trains
    held = {n for n, m in resnet.named_modules() if is_frozen_bn(m)}
    assert "bn1" in held and "layer4.1.bn2" in held and not any(n.startswith("layer1.") for n in held)


def test_lp_holds_efficientnet_lite0_dropout_before_the_head() -> None:
    # Its ``_dropout`` (and pooling) sit outside the blocks: the layer groups put them in "top", so LP holds them.
    torch.manual_seed(0)
    model = build_classifier("efficientnet_lite0", 3)
    assert model._dropout.p > 0 and is_held_dropout(model._dropout) is False
    LP().param_groups(model, 0.1)
    assert is_held_dropout(model._dropout)
    first, second, reference = _train_twice_then_eval(model)
    assert torch.equal(first, second) and torch.allclose(first, reference, atol=1e-6)
