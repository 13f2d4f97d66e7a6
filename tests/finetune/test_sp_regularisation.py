"""L2-SP / L1-SP penalties: zero at the start, equal to the hand-computed value after a perturbation."""

from __future__ import annotations

import pytest
import torch

from common.errors import ConfigError
from common.finetune import L1SP, L2SP


@pytest.mark.parametrize("cls", [L2SP, L1SP], ids=["l2_sp", "l1_sp"])
def test_penalty_is_head_only_at_start(resnet: torch.nn.Module, cls: type) -> None:
    strategy = cls(alpha=0.3, beta=0.2)
    groups = strategy.param_groups(resnet, 0.1, weight_decay=0.05)
    assert all(g["weight_decay"] == 0.0 for g in groups)  # no double penalty
    head = 0.2 / 2 * (resnet.fc.weight.pow(2).sum() + resnet.fc.bias.pow(2).sum())
    assert torch.allclose(strategy.penalty(resnet), head)


@pytest.mark.parametrize(("cls", "expected"), [(L2SP, 0.3 / 2 * 4 * 0.25), (L1SP, 0.3 * 4 * 0.5)],
                         ids=["l2_sp", "l1_sp"])
def test_penalty_after_known_perturbation(resnet: torch.nn.Module, cls: type, expected: float) -> None:
    strategy = cls(alpha=0.3, beta=0.0)
    strategy.param_groups(resnet, 0.1)
    with torch.no_grad():
        resnet.conv1.weight.view(-1)[:4] += 0.5  # four weights moved by 0.5
    assert strategy.penalty(resnet).item() == pytest.approx(expected, rel=1e-6)


def test_negative_strength_is_refused() -> None:
    with pytest.raises(ConfigError, match="alpha and beta must be >= 0"):
        L2SP(alpha=-1)


def test_untransferred_tensors_get_plain_l2_not_a_pull_to_random_values(resnet: torch.nn.Module) -> None:
    from common.networks import TransferReport

    report = TransferReport(source="encoder.pt", loaded=["conv1.weight"])
    strategy = L2SP(alpha=0.3, beta=0.2, transfer_report=report)
    strategy.param_groups(resnet, 0.1)
    with torch.no_grad():
        resnet.conv1.weight.view(-1)[:4] += 0.5
    new = [p for n, p in resnet.named_parameters() if n != "conv1.weight"]
    expected = 0.3 / 2 * 4 * 0.25 + 0.2 / 2 * sum(float(p.pow(2).sum()) for p in new)
    assert strategy.penalty(resnet).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("cls", [L2SP, L1SP], ids=["l2_sp", "l1_sp"])
def test_penalty_reaches_the_gradient_through_the_bundle_trainer(resnet: torch.nn.Module, cls: type) -> None:
    """The penalty as the bundles apply it: FinetuneHandler on MONAI's SupervisedTrainer, one plain SGD step.

    The task loss is zero, so the step is the penalty's gradient alone, recomputed here from the paper's
    formula: L2-SP moves a transferred weight by -lr * alpha * (w - w0) and the head by -lr * beta * w;
    L1-SP moves a transferred weight by -lr * alpha * sign(w - w0).
    """
    from monai.engines import SupervisedTrainer

    from common.finetune import FinetuneHandler

    alpha, beta, lr = 0.3, 0.2, 0.1
    strategy = cls(alpha=alpha, beta=beta)
    optimizer = torch.optim.SGD(strategy.param_groups(resnet, lr), lr=lr)
    with torch.no_grad():
        resnet.conv1.weight.view(-1)[:4] += torch.tensor([0.5, -0.25, 0.125, 1.0])
    start = {n: p.detach().clone() for n, p in resnet.named_parameters()}
    reference = start["conv1.weight"].clone()
    reference.view(-1)[:4] -= torch.tensor([0.5, -0.25, 0.125, 1.0])  # w0, captured by param_groups
    expected_penalty = float(strategy.penalty(resnet))
    data = [{"image": torch.randn(2, 3, 32, 32), "label": torch.zeros(2, 3)}]
    trainer = SupervisedTrainer(device=torch.device("cpu"), max_epochs=1, train_data_loader=data, network=resnet,
                                optimizer=optimizer, loss_function=lambda out, _: out.sum() * 0.0,
                                train_handlers=[FinetuneHandler(strategy)], decollate=False)
    trainer.run()
    assert trainer.state.output["loss"].item() == pytest.approx(expected_penalty, rel=1e-6)
    moved = start["conv1.weight"] - reference
    step = alpha * (moved if cls is L2SP else torch.sign(moved))
    assert torch.allclose(resnet.conv1.weight.detach(), start["conv1.weight"] - lr * step, atol=1e-7)
    head = start["fc.weight"]  # the head's beta term is L2 in both variants
    assert torch.allclose(resnet.fc.weight.detach(), head - lr * beta * head, atol=1e-7)
    assert torch.equal(resnet.layer4[1].conv2.weight.detach(), start["layer4.1.conv2.weight"])  # at w0: no pull


@pytest.mark.parametrize("overlay", ["l2_sp", "l1_sp"])
def test_overlays_ship_the_reference_optimizer(overlay: str) -> None:
    """tllib's L2-SP example (thuml/Transfer-Learning-Library, examples/task_adaptation/image_classification/
    delta.py): SGD, momentum 0.9, nesterov, no weight decay, lr 0.01, trade-offs 0.01 / 0.01."""
    from pathlib import Path

    from monai.bundle import ConfigParser

    repo = Path(__file__).resolve().parents[2]
    parser = ConfigParser()
    parser.read_config([str(repo / "bundles/chest_xray_classification/configs/train.json"),
                        str(repo / "configs/finetune" / f"{overlay}.json")])
    parser["pretrained"] = "none"
    optimizer = parser.get_parsed_content("optimizer")
    assert isinstance(optimizer, torch.optim.SGD)
    assert all(g["momentum"] == 0.9 and g["nesterov"] and g["weight_decay"] == 0.0 for g in optimizer.param_groups)
    assert parser["learning_rate"] == 0.01
    assert parser.get_parsed_content("finetune").alpha == {"l2_sp": 0.01, "l1_sp": 0.0001}[overlay]
    adamw = ConfigParser()
    adamw.read_config([str(repo / "bundles/chest_xray_classification/configs/train.json"),
                       str(repo / "configs/finetune" / f"{overlay}_adamw.json")])
    assert adamw["optimizer"]["_target_"] == "torch.optim.AdamW"  # the earlier variant, under its own name
