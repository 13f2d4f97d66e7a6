"""medical_image_classification: train -> evaluate -> infer on a 3-class RGB and a binary grey dataset (tiny, CPU),
metrics recomputed with scikit-learn, TorchScript export, and the refusals of a datalist or settings that disagree.

The checks every bundle passes (verify_metadata, verify_net_in_out, channel_def, settings) run through
``ALL_BUNDLES`` in test_bundle_checks.py / test_settings.py; this module adds what is single-label."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export
from PIL import Image

from common.data.cache_build import build_cache
from common.errors import ConfigError, DataError
from common.experiments.bundles import bundle_info
from common.metrics.report import load_predictions
from tests.bundles.conftest import BUNDLES, root_cause, run_workflow
from tests.metrics.test_single_label import assert_agrees_with_sklearn

NAME = "medical_image_classification"
CONFIGS = BUNDLES / NAME / "configs"
SIZE = 32
RGB_CLASSES = ["akiec", "bcc", "bkl"]
GREY_CLASSES = ["normal", "pneumonia"]


def make_dataset(root: Path, classes: list[str], color: str, per_split: tuple[int, int, int] = (4, 3, 3),
                 patients: bool = True, seed: int = 0) -> Path:
    """PNGs whose class is a bright square at a class-specific place (and tint, for RGB) + a single-label datalist."""
    rng = np.random.default_rng(seed)
    datalist: dict = {"classes": classes}
    for split, count in zip(("training", "validation", "test"), per_split, strict=True):
        items = []
        for c, name in enumerate(classes):
            for i in range(count):
                pixels = rng.integers(0, 60, size=(SIZE, SIZE, 3), dtype=np.uint8)
                pixels[4 + 6 * c: 12 + 6 * c, 4 + 6 * c: 12 + 6 * c] = [200, 40 + 60 * c, 90]
                path = Path("images") / name / f"{split}_{i}.png"
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels if color == "rgb" else pixels[..., 0]).save(root / path)
                item = {"image": path.as_posix(), "label": c}
                if patients:
                    item["patient_id"] = f"{split}-{name}-{i // 2}"
                items.append(item)
        datalist[split] = items
    (root / "datalist.json").write_text(json.dumps(datalist))
    return root


def overrides(root: Path, dataset: Path, classes: list[str], color: str, **extra) -> dict:
    return {"bundle_root": str(root), "dataset_dir": str(dataset), "class_names": classes, "color": color,
            "pretrained": "none", "arch": "resnet18", "image_size": SIZE, "epochs": 2, "batch_size": 4,
            "val_batch_size": 8, "num_workers": 0, **extra}


CASES = {
    "rgb-3class": (RGB_CLASSES, "rgb", True, {"color_augmentation": True, "vflip_prob": 0.5}),
    "grey-binary": (GREY_CLASSES, "grey", False, {}),
}


@pytest.fixture(scope="module", params=list(CASES))
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    """(case, trained bundle copy, dataset): 2 epochs at 32 px, then evaluate.json on the test split."""
    classes, color, patients, extra = CASES[request.param]
    base = tmp_path_factory.mktemp(request.param)
    dataset = make_dataset(base / "data", classes, color, patients=patients)
    root = base / NAME
    shutil.copytree(BUNDLES / NAME, root, ignore=shutil.ignore_patterns("models", "eval", "logs", "predictions"))
    settings = overrides(root, dataset, classes, color, **extra)
    workflow = run_workflow(root / "configs", ["train.json"], "train", **settings)
    assert workflow.check_properties() == []
    run_workflow(root / "configs", ["train.json", "evaluate.json"], "eval", **settings, n_boot=50)
    return request.param, root, dataset


def test_evaluation_agrees_with_sklearn(trained: tuple[str, Path, Path]) -> None:
    case, root, dataset = trained
    classes = CASES[case][0]
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    y_true, y_prob, names = load_predictions(root / "eval" / "predictions.npz")
    labels = y_true.argmax(axis=1)
    test = json.loads((dataset / "datalist.json").read_text())["test"]
    assert names == classes == metrics["class_names"] and metrics["n_images"] == len(test)
    assert sorted(labels.tolist()) == sorted(item["label"] for item in test)
    assert np.allclose(y_prob.sum(axis=1), 1.0, atol=1e-5)
    assert_agrees_with_sklearn(metrics, labels, y_prob)
    assert metrics["task"] == ("binary" if len(classes) == 2 else "multiclass")
    assert metrics["bootstrap"]["unit"] == ("patient" if CASES[case][2] else "image")
    for produced in ("report.md", "roc_curves.png", "confusion_matrix.png"):
        assert (root / "eval" / produced).is_file()
    card = json.loads((root / "models" / "model.json").read_text())
    assert card["class_names"] == classes and card["preprocessing"]["color"] == CASES[case][1]
    assert (root / "models" / "checkpoint.pt").is_file()  # resumable state of the last epoch


def test_inference_csv_matches_evaluation(trained: tuple[str, Path, Path], tmp_path: Path) -> None:
    case, root, dataset = trained
    classes, color = CASES[case][:2]
    shared = tmp_path / "copied"  # only configs + models, as shared with another site
    shutil.copytree(root / "configs", shared / "configs")
    shutil.copytree(root / "models", shared / "models")
    workflow = run_workflow(shared / "configs", ["inference.json"], "infer", bundle_root=str(shared),
                            dataset_dir=str(dataset), datalist=str(dataset / "datalist.json"), class_names=classes,
                            color=color, arch="resnet18", image_size=SIZE, num_workers=0)
    assert workflow.check_properties() == []
    rows = list(csv.reader(open(shared / "predictions" / "predictions.csv", newline="")))
    assert rows[0] == ["image", *classes, "predicted"]
    probs = np.array([[float(v) for v in row[1:-1]] for row in rows[1:]])
    _, y_prob, _ = load_predictions(root / "eval" / "predictions.npz")
    assert np.allclose(probs, y_prob, atol=1e-5)  # same images, same order, same model
    expected = (probs[:, 1] >= 0.5).astype(int) if len(classes) == 2 else probs.argmax(axis=1)
    assert [row[-1] for row in rows[1:]] == [classes[i] for i in expected]


def test_ckpt_export_torchscript(trained: tuple[str, Path, Path], tmp_path: Path) -> None:
    case, root, _ = trained
    classes, color = CASES[case][:2]
    out = tmp_path / "model.ts"
    ckpt_export(net_id="network_def", filepath=str(out), ckpt_file=str(root / "models" / "model.pt"),
                meta_file=str(root / "configs" / "metadata.json"), config_file=str(root / "configs" / "inference.json"),
                bundle_root=str(root), input_shape=[1, 3, SIZE, SIZE], use_trace=True,
                class_names=classes, arch="resnet18", color=color)
    logits = torch.jit.load(str(out))(torch.zeros(1, 3, SIZE, SIZE))
    assert logits.shape == (1, 1 if len(classes) == 2 else len(classes))  # binary: one logit


@pytest.mark.parametrize("color", ["rgb", "grey"])
def test_inference_preprocessing_equals_validation(color: str, tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path, RGB_CLASSES, "rgb", per_split=(1, 1, 1))
    item = json.loads((dataset / "datalist.json").read_text())["test"][0]
    item = {**item, "image": str(dataset / item["image"])}
    outputs = []
    for files, key in ((["train.json"], "validate#preprocessing"), (["inference.json"], "preprocessing")):
        parser = ConfigParser()
        parser.read_config([str(CONFIGS / f) for f in files])
        parser.update({"dataset_dir": str(dataset), "color": color, "class_names": RGB_CLASSES})
        given = item if key.startswith("validate") else {"image": item["image"]}
        outputs.append(parser.get_parsed_content(key)(given)["image"])
    assert outputs[0].shape == (3, 224, 224) and torch.equal(outputs[0].as_tensor(), outputs[1].as_tensor())
    channels = outputs[0].as_tensor()
    # grey: one channel repeated, so (x * std + mean) is equal across channels; RGB keeps the tint
    unnormalised = channels * torch.tensor([0.229, 0.224, 0.225])[:, None, None] + \
        torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    assert torch.allclose(unnormalised[0], unnormalised[1], atol=1e-5) == (color == "grey")


@pytest.mark.parametrize(("change", "error", "message"), [
    ({"class_names": ["akiec", "bkl", "bcc"]}, DataError, r"datalist.json: the datalist's classes \['akiec', 'bcc', "),
    ({"num_classes": 4}, DataError, r"datalist.json: num_classes=4 but class_names has 3 names"),
    ({"label": 7}, DataError, r"datalist.json: training\[0\] \(\S+/akiec/training_0.png\): label 7 is not"),
    ({"color": "grey", "color_augmentation": True}, ConfigError, "color_augmentation=True needs color='rgb'"),
    ({"color": "gray"}, ConfigError, r"setting color='gray' \(str\) is not valid: expected one of \['rgb', 'grey'\]"),
], ids=["class-order", "num-classes", "label-range", "jitter-on-grey", "color-name"])
def test_refusals(change: dict, error: type, message: str, tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path / "data", RGB_CLASSES, "rgb", per_split=(1, 1, 1))
    if "label" in change:
        content = json.loads((dataset / "datalist.json").read_text())
        content["training"][0]["label"] = change.pop("label")
        (dataset / "datalist.json").write_text(json.dumps(content))
    settings = {**overrides(tmp_path / "run", dataset, RGB_CLASSES, "rgb", epochs=1), **change}
    with pytest.raises(Exception) as caught:
        run_workflow(CONFIGS, ["train.json"], "train", **settings)
    cause = root_cause(caught.value)
    assert isinstance(cause, error) and re.search(message, str(cause)), repr(cause)
    assert not (tmp_path / "run" / "models" / "model.pt").exists()


def test_the_runner_reads_the_bundle() -> None:
    info = bundle_info(NAME)
    assert info.metric == "macro_auc" and info.kind == "classification"
    assert {"densenet121", "resnet50", "vgg19"} <= set(info.archs())
    assert {"class_names", "color", "color_augmentation", "n_boot"} <= info.config_ids


STUDY_OVERLAYS = ["ft", "lp", "lp_ft", "gradual_last_to_first", "gradual_first_to_last", "l1_sp", "l2_sp", "auto_rgn",
                  "cutoff"]


@pytest.mark.parametrize("overlay", STUDY_OVERLAYS)
def test_finetune_overlays_build_their_optimizer(overlay: str) -> None:
    """The study's strategies (and the cut-off) apply to this bundle: the overlay merges and its optimizer builds."""
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), str(BUNDLES.parent / "configs" / "finetune" / f"{overlay}.json")])
    parser.update({"pretrained": "none", "class_names": GREY_CLASSES, "device": "$torch.device('cpu')"})
    optimizer = parser.get_parsed_content("optimizer")
    assert sum(p.numel() for group in optimizer.param_groups for p in group["params"]) > 0


