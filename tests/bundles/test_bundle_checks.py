"""Checks every bundle passes (MONAI's own verifications, config consistency) and the classifiers'
train -> evaluate -> infer run; the segmentation bundles' runs are in test_histology_segmentation.py."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export, verify_metadata, verify_net_in_out

from tests.bundles.conftest import (
    ALL_BUNDLES,
    BUNDLE_DATA,
    BUNDLES,
    EVAL_SPLIT,
    SCHEMA,
    run_workflow,
    tiny_overrides,
)

NAMES = list(BUNDLE_DATA)


def _class_names(name: str, bundle_root: Path | None = None) -> list[str]:
    """The outputs inference.json names (equal to train.json's, tested below), for a trained copy when given."""
    parser = ConfigParser()
    parser.read_config(str(_configs(name) / "inference.json"))
    if bundle_root is not None:
        parser["bundle_root"] = str(bundle_root)
    return list(parser.get_parsed_content("class_names"))


def _configs(name: str) -> Path:
    return BUNDLES / name / "configs"


@pytest.fixture(scope="module", params=NAMES)
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    """(bundle name, trained bundle copy, dataset): one tiny epoch through train.json."""
    name = request.param
    fixture, size = BUNDLE_DATA[name]
    dataset = request.getfixturevalue(fixture)
    root = tmp_path_factory.mktemp(name) / name
    shutil.copytree(BUNDLES / name, root, ignore=shutil.ignore_patterns("models", "eval", "logs", "predictions"))
    workflow = run_workflow(root / "configs", ["train.json"], "train", **tiny_overrides(root, dataset, size))
    assert workflow.check_properties() == []
    return name, root, dataset


def test_train_evaluate_infer(trained: tuple[str, Path, Path], tmp_path: Path) -> None:
    name, root, dataset = trained
    size, split = BUNDLE_DATA[name][1], EVAL_SPLIT.get(name, "test")
    classes = _class_names(name, root)
    state = torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert state  # CheckpointSaver kept the best model
    run_workflow(root / "configs", ["train.json", "evaluate.json"], "eval",
                 **{**tiny_overrides(root, dataset, size), "n_boot": 30})
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert metrics["class_names"] == classes and metrics["threshold_source"] == "validation"
    assert metrics["n_images"] == len(json.loads((dataset / "datalist.json").read_text())[split])
    for produced in ("report.md", "roc_curves.png", "confusion_matrices.png"):
        assert (root / "eval" / produced).is_file()
    # Inference from a copy holding only configs + models/model.pt, as shared with another site.
    shared = tmp_path / "copied"
    shutil.copytree(root / "configs", shared / "configs")
    shutil.copytree(root / "models", shared / "models")
    workflow = run_workflow(shared / "configs", ["inference.json"], "infer", bundle_root=str(shared),
                            dataset_dir=str(dataset), datalist=str(dataset / "datalist.json"), datalist_key=split,
                            image_size=size, num_workers=0)
    assert workflow.check_properties() == []
    rows = list(csv.reader(open(shared / "predictions" / "predictions.csv", newline="")))
    assert rows[0] == ["image", *classes]
    assert len(rows) - 1 == metrics["n_images"]
    assert all(0.0 <= float(v) <= 1.0 for row in rows[1:] for v in row[1:])


def test_ckpt_export_torchscript(trained: tuple[str, Path, Path], tmp_path: Path) -> None:
    name, root, _ = trained
    size = BUNDLE_DATA[name][1]
    out = tmp_path / "model.ts"
    configs = root / "configs"
    ckpt_export(net_id="network_def", filepath=str(out), ckpt_file=str(root / "models" / "model.pt"),
                meta_file=str(configs / "metadata.json"), config_file=str(configs / "inference.json"),
                bundle_root=str(root), input_shape=[1, 3, size, size], use_trace=True)
    classes = _class_names(name, root)
    assert torch.jit.load(str(out))(torch.zeros(1, 3, size, size)).shape == (1, len(classes))


@pytest.mark.parametrize("name", ALL_BUNDLES)
@pytest.mark.skipif(not SCHEMA.is_file(), reason="../shared/monai schema absent (it lies beside the repo in CI only)")
def test_verify_metadata(name: str) -> None:
    verify_metadata(meta_file=str(_configs(name) / "metadata.json"), filepath=str(SCHEMA))


@pytest.mark.parametrize("name", ALL_BUNDLES)
def test_verify_net_in_out(name: str) -> None:
    verify_net_in_out(net_id="network_def", meta_file=str(_configs(name) / "metadata.json"),
                      config_file=str(_configs(name) / "inference.json"), device="cpu")


@pytest.mark.parametrize("name", ALL_BUNDLES)
def test_metadata_channel_def_matches_class_names(name: str) -> None:
    meta = json.loads((_configs(name) / "metadata.json").read_text())
    classes = _class_names(name)
    channel_def = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    assert [channel_def[str(i)] for i in range(len(channel_def))] == classes


@pytest.mark.parametrize("name", ALL_BUNDLES)
def test_inference_repeats_train_definitions(name: str) -> None:
    train = json.loads((_configs(name) / "train.json").read_text())
    inference = json.loads((_configs(name) / "inference.json").read_text())
    shared = [k for k in inference if k in train and not k.startswith(("imports", "bundle_root", "output_dir",
                                                                        "batch_size", "num_workers", "datalist",
                                                                        "dataset_dir", "initialize", "run", "finalize",
                                                                        "preprocessing", "dataset", "handlers",
                                                                        "inferer", "postprocessing", "network",
                                                                        "settings", "checkpoint_card",
                                                                        # containment is chosen per config: stage 2
                                                                        # trains on ../ sources, infers on inputs
                                                                        "allow_outside_dataset_dir"))]
    assert "network_def" in inference and inference["network_def"] == train["network_def"]
    # what inference checks against the model's card is what training writes into it
    assert inference["checkpoint_card"]["preprocessing"] == train["checkpoint_card"]["preprocessing"]
    # Class names read from the data by train.json (stage 2) are checked by the train -> evaluate -> infer run.
    shared = [k for k in shared if not (k == "class_names" and isinstance(train[k], str))]
    for key in shared:
        assert inference[key] == train[key], key


@pytest.mark.parametrize("name", NAMES)
def test_inference_preprocessing_equals_validation(name: str, request: pytest.FixtureRequest) -> None:
    fixture, _ = BUNDLE_DATA[name]
    dataset = request.getfixturevalue(fixture)
    item = json.loads((dataset / "datalist.json").read_text())[EVAL_SPLIT.get(name, "test")][0]
    item = {**item, "image": str(dataset / item["image"])}
    outputs = []
    for files, key in ((["train.json"], "validate#preprocessing"), (["inference.json"], "preprocessing")):
        parser = ConfigParser()
        parser.read_config([str(_configs(name) / f) for f in files])
        parser["dataset_dir"] = str(dataset)
        outputs.append(parser.get_parsed_content(key)({k: v for k, v in item.items() if k != "label"} | (
            {"label": item["label"]} if key.startswith("validate") else {}))["image"])
    assert outputs[0].shape == (3, 224, 224)
    assert torch.equal(outputs[0].as_tensor(), outputs[1].as_tensor())


@pytest.mark.parametrize("config", ["train.json", "evaluate.json", "inference.json", "multi_gpu_train.json"])
@pytest.mark.parametrize("name", ALL_BUNDLES)
def test_every_reference_resolves(name: str, config: str) -> None:
    files = [config] if config in ("train.json", "inference.json") else ["train.json", config]
    parser = ConfigParser()
    parser.read_config([str(_configs(name) / f) for f in files])
    ids = set()

    def walk(node: object, prefix: str) -> None:
        ids.add(prefix)
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        for key, value in items:
            walk(value, f"{prefix}#{key}" if prefix else str(key))

    walk(parser.get(), "")
    refs = set(re.findall(r"@([\w#]+)", json.dumps(parser.get())))
    assert not sorted(r for r in refs if r not in ids), f"{name}/{config}: undefined references"
