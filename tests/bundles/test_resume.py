"""Crash-safe training: a run killed after an epoch resumes to the same weights; other runs' models are kept.

A "kill" is an exception raised by a handler registered after every bundle handler at the chosen epoch's end (the
per-epoch checkpoint is written by then, exactly as before a SIGKILL at that point); the killed workflow is then
dropped and a new one started from the same folder, as a user rerunning the command would.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigWorkflow

from common.errors import ConfigError, WeightsError, find_user_error
from tests.bundles.conftest import CHEST_BUNDLE, root_cause, tiny_overrides

CONFIGS = CHEST_BUNDLE / "configs"
LP_FT = Path(__file__).resolve().parents[2] / "configs" / "finetune" / "lp_ft.json"


class Killed(Exception):
    """Stands for the process dying."""


def _workflow(root: Path, dataset: Path, **override) -> ConfigWorkflow:
    files = [str(root / "configs" / "train.json"), str(LP_FT)]
    settings = {**tiny_overrides(root, dataset), "arch": "resnet18", "epochs": 3, "affine_prob": 0.5, "flip_prob": 0.5,
                **override}
    workflow = ConfigWorkflow(config_file=files, meta_file=str(root / "configs" / "metadata.json"),
                              logging_file=str(root / "configs" / "logging.conf"), workflow_type="train", **settings)
    workflow.initialize()
    return workflow


def _train(root: Path, dataset: Path, kill_after: int | None = None, **override) -> ConfigWorkflow:
    workflow = _workflow(root, dataset, **override)
    if kill_after is not None:
        def kill(engine) -> None:
            raise Killed(f"killed after epoch {engine.state.epoch}")

        workflow.parser.get_parsed_content("train#trainer").add_event_handler(
            Events.EPOCH_COMPLETED(once=kill_after), kill)
        with pytest.raises(RuntimeError) as info:  # MONAI wraps what the run raised
            workflow.run()
        assert isinstance(root_cause(info.value), Killed)
    else:
        workflow.run()
    workflow.finalize()
    return workflow


def _bundle(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    shutil.copytree(CONFIGS, root / "configs")
    return root


def _weights(root: Path) -> dict[str, torch.Tensor]:
    return torch.load(root / "models" / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory, chest_dataset: Path) -> Path:
    """An uninterrupted 3-epoch LP-FT run."""
    clean = _bundle(tmp_path_factory.mktemp("resume"), "clean")
    _train(clean, chest_dataset)
    return clean


@pytest.mark.parametrize("kill_after", [1, 2], ids=["in-lp-phase", "in-ft-phase"])
def test_killed_run_resumes_to_the_same_weights(tmp_path: Path, chest_dataset: Path, clean_run: Path,
                                                kill_after: int) -> None:
    """LP-FT (1 LP epoch): killed after epoch 1 the resumed run must unfreeze at epoch 2 itself; killed after
    epoch 2 it must restore the unfrozen backbone (its epoch-3 hook changes nothing), with random augmentation on."""
    clean = clean_run
    killed = _bundle(tmp_path, "killed")
    _train(killed, chest_dataset, kill_after=kill_after)
    state = torch.load(killed / "models" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["trainer"]["epoch"] == kill_after
    resumed = _train(killed, chest_dataset)
    handler = next(h for h in resumed.parser.get_parsed_content("train#handlers")
                   if type(h).__name__ == "TrainingCheckpoint")
    assert handler.resumed_from == kill_after
    expected, got = _weights(clean), _weights(killed)
    assert expected.keys() == got.keys()
    different = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert different == []
    assert (killed / "models" / "model.pt").read_bytes() == (clean / "models" / "model.pt").read_bytes()
    card = json.loads((killed / "models" / "model.json").read_text())
    assert card == {**json.loads((clean / "models" / "model.json").read_text()), "created": card["created"]}
    assert not list((killed / "models").glob("previous-*"))


def test_new_settings_move_the_previous_run_aside(tmp_path: Path, chest_dataset: Path) -> None:
    root = _bundle(tmp_path, "bundle")
    _train(root, chest_dataset, epochs=1)
    before = (root / "models" / "model.pt").read_bytes()
    _train(root, chest_dataset, epochs=1, learning_rate=0.001)  # another run: must not overwrite silently
    aside = list((root / "models").glob("previous-*"))
    assert len(aside) == 1
    assert (aside[0] / "model.pt").read_bytes() == before
    assert {p.name for p in aside[0].iterdir()} == {"model.pt", "model.json", "checkpoint.pt"}
    assert (root / "models" / "model.pt").is_file()


def test_resume_never_starts_afresh_and_keeps_the_old_run(tmp_path: Path, chest_dataset: Path) -> None:
    root = _bundle(tmp_path, "bundle")
    _train(root, chest_dataset, epochs=1)
    workflow = _train(root, chest_dataset, epochs=1, resume="never")
    handler = next(h for h in workflow.parser.get_parsed_content("train#handlers")
                   if type(h).__name__ == "TrainingCheckpoint")
    assert handler.resumed_from is None
    assert len(list((root / "models").glob("previous-*"))) == 1


def test_resume_force_continues_with_more_epochs(tmp_path: Path, chest_dataset: Path) -> None:
    root = _bundle(tmp_path, "bundle")
    _train(root, chest_dataset, epochs=1)
    workflow = _train(root, chest_dataset, epochs=2, resume="force")
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 2
    assert torch.load(root / "models" / "checkpoint.pt", weights_only=True)["trainer"]["epoch"] == 2


def test_resume_force_without_checkpoint_is_refused(tmp_path: Path, chest_dataset: Path) -> None:
    root = _bundle(tmp_path, "bundle")
    with pytest.raises(RuntimeError) as info:
        _train(root, chest_dataset, epochs=1, resume="force")
    assert isinstance(root_cause(info.value), ConfigError)
    assert re.search("no training checkpoint .*checkpoint.pt", str(root_cause(info.value)))


def test_corrupt_training_checkpoint_names_the_file(tmp_path: Path, chest_dataset: Path) -> None:
    root = _bundle(tmp_path, "bundle")
    (root / "models").mkdir()
    (root / "models" / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(RuntimeError) as info:
        _train(root, chest_dataset, epochs=1)
    error = find_user_error(info.value)
    assert isinstance(error, WeightsError)
    assert re.search("cannot read the training checkpoint .*checkpoint.pt", str(error))
    assert (root / "models" / "checkpoint.pt").read_bytes() == b"PK\x03\x04 truncated"  # nothing deleted


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("image_size", 0, r"image_size=0 \(int\) is not valid: expected an integer >= 8"),
    ("epochs", -1, r"epochs=-1 \(int\) is not valid: expected an integer >= 1"),
    ("batch_size", "abc", r"batch_size='abc' \(str\) is not valid: expected an integer >= 1"),
    ("learning_rate", -0.001, r"learning_rate=-0.001 \(float\) is not valid: expected a number >= 0"),
    ("flip_prob", 1.5, r"flip_prob=1.5 \(float\) is not valid: expected a number >= 0.0 and <= 1.0"),
    ("resume", "sometimes", r"resume='sometimes' \(str\) is not valid: expected one of \['auto', 'never', 'force'\]"),
], ids=["image_size", "epochs", "batch_size", "learning_rate", "flip_prob", "resume"])
def test_bad_setting_is_refused_before_anything_runs(tmp_path: Path, chest_dataset: Path, key: str, value: object,
                                                     expected: str) -> None:
    root = _bundle(tmp_path, "bundle")
    with pytest.raises(RuntimeError) as info:
        _workflow(root, chest_dataset, **{key: value})
    assert isinstance(root_cause(info.value), ConfigError)
    assert re.search(expected, str(root_cause(info.value)))
    assert not (root / "models").exists()


@pytest.mark.parametrize(("override", "expected"), [
    ({}, r"model.pt was trained with arch='resnet18' but this run has arch='densenet121'; pass --arch resnet18"),
    ({"arch": "resnet18"}, r"trained with image_size=32 but this run has image_size=224; pass --image_size 32"),
    ({"arch": "resnet18", "image_size": 32, "use_clahe": False}, r"use_clahe=True but this run has use_clahe=False"),
], ids=["arch", "image_size", "clahe"])
def test_inference_reads_the_checkpoint_card(clean_run: Path, chest_dataset: Path, override: dict,
                                             expected: str) -> None:
    """The README's inference command on a model trained with other settings: one line saying what to pass."""
    configs = clean_run / "configs"
    workflow = ConfigWorkflow(config_file=str(configs / "inference.json"), meta_file=str(configs / "metadata.json"),
                              workflow_type="infer", bundle_root=str(clean_run),
                              dataset_dir=str(chest_dataset / "images"), num_workers=0, **override)
    with pytest.raises(RuntimeError) as info:
        workflow.initialize()
    error = find_user_error(info.value)
    assert isinstance(error, WeightsError)
    assert re.search(expected, str(error))


def test_evaluation_names_its_metric_by_split(clean_run: Path, chest_dataset: Path, tmp_path: Path) -> None:
    """The test-split evaluation logged "Got new best metric of val_mean_auc" (it was the test AUC)."""
    root = tmp_path / "bundle"
    shutil.copytree(clean_run, root)
    configs = root / "configs"
    settings = {**tiny_overrides(root, chest_dataset), "arch": "resnet18"}
    workflow = ConfigWorkflow(config_file=[str(configs / "train.json"), str(configs / "evaluate.json")],
                              meta_file=str(configs / "metadata.json"), workflow_type="eval", **settings)
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    evaluator = workflow.parser.get_parsed_content("validate#evaluator")
    assert evaluator.state.key_metric_name == "test_mean_auc"
    assert list(evaluator.state.metrics) == ["test_mean_auc"]