def test_colour_jitter_runs_in_batch_on_the_training_device() -> None:
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    parser.update({"augment_device": "gpu", "color_augmentation": True, "color_jitter_prob": 1.0, "flip_prob": 0.0,
                   "affine_prob": 0.0, "device": "$torch.device('cpu')"})
    prepare = parser.get_parsed_content("train#prepare_batch")
    assert parser.get_parsed_content("dataset_augmentation") == []
    batch = torch.rand(2, 3, SIZE, SIZE)
    image, label = prepare({"image": batch.clone(), "label": torch.tensor([0, 2])}, "cpu")
    assert image.shape == batch.shape and not torch.allclose(image, batch) and label.tolist() == [0, 2]


def test_trains_from_a_prepared_cache(tmp_path: Path) -> None:
    """``cache_dir``: prepare-cache stores the 0-d multi-class label as (1,); the loss and the metric take either."""
    dataset = make_dataset(tmp_path / "data", RGB_CLASSES, "rgb", per_split=(2, 2, 1))
    settings = overrides(tmp_path / "run", dataset, RGB_CLASSES, "rgb", epochs=1)
    build_cache(BUNDLES / NAME, dataset / "datalist.json", tmp_path / "cache", progress=False,
                overrides={"image_size": SIZE, "class_names": RGB_CLASSES})
    workflow = run_workflow(CONFIGS, ["train.json"], "train", **settings, cache_dir=str(tmp_path / "cache"))
    assert workflow.parser.get_parsed_content("validate#evaluator").state.best_metric >= 0
    assert (tmp_path / "run" / "models" / "model.pt").is_file()


