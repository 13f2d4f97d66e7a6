"""common.federated.strategies: which fine-tuning overlays keep their meaning across rounds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.errors import ConfigError
from common.federated.strategies import check_strategy
from tests.federated.conftest import FINETUNE


@pytest.mark.parametrize("overlay", ["ft", "lp", "lp_ft", "l2_sp", "l1_sp", "auto_rgn", "bitfit", "cutoff",
                                     "discriminative_lr", "gradual_last_to_first", "surgical_first_block"],
                         ids=str)
def test_supported_overlays_pass(overlay: str) -> None:
    assert check_strategy(FINETUNE / f"{overlay}.json", local_epochs=1, pretrained="imagenet") == overlay


@pytest.mark.parametrize("overlay", ["lp_cached", "cutoff_cached"], ids=str)
def test_cached_feature_variants_are_refused(overlay: str) -> None:
    with pytest.raises(ConfigError, match=f"{overlay}.json: sets .*different module than the global model"):
        check_strategy(FINETUNE / f"{overlay}.json", local_epochs=1, pretrained="imagenet")


@pytest.mark.parametrize("overlay", ["l2_sp", "l1_sp"], ids=str)
def test_sp_without_pretrained_weights_is_refused(overlay: str) -> None:
    with pytest.raises(ConfigError, match="anchors to the pretrained weights, but pretrained is 'none'"):
        check_strategy(FINETUNE / f"{overlay}.json", local_epochs=1, pretrained="none")


def test_lp_ft_switch_must_fall_on_a_round_boundary(tmp_path: Path) -> None:
    overlay = FINETUNE / "lp_ft.json"  # lp_epochs 2
    assert check_strategy(overlay, local_epochs=2, pretrained="imagenet") == "lp_ft"
    with pytest.raises(ConfigError, match=r"finetune#lp_epochs = 2 is not a multiple of the 3 local epoch"):
        check_strategy(overlay, local_epochs=3, pretrained="imagenet")


def test_unreadable_overlay_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json"):
        check_strategy(bad, local_epochs=1, pretrained="imagenet")
    assert json.loads((FINETUNE / "ft.json").read_text())  # the real overlays stay valid JSON
