"""Smoke tests of bundles/chest_xray_classification through MONAI's ConfigWorkflow and bundle checks."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export, verify_metadata, verify_net_in_out

from common.errors import DataError, WeightsError
from tests.bundles.conftest import CHEST_BUNDLE, SCHEMA, tiny_overrides

CONFIGS = CHEST_BUNDLE / "configs"
FINDINGS = json.loads((CONFIGS / "train.json").read_text())["class_names"]


def run_workflow(config_files: list[Path], workflow_type: str, **override) -> ConfigWorkflow:
    workflow = ConfigWorkflow(
        config_file=[str(f) for f in config_files],
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=str(CONFIGS / "logging.conf"),
        workflow_type=workflow_type,
        **override,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return workflow


@pytest.fixture(scope="module")
def trained_bundle(tmp_path_factory: pytest.TempPathFactory, chest_dataset: Path) -> Path:
    """A copy of the bundle trained for one tiny epoch (models/model.pt written by CheckpointSaver)."""
    root = tmp_path_factory.mktemp("bundle") / "chest_xray_classification"
    shutil.copytree(CHEST_BUNDLE, root, ignore=shutil.ignore_patterns("models", "eval", "logs", "predictions"))
    run_workflow([root / "configs" / "train.json"], "train", **tiny_overrides(root, chest_dataset))
    return root


def test_train_writes_best_checkpoint(trained_bundle: Path) -> None:
    state = torch.load(trained_bundle / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert state["classifier.weight"].shape == (14, 1024)


def test_train_then_evaluate_writes_report(trained_bundle: Path, chest_dataset: Path) -> None:
    configs = trained_bundle / "configs"
    overrides = {**tiny_overrides(trained_bundle, chest_dataset), "n_boot": 50}
    run_workflow([configs / "train.json", configs / "evaluate.json"], "eval", **overrides)
    eval_dir = trained_bundle / "eval"
    assert {p.name for p in eval_dir.iterdir()} >= {"metrics.json", "report.md", "roc_curves.png",
                                                     "confusion_matrices.png"}
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert metrics["class_names"] == FINDINGS
    assert metrics["threshold_source"] == "validation"
    test_items = json.loads((chest_dataset / "datalist.json").read_text())["test"]
    assert metrics["n_images"] == len(test_items)


def test_inference_writes_one_row_per_image(trained_bundle: Path, chest_dataset: Path, tmp_path: Path) -> None:
    # A copy holding only configs + models/model.pt, as a bundle shared with another site would be.
    shared = tmp_path / "copied_bundle"
    shutil.copytree(trained_bundle / "configs", shared / "configs")
    shutil.copytree(trained_bundle / "models", shared / "models")
    images = chest_dataset / "images"
    run_workflow([shared / "configs" / "inference.json"], "infer", bundle_root=str(shared),
                 input_dir=str(images), image_size=32, num_workers=0)
    with open(shared / "predictions" / "predictions.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["image", *FINDINGS]
    assert len(rows) - 1 == len(list(images.glob("*.png")))
    assert all(0.0 <= float(v) <= 1.0 for row in rows[1:] for v in row[1:])


def root_cause(error: BaseException) -> BaseException:
    """MONAI wraps errors raised inside config expressions; the user-facing one is at the bottom."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def test_inference_without_checkpoint_names_the_file(tmp_path: Path, chest_dataset: Path) -> None:
    shutil.copytree(CONFIGS, tmp_path / "configs")
    with pytest.raises(RuntimeError) as info:
        run_workflow([tmp_path / "configs" / "inference.json"], "infer", bundle_root=str(tmp_path),
                     input_dir=str(chest_dataset / "images"), num_workers=0)
    assert isinstance(root_cause(info.value), WeightsError)
    assert "models/model.pt" in str(root_cause(info.value))


@pytest.mark.parametrize("problem", ["missing-datalist", "wrong-label-length", "missing-image"])
def test_bad_datalist_is_a_data_error(tmp_path: Path, chest_dataset: Path, problem: str) -> None:
    datalist = json.loads((chest_dataset / "datalist.json").read_text())
    expected = {"missing-datalist": "datalist not found", "wrong-label-length": "has 13 label values, want 14",
                "missing-image": "image.s. of split 'training' not found"}[problem]
    if problem == "wrong-label-length":
        datalist["training"][1]["label"] = datalist["training"][1]["label"][:13]
    if problem == "missing-image":
        datalist["training"][0]["image"] = "images/not_there.png"
    if problem != "missing-datalist":
        (tmp_path / "datalist.json").write_text(json.dumps(datalist))
    overrides = {**tiny_overrides(tmp_path, chest_dataset), "datalist": str(tmp_path / "datalist.json")}
    with pytest.raises(RuntimeError) as info:
        run_workflow([CONFIGS / "train.json"], "train", **overrides)
    assert isinstance(root_cause(info.value), DataError)
    assert re.search(expected, str(root_cause(info.value)))


