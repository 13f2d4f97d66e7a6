"""Segmenters: groups that received no pretrained weight are trained with the head, never frozen or down-weighted
(issue 16 item 8), as the transfer report of the bundle's ``pretrained`` load says."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from monai.networks.nets import SwinUNETR

from common.finetune import LP, LPFT, DiscriminativeLR, GradualUnfreezing
from common.networks import TransferReport
from common.networks.layer_groups import group_parameters, layer_groups


@pytest.fixture(scope="module")
def swin() -> torch.nn.Module:
    torch.manual_seed(0)
    return SwinUNETR(in_channels=3, out_channels=2, feature_size=12, spatial_dims=2)


def _vit_report(model: torch.nn.Module) -> TransferReport:
    """What a Swin encoder transfer loads: swinViT only; encoder/decoder convolutions and the head stay random."""
    names = [n for n, _ in model.named_parameters()]
    return TransferReport(source="swin_encoder.pt", loaded=[n for n in names if n.startswith("swinViT.")],
                          missing=[n for n in names if not n.startswith("swinViT.")])


def _trainable_groups(model: torch.nn.Module) -> set[str]:
    return {g.name for g in layer_groups(model)
            if all(p.requires_grad for _, p in group_parameters(model, g))}


def test_lp_trains_the_random_convolutions_with_the_head(swin: torch.nn.Module) -> None:
    groups = LP(transfer_report=_vit_report(swin)).param_groups(swin, 0.1)
    assert [g["name"] for g in groups] == ["encoder", "decoder", "head"]
    assert _trainable_groups(swin) == {"encoder", "decoder", "head"}
    assert not any(p.requires_grad for n, p in swin.named_parameters() if n.startswith("swinViT."))


def test_without_a_report_or_from_scratch_the_groups_are_unchanged(swin: torch.nn.Module) -> None:
    assert [g["name"] for g in LP().param_groups(swin, 0.1)] == ["head"]
    scratch = TransferReport(source="none", loaded=[])
    assert [g["name"] for g in LP(transfer_report=scratch).param_groups(swin, 0.1)] == ["head"]


def test_lp_ft_lp_phase_freezes_only_pretrained_groups(swin: torch.nn.Module) -> None:
    strategy = LPFT(lp_epochs=1, transfer_report=_vit_report(swin))
    strategy.param_groups(swin, 0.1)
    assert _trainable_groups(swin) == {"encoder", "decoder", "head"}


def test_gradual_unfreezes_only_pretrained_groups(swin: torch.nn.Module) -> None:
    strategy = GradualUnfreezing(every_n_epochs=1, transfer_report=_vit_report(swin))
    optimizer = torch.optim.SGD(strategy.param_groups(swin, 0.1), lr=0.1)
    assert strategy.schedule(swin) == ["stage4", "stage3", "stage2", "stage1", "stem"]
    assert _trainable_groups(swin) == {"encoder", "decoder", "head"}
    strategy.on_epoch_start(SimpleNamespace(state=SimpleNamespace(epoch=2), optimizer=optimizer))
    assert _trainable_groups(swin) == {"encoder", "decoder", "head", "stage4"}


def test_discriminative_rates_decay_over_pretrained_groups_only(swin: torch.nn.Module) -> None:
    groups = DiscriminativeLR(decay=0.5, transfer_report=_vit_report(swin)).param_groups(swin, 1.0)
    rates = {g["name"]: g["lr"] for g in groups}
    assert rates["head"] == rates["encoder"] == rates["decoder"] == 1.0  # random: never down-weighted
    assert [rates[f"stage{k}"] for k in (4, 3, 2, 1)] == [0.5, 0.25, 0.125, 0.0625]
    assert rates["stem"] == 0.5**5
    plain = {g["name"]: g["lr"] for g in DiscriminativeLR(decay=0.5).param_groups(swin, 1.0)}
    assert plain["decoder"] == 0.5 and plain["encoder"] == 0.25  # the earlier rule, without a report
