"""The site side under MonaiAlgo (no NVFlare): FL overlays, what is sent, and strategies across rounds."""

from __future__ import annotations

import logging.config
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.fl.utils.constants import ExtraItems, WeightType
from monai.fl.utils.exchange_object import ExchangeObject

from common.errors import ConfigError
from common.federated.site import (
    build_algo,
    evaluate_weights,
    keep_report,
    outgoing_payload,
    parse_site_args,
    to_tensors,
    train_round,
)
from tests.federated.conftest import FINETUNE, site_argv


def _algo(tmp_path: Path, fl_sites: dict, **kwargs: object):
    argv = site_argv(tmp_path / "site", fl_sites["sites"]["site-1"]["datalist"], **kwargs)
    algo = build_algo(parse_site_args(argv))
    algo.initialize(extra={ExtraItems.CLIENT_NAME: "site-1"})
    return algo


def _state(algo) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in algo.trainer.network.state_dict().items()}


def _perturbed(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: v + 0.01 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v.clone()
            for k, v in state.items()}


def test_evaluation_uses_the_global_weights_without_a_local_checkpoint(tmp_path: Path, fl_sites: dict,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a bundle's logging.conf was applied")

    monkeypatch.setattr(logging.config, "fileConfig", refuse)
    algo = _algo(tmp_path, fl_sites)  # initialize needs no models/model.pt (no require_checkpoint)
    assert not (tmp_path / "site" / "models" / "model.pt").exists()
    weights = _perturbed(_state(algo), seed=1)
    algo.evaluate(ExchangeObject(weights=weights, weight_type=WeightType.WEIGHTS))
    after = algo.evaluator.network.state_dict()  # a CheckpointLoader would have replaced them
    assert all(torch.equal(after[k].cpu(), weights[k]) for k in weights)
    assert (tmp_path / "site" / "eval" / "metrics.json").is_file()
    algo.train(ExchangeObject(weights=weights, weight_type=WeightType.WEIGHTS))
    assert (tmp_path / "site" / "models" / "model_final.pt").is_file()


def test_round_report_skips_the_bootstrap_and_plots_the_final_report_keeps_them(tmp_path: Path,
                                                                                 fl_sites: dict) -> None:
    algo = _algo(tmp_path, fl_sites)  # TINY: n_boot 10
    weights = _perturbed(_state(algo), seed=2)
    algo.evaluate(ExchangeObject(weights=weights, weight_type=WeightType.WEIGHTS))
    per_round = keep_report(tmp_path / "site", "round_000")
    assert per_round["bootstrap"]["n_resamples"] == 0 and per_round["mean_auc_ci"] == [None, None]
    argv = site_argv(tmp_path / "site", fl_sites["sites"]["site-1"]["datalist"])
    final = evaluate_weights(argv, weights)
    assert final["bootstrap"]["n_resamples"] == 10 and None not in final["mean_auc_ci"]
    assert final["mean_auc"] == per_round["mean_auc"] and final["n_images"] == per_round["n_images"]  # same metrics
    rounds = tmp_path / "site" / "rounds"
    assert (rounds / "round_000" / "predictions.npz").is_file()  # what pooling reads
    assert not list((rounds / "round_000").rglob("*.png"))
    assert sorted(p.name for p in (rounds / "final").glob("*.png")) == ["confusion_matrices.png", "roc_curves.png"]


def test_frozen_parameters_send_exactly_zero_differences(tmp_path: Path, fl_sites: dict) -> None:
    algo = _algo(tmp_path, fl_sites, strategy=FINETUNE / "lp.json")
    global_weights = _state(algo)
    diff = train_round(algo, global_weights, current_round=0, local_epochs=1).weights
    head = {k for k in diff if k.startswith("fc.")}
    assert head and any(diff[k].abs().sum() > 0 for k in head)
    frozen = [k for k in diff if k not in head]
    assert frozen and all(torch.count_nonzero(diff[k]) == 0 for k in frozen)  # BN statistics included


def test_l2_sp_anchors_to_the_pretrained_weights_not_the_global_model(tmp_path: Path, fl_sites: dict) -> None:
    probe = _algo(tmp_path / "probe", fl_sites)
    pretrained = _perturbed(_state(probe), seed=5)
    torch.save(pretrained, tmp_path / "pretrained.pt")
    algo = _algo(tmp_path, fl_sites, strategy=FINETUNE / "l2_sp.json", pretrained=str(tmp_path / "pretrained.pt"))
    strategy = algo.train_workflow.parser.get_parsed_content("finetune")
    names = {id(p): n for n, p in algo.trainer.network.named_parameters()}
    for current_round, seed in ((0, 11), (1, 12)):  # two different global models
        train_round(algo, _perturbed(pretrained, seed), current_round, local_epochs=1)
        for param, anchor in strategy._shared:
            assert torch.equal(anchor.cpu(), pretrained[names[id(param)]])


def test_lp_ft_switches_by_global_round(tmp_path: Path, fl_sites: dict) -> None:
    algo = _algo(tmp_path / "a", fl_sites, strategy=FINETUNE / "lp_ft.json", lp_epochs=1)
    weights = _state(algo)
    backbone = algo.trainer.network.conv1.weight
    train_round(algo, weights, current_round=0, local_epochs=1)
    assert not backbone.requires_grad  # round 0: linear probing
    train_round(algo, weights, current_round=1, local_epochs=1)
    assert backbone.requires_grad  # round 1: fine-tuning
    late = _algo(tmp_path / "b", fl_sites, strategy=FINETUNE / "lp_ft.json", lp_epochs=1)
    train_round(late, weights, current_round=1, local_epochs=1)  # a site joining at round 1 fine-tunes too
    assert late.trainer.network.conv1.weight.requires_grad


def test_auto_rgn_is_recomputed_every_round(tmp_path: Path, fl_sites: dict) -> None:
    algo = _algo(tmp_path, fl_sites, strategy=FINETUNE / "auto_rgn.json", rgn_batches=1)
    weights = _state(algo)
    lrs = []
    for current_round in (0, 1):
        train_round(algo, _perturbed(weights, current_round), current_round, local_epochs=1)
        lrs.append([g["lr"] for g in algo.trainer.optimizer.param_groups])
    assert lrs[0] != lrs[1]


def test_payload_carries_model_tensors_and_scalars_only() -> None:
    expected = {"w"}
    payload = outgoing_payload({"w": torch.ones(2)}, {"val_mean_auc": np.float64(0.7), "n": 3}, expected)
    assert set(payload["params"]) == {"w"} and payload["metrics"] == {"val_mean_auc": 0.7, "n": 3.0}
    with pytest.raises(ConfigError, match="'image_path'.*not a parameter of the global model"):
        outgoing_payload({"w": torch.ones(1), "image_path": torch.zeros(1)}, {}, expected)
    with pytest.raises(ConfigError, match="metric 'ids'.*not a scalar"):
        outgoing_payload({"w": torch.ones(1)}, {"ids": ["00000001_000.png"]}, expected)
    with pytest.raises(ConfigError, match="metric 'pred'.*not a scalar"):
        outgoing_payload({"w": torch.ones(1)}, {"pred": torch.ones(3)}, expected)


def test_received_weights_must_be_numeric_arrays() -> None:
    assert torch.equal(to_tensors({"w": np.ones(2, np.float32)})["w"], torch.ones(2))
    with pytest.raises(ConfigError, match="'w' is object"):
        to_tensors({"w": np.array([object()], dtype=object)})
