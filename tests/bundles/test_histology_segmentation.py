"""The segmentation bundles (UNet, Swin UNETR) on synthetic BCSS tiles: train -> evaluate -> infer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export
from PIL import Image

from common.errors import ConfigError, WeightsError
from tests.bundles.conftest import BUNDLES, SEGMENTATION_BUNDLES, root_cause, run_workflow, tiny_overrides

SEG_OVERRIDES = {"patch_size": 64, "samples_per_image": 2, "batch_size": 4, "feature_size": 12, "sw_batch_size": 2}


@pytest.fixture(scope="module", params=SEGMENTATION_BUNDLES)
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            histo_dataset: Path) -> tuple[str, Path]:
    name = request.param
    root = tmp_path_factory.mktemp(name) / name
    shutil.copytree(BUNDLES / name, root, ignore=shutil.ignore_patterns("models", "eval", "logs", "predictions"))
    overrides = {**tiny_overrides(root, histo_dataset, 64), **SEG_OVERRIDES}
    overrides.pop("image_size")
    workflow = run_workflow(root / "configs", ["train.json"], "train", **overrides)
    assert workflow.check_properties() == []
    return name, root


def test_train_evaluate_infer(trained: tuple[str, Path], histo_dataset: Path, tmp_path: Path) -> None:
    name, root = trained
    overrides = {**tiny_overrides(root, histo_dataset, 64), **SEG_OVERRIDES, "n_overlays": 2}
    overrides.pop("image_size")
    run_workflow(root / "configs", ["train.json", "evaluate.json"], "eval", **overrides)
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert [c["name"] for c in metrics["per_class"]] == ["tumor", "stroma", "inflammatory", "necrosis", "other"]
    assert 0.0 <= metrics["mean_dice"] <= 1.0
    assert (root / "eval" / "report.md").is_file() and list((root / "eval" / "overlays").glob("*.png"))

    shared = tmp_path / "copied"
    shutil.copytree(root / "configs", shared / "configs")
    shutil.copytree(root / "models", shared / "models")
    images = histo_dataset / "rgbs_colorNormalized"
    run_workflow(shared / "configs", ["inference.json"], "infer", bundle_root=str(shared), dataset_dir=str(images),
                 patch_size=64, feature_size=12, num_workers=0, sw_batch_size=2)
    written = sorted((shared / "predictions").glob("*.png"))
    assert len(written) == len(list(images.glob("*.png")))
    first = np.asarray(Image.open(written[0]))
    source = np.asarray(Image.open(images / written[0].name))
    assert first.shape == source.shape[:2]  # sliding window output = input size (96 is not a multiple of 64)
    assert set(np.unique(first)) <= {1, 2, 3, 4, 5}
    classes = json.loads((shared / "predictions" / "classes.json").read_text())
    assert list(classes.values()) == ["tumor", "stroma", "inflammatory", "necrosis", "other"]


def test_ckpt_export(trained: tuple[str, Path], tmp_path: Path) -> None:
    name, root = trained
    configs = root / "configs"
    ckpt_export(net_id="network_def", filepath=str(tmp_path / "model.ts"), ckpt_file=str(root / "models" / "model.pt"),
                meta_file=str(configs / "metadata.json"), config_file=str(configs / "inference.json"),
                bundle_root=str(root), input_shape=[1, 3, 64, 64], use_trace=True, feature_size=12)
    assert torch.jit.load(str(tmp_path / "model.ts"))(torch.zeros(1, 3, 64, 64)).shape == (1, 5, 64, 64)


@pytest.mark.parametrize("name", SEGMENTATION_BUNDLES)
def test_inference_preprocessing_equals_validation(name: str, histo_dataset: Path) -> None:
    item = json.loads((histo_dataset / "datalist.json").read_text())["test"][0]
    images = []
    for config, key in (("train.json", "validate#preprocessing"), ("inference.json", "preprocessing")):
        parser = ConfigParser()
        parser.read_config(str(BUNDLES / name / "configs" / config))
        data = {"image": str(histo_dataset / item["image"])}
        if key.startswith("validate"):
            data["label"] = str(histo_dataset / item["label"])
        images.append(parser.get_parsed_content(key)(data)["image"])
    assert images[0].shape[0] == 3 and torch.equal(images[0].as_tensor(), images[1].as_tensor())


def test_encoder_transfer_from_another_bundle_checkpoint(trained: tuple[str, Path], histo_dataset: Path,
                                                         tmp_path: Path) -> None:
    """`pretrained: bundle:<path>` fills the encoder by name; the report lists the loaded keys."""
    name, root = trained
    target = tmp_path / name
    shutil.copytree(BUNDLES / name / "configs", target / "configs")
    overrides = {**tiny_overrides(target, histo_dataset, 64), **SEG_OVERRIDES, "pretrained": f"bundle:{root}"}
    overrides.pop("image_size")
    workflow = run_workflow(target / "configs", ["train.json"], "train", **{**overrides, "epochs": 1})
    network = workflow.parser.get_parsed_content("network")
    assert network is not None and (target / "models" / "model.pt").is_file()


def test_real_histology_tile_through_inference(trained: tuple[str, Path], tmp_path: Path) -> None:
    """scikit-image's immunohistochemistry() (a real 512 x 512 stained tissue tile) through inference.json."""
    from skimage.data import immunohistochemistry

    name, root = trained
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    tile = immunohistochemistry()[:200, :300]  # non-square and not a multiple of the 64 px window
    Image.fromarray(tile).save(tiles / "ihc.png")
    shared = tmp_path / "bundle"
    shutil.copytree(root / "configs", shared / "configs")
    shutil.copytree(root / "models", shared / "models")
    run_workflow(shared / "configs", ["inference.json"], "infer", bundle_root=str(shared), dataset_dir=str(tiles),
                 patch_size=64, feature_size=12, num_workers=0, sw_batch_size=2)
    mask = np.asarray(Image.open(shared / "predictions" / "ihc.png"))
    assert mask.shape == tile.shape[:2] and set(np.unique(mask)) <= {1, 2, 3, 4, 5}