def test_explanations(trained: tuple[str, Path, Path]) -> None:
    """explain.json on inference.json: Grad-CAM of every class's logit; for two classes of the one logit (class 1)."""
    case, root, dataset = trained
    classes, color = CASES[case][:2]
    run_workflow(root / "configs", ["inference.json", "explain.json"], "infer", bundle_root=str(root),
                 dataset_dir=str(dataset), datalist=str(dataset / "datalist.json"), class_names=classes, color=color,
                 arch="resnet18", image_size=SIZE, num_workers=0)
    maps = sorted((root / "explanations").glob("*.npy"))
    explained = classes[1:] if len(classes) == 2 else classes
    n_test = len(json.loads((dataset / "datalist.json").read_text())["test"])
    assert len(maps) == n_test * len(explained)
    assert {m.stem.rsplit("_", 1)[1] for m in maps} == set(explained)


def test_training_drops_a_last_partial_batch(tmp_path: Path) -> None:
    """12 training images in batches of 5: the last batch (2, or 1 on other counts) would reach BatchNorm alone."""
    dataset = make_dataset(tmp_path, RGB_CLASSES, "rgb", per_split=(4, 1, 1))
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    parser.update({"dataset_dir": str(dataset), "class_names": RGB_CLASSES, "batch_size": 5, "num_workers": 0})
    loader = parser.get_parsed_content("train#dataloader")
    assert loader.drop_last and len(loader) == 2
    parser.update({"batch_size": 16})
    parser.parse(True)
    assert len(parser.get_parsed_content("train#dataloader")) == 1  # fewer images than a batch: kept
