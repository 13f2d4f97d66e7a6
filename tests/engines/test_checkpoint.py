"""ModelCheckpointSaver: every save atomic (a kill mid-save keeps the previous model), a card beside the best model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from ignite.engine import Engine, Events

from common.engines import ModelCheckpointSaver
from common.networks.checkpoint_card import file_sha256


def _evaluator(scores: list[float]) -> Engine:
    """An engine whose epoch e reports scores[e - 1] as its key metric."""
    engine = Engine(lambda e, b: None)

    @engine.on(Events.EPOCH_COMPLETED)
    def _metric(e: Engine) -> None:
        e.state.metrics = {"val_mean_auc": scores[e.state.epoch - 1]}

    engine.state.key_metric_name = "val_mean_auc"
    return engine


def _saver(folder: Path, net: nn.Module) -> ModelCheckpointSaver:
    return ModelCheckpointSaver(save_dir=str(folder), save_dict={"model": net}, save_key_metric=True,
                                key_metric_filename="model.pt",
                                card={"arch": "toy", "class_names": ["a", "b"], "preprocessing": {"image_size": 8}})


def test_best_model_and_card_are_written(tmp_path: Path) -> None:
    net = nn.Linear(3, 2)
    engine = _evaluator([0.6, 0.8, 0.7])
    _saver(tmp_path, net).attach(engine)
    engine.run([0], max_epochs=3)
    card = json.loads((tmp_path / "model.json").read_text())
    assert card["epoch"] == 2 and card["metric"] == {"val_mean_auc": 0.8}
    assert card["sha256"] == file_sha256(tmp_path / "model.pt")
    assert card["arch"] == "toy" and card["class_names"] == ["a", "b"] and card["num_classes"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.pt"]  # no temporary left
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert torch.equal(state["weight"], net.state_dict()["weight"])


def test_kill_during_save_keeps_the_previous_best(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MONAI's own saver removes model.pt before writing the new one, non-atomically: a kill there loses both."""
    net = nn.Linear(3, 2)
    engine = _evaluator([0.6, 0.9])
    _saver(tmp_path, net).attach(engine)
    engine.run([0], max_epochs=1)
    before = (tmp_path / "model.pt").read_bytes()
    real_save = torch.save

    def dying_save(obj, handle, *args, **kwargs) -> None:
        real_save(obj, handle, *args, **kwargs)
        handle.truncate(len(before) // 2)  # half the file written ...
        raise KeyboardInterrupt("killed")  # ... then the process dies

    monkeypatch.setattr(torch, "save", dying_save)
    with torch.no_grad():
        net.weight.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        engine.run([0], max_epochs=2)
    assert (tmp_path / "model.pt").read_bytes() == before
    assert json.loads((tmp_path / "model.json").read_text())["sha256"] == file_sha256(tmp_path / "model.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.pt"]


def test_saved_files_follow_the_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0o022)
    try:
        engine = _evaluator([0.5])
        _saver(tmp_path, nn.Linear(2, 2)).attach(engine)
        engine.run([0], max_epochs=1)
    finally:
        os.umask(old)
    assert (tmp_path / "model.pt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "model.json").stat().st_mode & 0o777 == 0o644