UNET_BUNDLE = "breast_histology_segmentation_unet"


def _unet_workflow(root: Path, histo_dataset: Path, **override: object) -> ConfigWorkflow:
    """An un-initialised train workflow of a fresh copy of the UNet bundle at ``root``."""
    shutil.copytree(BUNDLES / UNET_BUNDLE / "configs", root / "configs")
    overrides = {**tiny_overrides(root, histo_dataset, 64), **SEG_OVERRIDES, **override}
    overrides.pop("image_size")
    configs = root / "configs"
    return ConfigWorkflow(config_file=str(configs / "train.json"), meta_file=str(configs / "metadata.json"),
                          logging_file=str(configs / "logging.conf"), workflow_type="train", **overrides)


def test_resnet18_unet_encoder_from_a_classifier_bundle(histo_dataset: Path, tmp_path: Path) -> None:
    """Stage-2 -> segmentation: a resnet18 classifier bundle (5-class fc) fills resnet18_unet's encoder."""
    torch.manual_seed(0)
    classifier = torchvision.models.resnet18(num_classes=5)
    (tmp_path / "classifier_bundle" / "models").mkdir(parents=True)
    torch.save(classifier.state_dict(), tmp_path / "classifier_bundle" / "models" / "model.pt")
    root = tmp_path / UNET_BUNDLE
    workflow = _unet_workflow(root, histo_dataset, arch="resnet18_unet",
                              pretrained=f"bundle:{tmp_path / 'classifier_bundle'}")
    workflow.initialize()
    network = workflow.parser.get_parsed_content("network")
    source = classifier.state_dict()
    encoder = {k.removeprefix("encoder."): v for k, v in network.state_dict().items() if k.startswith("encoder.")}
    assert encoder.keys() == {k for k in source if not k.startswith("fc.")}
    assert all(torch.equal(v.cpu(), source[k]) for k, v in encoder.items())
    report = workflow.parser.get_parsed_content("pretrained_report")
    assert report.source_prefix == "encoder." and sorted(report.unexpected) == ["fc.bias", "fc.weight"]
    workflow.run()
    workflow.finalize()
    assert (root / "models" / "model.pt").is_file()
    ckpt_export(net_id="network_def", filepath=str(tmp_path / "model.ts"), ckpt_file=str(root / "models" / "model.pt"),
                meta_file=str(root / "configs" / "metadata.json"), config_file=str(root / "configs" / "inference.json"),
                bundle_root=str(root), input_shape=[1, 3, 64, 64], use_trace=True, arch="resnet18_unet", patch_size=64)
    assert torch.jit.load(str(tmp_path / "model.ts"))(torch.zeros(1, 3, 64, 64)).shape == (1, 5, 64, 64)


@pytest.mark.parametrize(("override", "error", "match"), [
    ({"arch": "unet", "pretrained": "imagenet"}, WeightsError, "arch 'unet' has no ImageNet weights"),
    ({"arch": "resnet18_unet", "patch_size": 80}, ConfigError, "patch_size 80 does not fit resnet18_unet"),
], ids=["unet-imagenet", "patch-not-multiple-of-32"])
def test_unet_bundle_refuses_at_initialize(histo_dataset: Path, tmp_path: Path, override: dict, error: type,
                                           match: str) -> None:
    workflow = _unet_workflow(tmp_path / UNET_BUNDLE, histo_dataset, **override)
    with pytest.raises(Exception) as info:
        workflow.initialize()
    assert isinstance(root_cause(info.value), error) and match in str(root_cause(info.value))