def test_inference_network_def_equals_train() -> None:
    train = json.loads((CONFIGS / "train.json").read_text())
    inference = json.loads((CONFIGS / "inference.json").read_text())
    assert inference["network_def"] == train["network_def"]
    for key in ("class_names", "arch", "image_size", "imagenet_mean", "imagenet_std", "use_clahe", "clahe_clip_limit",
                "clahe_tile_grid_size", "clahe_bit_depth", "clahe"):
        assert inference[key] == train[key], key


def test_inference_preprocessing_equals_validation_preprocessing(chest_dataset: Path) -> None:
    image = str(next((chest_dataset / "images").glob("*.png")))
    outputs = []
    for files, key in (([CONFIGS / "train.json"], "validate#preprocessing"), ([CONFIGS / "inference.json"],
                                                                             "preprocessing")):
        parser = ConfigParser()
        parser.read_config([str(f) for f in files])
        outputs.append(parser.get_parsed_content(key)({"image": image})["image"])
    assert outputs[0].shape == (3, 224, 224)
    assert torch.equal(outputs[0].as_tensor(), outputs[1].as_tensor())


def test_metadata_channel_def_lists_the_findings_in_nih_order() -> None:
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    channel_def = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    assert [channel_def[str(i)] for i in range(14)] == FINDINGS


@pytest.mark.skipif(not SCHEMA.is_file(), reason="../shared/monai schema absent (only present beside the repo in CI)")
def test_verify_metadata(tmp_path: Path) -> None:
    verify_metadata(meta_file=str(CONFIGS / "metadata.json"), filepath=str(SCHEMA))


def test_verify_net_in_out() -> None:
    verify_net_in_out(net_id="network_def", meta_file=str(CONFIGS / "metadata.json"),
                      config_file=str(CONFIGS / "inference.json"), device="cpu")


def test_ckpt_export_torchscript(trained_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.ts"
    ckpt_export(net_id="network_def", filepath=str(out), ckpt_file=str(trained_bundle / "models" / "model.pt"),
                meta_file=str(trained_bundle / "configs" / "metadata.json"),
                config_file=str(trained_bundle / "configs" / "inference.json"),
                bundle_root=str(trained_bundle), input_shape=[1, 3, 32, 32], use_trace=True)
    scripted = torch.jit.load(str(out))
    assert scripted(torch.zeros(1, 3, 32, 32)).shape == (1, 14)


@pytest.mark.parametrize("config", ["train.json", "evaluate.json", "inference.json", "multi_gpu_train.json"])
def test_every_reference_resolves(config: str) -> None:
    files = [CONFIGS / "train.json"] + ([CONFIGS / config] if config != "train.json" else [])
    if config == "inference.json":
        files = [CONFIGS / config]
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    config_ids = set()

    def walk(node, prefix: str) -> None:
        config_ids.add(prefix)
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}#{key}" if prefix else str(key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{prefix}#{index}" if prefix else str(index))

    walk(parser.get(), "")
    refs = set()
    for text in json.dumps(parser.get()).split('"'):
        refs.update(re.findall(r"@([\w#]+)", text))
    missing = sorted(r for r in refs if r not in config_ids)
    assert not missing, f"{config}: references to undefined ids {missing}"


def test_multi_gpu_overlay_trains_with_two_processes(tmp_path: Path, chest_dataset: Path) -> None:
    """torchrun with 2 CPU processes (gloo): the same overlay users run with NCCL on GPUs."""
    root = tmp_path / "bundle"
    shutil.copytree(CONFIGS, root / "configs")
    configs = f"['{root / 'configs' / 'train.json'}','{root / 'configs' / 'multi_gpu_train.json'}']"
    overrides = {**tiny_overrides(root, chest_dataset), "batch_size": 4}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
               "-m", "monai.bundle", "run", "--config_file", configs,
               "--logging_file", str(root / "configs" / "logging.conf")]
    for key, value in overrides.items():
        command += [f"--{key}", str(value)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert "classifier.weight" in state  # saved without the DistributedDataParallel "module." prefix


FINETUNE_OVERLAYS = sorted((CHEST_BUNDLE.parents[1] / "configs" / "finetune").glob("*.json"))


@pytest.mark.parametrize("overlay", FINETUNE_OVERLAYS, ids=[p.stem for p in FINETUNE_OVERLAYS])
def test_every_finetune_overlay_trains_one_epoch(tmp_path: Path, chest_dataset: Path, overlay: Path) -> None:
    shutil.copytree(CONFIGS, tmp_path / "configs")
    workflow = run_workflow([tmp_path / "configs" / "train.json", overlay], "train",
                            **{**tiny_overrides(tmp_path, chest_dataset), "val_interval": 2})
    strategy = workflow.parser.get_parsed_content("finetune")
    assert type(strategy).__name__ == json.loads(overlay.read_text())["finetune"]["_target_"].rsplit(".", 1)[1]
    assert workflow.parser.get_parsed_content("train#trainer").state.iteration > 0
