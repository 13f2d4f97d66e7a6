"""check_checkpoint: a trained model is refused, in one line, when it does not fit the run or is corrupt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from common.errors import WeightsError
from common.networks import build_classifier, read_state_dict
from common.networks.checkpoint_card import card_path, check_checkpoint, make_card, write_card

PRE = {"image_size": 64, "use_clahe": True, "imagenet_mean": [0.485, 0.456, 0.406]}


def _model(folder: Path, arch: str = "resnet18", classes: tuple[str, ...] = ("a", "b"), card: bool = True) -> Path:
    path = folder / "model.pt"
    torch.save(build_classifier(arch, len(classes)).state_dict(), path)
    if card:
        write_card(card_path(path), make_card(path, arch=arch, class_names=classes, preprocessing=PRE, epoch=3))
    return path


def test_matching_checkpoint_passes(tmp_path: Path) -> None:
    path = _model(tmp_path)
    assert check_checkpoint(path, arch="resnet18", class_names=["a", "b"], preprocessing=PRE) == path


@pytest.mark.parametrize(("change", "expected"), [
    ({"arch": "densenet121"}, r"model.pt was trained with arch='resnet18' but this run has arch='densenet121'; "
                              r"pass --arch resnet18"),
    ({"preprocessing": {**PRE, "image_size": 224}}, r"trained with image_size=64 but this run has image_size=224; "
                                                    r"pass --image_size 64"),
    ({"preprocessing": {**PRE, "use_clahe": False}}, r"use_clahe=True but this run has use_clahe=False"),
    ({"class_names": ["a", "c"]}, r"trained for 2 classes \['a', 'b'\] but this run has 2 classes \['a', 'c'\]"),
], ids=["arch", "image_size", "clahe", "classes"])
def test_mismatch_is_refused_naming_key_and_values(tmp_path: Path, change: dict, expected: str) -> None:
    path = _model(tmp_path)
    run = {"arch": "resnet18", "class_names": ["a", "b"], "preprocessing": PRE, **change}
    with pytest.raises(WeightsError, match=expected):
        check_checkpoint(path, **run)


def test_model_without_card_is_checked_against_the_network(tmp_path: Path) -> None:
    path = _model(tmp_path, arch="resnet18", card=False)
    network = build_classifier("densenet121", 2)
    with pytest.raises(WeightsError, match=r"does not fit the network arch='densenet121': .*missing"):
        check_checkpoint(path, arch="densenet121", class_names=["a", "b"], preprocessing=PRE, network=network)
    check_checkpoint(path, arch="resnet18", class_names=["a", "b"], preprocessing=PRE,
                     network=build_classifier("resnet18", 2))


def test_card_of_another_file_is_refused(tmp_path: Path) -> None:
    path = _model(tmp_path)
    torch.save(build_classifier("resnet18", 2).state_dict(), path)  # model replaced, card left behind
    with pytest.raises(WeightsError, match="describes another file than .*model.pt .sha256 differs"):
        check_checkpoint(path, arch="resnet18", class_names=["a", "b"], preprocessing=PRE)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_weights_are_refused_at_load(tmp_path: Path, bad: float) -> None:
    net = nn.Linear(3, 2)
    state = net.state_dict()
    state["weight"][0, 1] = bad
    torch.save(state, tmp_path / "diverged.pt")
    with pytest.raises(WeightsError, match=r"diverged.pt: tensor 'weight' holds 1 NaN/infinite values"):
        read_state_dict(tmp_path / "diverged.pt")


def test_unreadable_card_names_the_file(tmp_path: Path) -> None:
    path = _model(tmp_path)
    card_path(path).write_text("{not json")
    with pytest.raises(WeightsError, match=r"checkpoint card .*model.json is unreadable"):
        check_checkpoint(path, arch="resnet18", class_names=["a", "b"], preprocessing=PRE)
    card_path(path).write_text(json.dumps({"format": "other"}))
    with pytest.raises(WeightsError, match="is not a medxfer checkpoint card"):
        check_checkpoint(path, arch="resnet18", class_names=["a", "b"], preprocessing=PRE)
