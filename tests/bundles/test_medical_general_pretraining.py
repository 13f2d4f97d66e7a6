"""Stage-2 bundle specifics: the hand-off to a task bundle, weighted sampling, mixed-modality inference, overlays.

The checks every bundle passes (MONAI verifications, train -> evaluate -> infer) are in test_bundle_checks.py.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from pydicom.data import get_testdata_file

from common.engines import MultilabelAUC
from common.errors import WeightsError
from common.metrics import per_class_auc
from common.networks import build_classifier, load_pretrained
from tests.bundles.conftest import CHEST_BUNDLE, GENERAL_BUNDLE, multi_process_env, run_workflow, tiny_overrides

CONFIGS = GENERAL_BUNDLE / "configs"
FINETUNE_OVERLAYS = sorted((GENERAL_BUNDLE.parents[1] / "configs" / "finetune").glob("*.json"))


@pytest.fixture(scope="module")
def stage2(tmp_path_factory: pytest.TempPathFactory, general_dataset: Path) -> Path:
    """A copy of the stage-2 bundle trained one tiny epoch with ResNet-18 (the backbone handed to a task)."""
    root = tmp_path_factory.mktemp("stage2") / "medical_general_pretraining"
    shutil.copytree(CONFIGS, root / "configs")
    run_workflow(root / "configs", ["train.json"], "train", **{**tiny_overrides(root, general_dataset),
                                                                "arch": "resnet18"})  # fmt: skip
    return root


def _parser(files: list[Path], **override: object) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    for key, value in override.items():
        parser[key] = value
    return parser


def test_task_bundle_loads_the_stage2_backbone_and_keeps_its_own_head(stage2: Path) -> None:
    """The chest bundle with ``pretrained: bundle:<stage 2>``: every backbone tensor transfers, the head stays."""
    checkpoint = torch.load(stage2 / "models" / "model.pt", map_location="cpu", weights_only=True)
    parser = _parser([CHEST_BUNDLE / "configs" / "train.json"], arch="resnet18", pretrained=f"bundle:{stage2}",
                     device="$torch.device('cpu')")  # fmt: skip
    network = parser.get_parsed_content("network")
    head_at_init = {k: v.clone() for k, v in network.state_dict().items() if k.startswith("fc.")}
    report = parser.get_parsed_content("pretrained_report")
    state = network.state_dict()
    assert sorted(report.mismatched) == ["fc.bias", "fc.weight"] and not report.missing and not report.unexpected
    assert checkpoint["fc.weight"].shape == (21, 512) and state["fc.weight"].shape == (14, 512)
    backbone = [k for k in state if not k.startswith("fc.")]
    assert sorted(report.loaded) == sorted(backbone)
    for key in backbone:
        assert torch.equal(state[key], checkpoint[key]), key
    for key, value in head_at_init.items():
        assert torch.equal(state[key], value), key
    names = json.loads((stage2 / "models" / "class_names.json").read_text())["class_names"]
    assert len(names) == 21 and names[0] == "xray/Atelectasis"  # kept beside the weights for inference


def test_stage2_checkpoint_of_another_architecture_is_refused(stage2: Path) -> None:
    with pytest.raises(WeightsError, match=r"do not fit densenet121 outside the head 'classifier'"):
        load_pretrained(build_classifier("densenet121", 14), f"bundle:{stage2}", "densenet121")


def test_training_draws_with_the_datalist_weights(general_dataset: Path) -> None:
    parser = _parser([CONFIGS / "train.json"], dataset_dir=str(general_dataset), num_workers=0)
    sampler = parser.get_parsed_content("train#sampler")
    training = json.loads((general_dataset / "datalist.json").read_text())["training"]
    assert isinstance(sampler, torch.utils.data.WeightedRandomSampler) and sampler.replacement
    assert sampler.num_samples == len(training)
    assert sampler.weights.tolist() == [item["weight"] for item in training]
    assert parser.get_parsed_content("train#dataloader").sampler is sampler
    torch.manual_seed(0)
    drawn = Counter(training[i]["source"] for _ in range(200) for i in sampler)
    assert all(abs(n / drawn.total() - 0.25) < 0.02 for n in drawn.values()), drawn


def test_key_metric_skips_unknown_labels() -> None:
    """MultilabelAUC on the validation split: NaN labels (another source's classes) are left out per class."""
    labels = torch.tensor([[1.0, float("nan")], [0.0, float("nan")], [float("nan"), 1.0], [float("nan"), 0.0],
                           [1.0, 0.0]])  # fmt: skip
    preds = torch.tensor([[0.9, 0.2], [0.1, 0.3], [0.5, 0.8], [0.5, 0.6], [0.4, 0.9]])
    metric = MultilabelAUC()
    metric.update((list(preds), list(labels)))
    expected = np.nanmean(per_class_auc(labels.numpy(), preds.numpy()))
    assert metric.compute() == pytest.approx(expected) and expected == pytest.approx((1.0 + 0.5) / 2)  # by hand


def test_inference_on_a_folder_of_mixed_modalities(stage2: Path, general_dataset: Path, tmp_path: Path) -> None:
    """H&E PNG (RGB), synthetic chest PNG (grey), a real chest DICOM and a mammogram DICOM in one folder.

    The real chest DICOM comes from pydicom-data (requirements-dev.txt); without it the other three still run.
    """
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    sources = general_dataset / "sources"
    shutil.copy(next((sources / "bcss" / "rgbs_colorNormalized").glob("*.png")), inputs / "tile.png")
    shutil.copy(next((sources / "chestxray14" / "images").glob("*.png")), inputs / "chest.png")
    shutil.copy(next((sources / "mammography" / "malignant").glob("*.dcm")), inputs / "mammo.dcm")
    real = get_testdata_file("RG1_UNCI.dcm", download=False)  # never fetched from the internet
    if real is not None:
        shutil.copy(real, inputs / "real_chest.dcm")
    run_workflow(stage2 / "configs", ["inference.json"], "infer", bundle_root=str(stage2), dataset_dir=str(inputs),
                 arch="resnet18", image_size=32, num_workers=0)  # fmt: skip
    with open(stage2 / "predictions" / "predictions.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    classes = json.loads((stage2 / "models" / "class_names.json").read_text())["class_names"]
    assert rows[0] == ["image", *classes]
    assert sorted(Path(row[0]).name for row in rows[1:]) == sorted(p.name for p in inputs.iterdir())
    assert len(rows) - 1 == (4 if real is not None else 3)
    assert all(0.0 <= float(v) <= 1.0 for row in rows[1:] for v in row[1:])


@pytest.mark.parametrize("overlay", FINETUNE_OVERLAYS, ids=[p.stem for p in FINETUNE_OVERLAYS])
def test_every_finetune_overlay_applies(overlay: Path, general_dataset: Path) -> None:
    """The shared strategy overlays resolve on this bundle: strategy, optimizer groups and training loader."""
    parser = _parser([CONFIGS / "train.json", overlay], dataset_dir=str(general_dataset), pretrained="none",
                     image_size=32, num_workers=0, device="$torch.device('cpu')")  # fmt: skip
    strategy = parser.get_parsed_content("finetune")
    assert type(strategy).__name__ == json.loads(overlay.read_text())["finetune"]["_target_"].rsplit(".", 1)[1]
    assert parser.get_parsed_content("optimizer").param_groups
    loader = parser.get_parsed_content("train#dataloader")
    assert len(loader.dataset) == loader.sampler.num_samples


def test_multi_gpu_overlay_trains_with_two_processes(tmp_path: Path, general_dataset: Path) -> None:
    """torchrun with 2 CPU processes (gloo): each rank draws its share with DistributedWeightedRandomSampler."""
    root = tmp_path / "bundle"
    shutil.copytree(CONFIGS, root / "configs")
    configs = f"['{root / 'configs' / 'train.json'}','{root / 'configs' / 'multi_gpu_train.json'}']"
    overrides = {**tiny_overrides(root, general_dataset), "batch_size": 4, "arch": "resnet18"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29541",
               "-m", "monai.bundle", "run", "--config_file", configs,
               "--logging_file", str(root / "configs" / "logging.conf")]  # fmt: skip
    for key, value in overrides.items():
        command += [f"--{key}", str(value)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False,
                            env=multi_process_env())
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert state["fc.weight"].shape == (21, 512)  # saved without the DistributedDataParallel "module." prefix


def test_a_stage2_head_that_happens_to_fit_is_still_reset(stage2: Path, tmp_path: Path) -> None:
    """A stage-2 set of exactly 14 classes must not hand its head to the 14-finding chest task."""
    copy = tmp_path / "stage2_14"
    shutil.copytree(stage2 / "models", copy / "models")
    state = torch.load(copy / "models" / "model.pt", map_location="cpu", weights_only=True)
    state["fc.weight"], state["fc.bias"] = state["fc.weight"][:14], state["fc.bias"][:14]
    torch.save(state, copy / "models" / "model.pt")
    network = build_classifier("resnet18", 14)
    head_at_init = network.fc.weight.detach().clone()
    report = load_pretrained(network, f"bundle:{copy}", "resnet18")
    assert report.head_reset == ["fc.weight", "fc.bias"] and not report.missing and not report.mismatched
    assert torch.equal(network.fc.weight, head_at_init) and "head reset 2" in report.summary()
    assert torch.equal(network.conv1.weight, state["conv1.weight"])
    # A bundle without its own class list (a task bundle's checkpoint) still hands over a fitting head.
    (copy / "models" / "class_names.json").unlink()
    report = load_pretrained(build_classifier("resnet18", 14), f"bundle:{copy}", "resnet18")
    assert "fc.weight" in report.loaded and not report.head_reset
