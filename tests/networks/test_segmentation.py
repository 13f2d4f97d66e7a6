"""Segmenters: the UNet kept as it was, ResNet FlexibleUNets whose encoder takes torchvision classifier weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from monai.networks.nets import FlexibleUNet, UNet

from common.errors import ConfigError, WeightsError
from common.finetune import build_strategy
from common.networks import (
    build_segmenter,
    check_patch_size,
    encoder_modules,
    imagenet_weights_file,
    layer_groups,
    load_pretrained,
)

ENCODER = "encoder."


def _classifier(backbone: str, num_classes: int, seed: int = 0) -> torch.nn.Module:
    """A torchvision resnet with random, non-default weights and BN statistics (so a copy is detectable)."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, backbone)(num_classes=num_classes)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith(("running_mean", "running_var", "bn1.bias", "bn2.bias", "bn3.bias")):
                tensor.copy_(torch.rand_like(tensor) + (0.5 if name.endswith("running_var") else 0.0))
    return model.eval()


def _encoder_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k.removeprefix(ENCODER): v for k, v in model.state_dict().items() if k.startswith(ENCODER)}


def _torchvision_layer4(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    return model.layer4(model.layer3(model.layer2(model.layer1(x))))


@pytest.fixture(scope="module")
def resnet18_classifier() -> torch.nn.Module:
    return _classifier("resnet18", 5)


def test_unet_is_the_bundles_original_network() -> None:
    original = UNet(spatial_dims=2, in_channels=3, out_channels=5, channels=(32, 64, 128, 256, 512),
                    strides=(2, 2, 2, 2), num_res_units=2, norm="batch")
    built = build_segmenter("unet", 5)
    assert isinstance(built, UNet)
    assert {k: v.shape for k, v in built.state_dict().items()} == {k: v.shape for k, v in original.state_dict().items()}
    built.load_state_dict(original.state_dict(), strict=True)  # an old checkpoint still loads


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"], ids=["resnet18", "resnet50"])
def test_encoder_has_torchvision_keys_and_shapes(backbone: str) -> None:
    """The key map classifier -> segmenter is exactly ``encoder.`` + the torchvision name, every tensor but fc."""
    model = build_segmenter(f"{backbone}_unet", 5)
    assert isinstance(model, FlexibleUNet)
    classifier = getattr(torchvision.models, backbone)().state_dict()
    expected = {k: v.shape for k, v in classifier.items() if not k.startswith("fc.")}
    assert {k: v.shape for k, v in _encoder_state(model).items()} == expected


def test_monai_resnet18_encoder_lacks_torchvision_projections() -> None:
    """Why TorchvisionResNetEncoder exists: MONAI's own resnet18 encoder uses parameter-free shortcuts."""
    stock = {k.removeprefix(ENCODER) for k in FlexibleUNet(3, 5, "resnet18").state_dict() if k.startswith(ENCODER)}
    assert "layer2.0.downsample.0.weight" not in stock
    assert "layer2.0.downsample.0.weight" in _encoder_state(build_segmenter("resnet18_unet", 5))


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"], ids=["resnet18", "resnet50"])
def test_transferred_encoder_reproduces_torchvision_layer4(backbone: str, tmp_path: Path) -> None:
    classifier = _classifier(backbone, 5)
    torch.save(classifier.state_dict(), tmp_path / "classifier.pt")
    model = build_segmenter(f"{backbone}_unet", 5).eval()
    load_pretrained(model, str(tmp_path / "classifier.pt"), f"{backbone}_unet")
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        features = model.encoder(x)
        expected = _torchvision_layer4(classifier, x)
    assert len(features) == 5 and features[-1].shape == expected.shape == (2, classifier.fc.in_features, 2, 2)
    assert torch.allclose(features[-1], expected, atol=1e-5)


def test_classifier_bundle_fills_encoder_only(tmp_path: Path, resnet18_classifier: torch.nn.Module) -> None:
    bundle = tmp_path / "stage2_bundle"
    (bundle / "models").mkdir(parents=True)
    torch.save(resnet18_classifier.state_dict(), bundle / "models" / "model.pt")
    model = build_segmenter("resnet18_unet", 3)
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(ENCODER)}
    report = load_pretrained(model, f"bundle:{bundle}", "resnet18_unet")
    source = resnet18_classifier.state_dict()
    assert all(torch.equal(v, source[k]) for k, v in _encoder_state(model).items())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items() if k in before)
    assert report.source_prefix == ENCODER and sorted(report.unexpected) == ["fc.bias", "fc.weight"]
    assert sorted(report.loaded) == sorted(ENCODER + k for k in source if not k.startswith("fc."))
    assert report.missing and not any(k.startswith(ENCODER) for k in report.missing)
    assert "classifier keys placed under 'encoder.'" in report.summary()


def test_imagenet_reads_the_backbone_file_from_the_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             resnet18_classifier: torch.nn.Module) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    file = imagenet_weights_file("resnet18")
    assert file == tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(WeightsError, match="resnet18-f37072fd.pth"):
        load_pretrained(build_segmenter("resnet18_unet", 5), "imagenet", "resnet18_unet")
    imagenet = _classifier("resnet18", 1000, seed=2)
    file.parent.mkdir(parents=True)
    torch.save({k: v for k, v in imagenet.state_dict().items() if not k.endswith("num_batches_tracked")}, file)
    model = build_segmenter("resnet18_unet", 5)
    report = load_pretrained(model, "imagenet", "resnet18_unet")
    assert torch.equal(model.encoder.layer4[1].bn2.running_var, imagenet.layer4[1].bn2.running_var)
    assert sorted(report.unexpected) == ["fc.bias", "fc.weight"]


def test_segmenter_checkpoint_loads_by_name(tmp_path: Path) -> None:
    source = build_segmenter("resnet18_unet", 5)
    torch.save(source.state_dict(), tmp_path / "seg.pt")
    model = build_segmenter("resnet18_unet", 2)
    report = load_pretrained(model, str(tmp_path / "seg.pt"), "resnet18_unet")
    assert report.source_prefix == "" and not report.missing
    assert sorted(report.mismatched) == ["segmentation_head.0.bias", "segmentation_head.0.weight"]
    decoder_weight = "decoder.blocks.0.convs.conv_0.conv.weight"
    assert torch.equal(model.state_dict()[decoder_weight], source.state_dict()[decoder_weight])


def test_missing_encoder_key_is_named(tmp_path: Path, resnet18_classifier: torch.nn.Module) -> None:
    state = resnet18_classifier.state_dict()
    del state["layer3.1.conv2.weight"]
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(WeightsError, match=r"1 tensors would stay untrained \(encoder\.layer3\.1\.conv2\.weight"):
        load_pretrained(build_segmenter("resnet18_unet", 5), str(tmp_path / "partial.pt"), "resnet18_unet")


def test_other_backbone_is_refused(tmp_path: Path, resnet18_classifier: torch.nn.Module) -> None:
    torch.save(resnet18_classifier.state_dict(), tmp_path / "resnet18.pt")
    with pytest.raises(WeightsError, match="a resnet50 classifier state dict is expected"):
        load_pretrained(build_segmenter("resnet50_unet", 5), str(tmp_path / "resnet18.pt"), "resnet50_unet")


def test_unet_has_no_imagenet_weights() -> None:
    with pytest.raises(WeightsError, match="arch 'unet' has no ImageNet weights.*resnet18_unet, resnet50_unet"):
        load_pretrained(build_segmenter("unet", 5), "imagenet", "unet")


def test_none_keeps_initialisation() -> None:
    model = build_segmenter("resnet18_unet", 5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert not load_pretrained(model, "none", "resnet18_unet").loaded
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(("arch", "size", "ok"), [("unet", 80, True), ("unet", 72, False), ("resnet18_unet", 64, True),
                                                  ("resnet18_unet", 80, False), ("resnet50_unet", [96, 256], True),
                                                  ("resnet50_unet", [96, 48], False), ("unet", 0, False)],
                         ids=["unet-80", "unet-72", "r18-64", "r18-80", "r50-96x256", "r50-96x48", "zero"])
def test_patch_size_must_be_a_multiple_of_the_stride(arch: str, size: int | list[int], ok: bool) -> None:
    if ok:
        check_patch_size(arch, size)
    else:
        with pytest.raises(ConfigError, match=f"patch_size .* does not fit {arch}.*multiple of"):
            check_patch_size(arch, size)


@pytest.mark.parametrize(("arch", "match"), [("resnet34_unet", "unknown segmentation architecture 'resnet34_unet'; "
                                                              "choose from: unet, resnet18_unet, resnet50_unet"),
                                             ("unet", "num_classes must be >= 1")], ids=["unknown", "no-classes"])
def test_bad_arguments(arch: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_segmenter(arch, 0 if arch == "unet" else 5, patch_size=64)


def test_build_checks_patch_size() -> None:
    with pytest.raises(ConfigError, match="multiple of 32"):
        build_segmenter("resnet18_unet", 5, patch_size=80)


@pytest.mark.parametrize("arch", ["unet", "resnet18_unet"], ids=["unet", "resnet18_unet"])
def test_forward_returns_class_logits_at_input_size(arch: str) -> None:
    model = build_segmenter(arch, 5, patch_size=64).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 96)).shape == (1, 5, 64, 96)


def test_layer_groups_and_encoder_modules() -> None:
    model = build_segmenter("resnet18_unet", 5)
    groups = layer_groups(model)
    assert [g.name for g in groups] == ["stem", "block1", "block2", "block3", "block4", "head"]
    for name, _ in model.named_parameters():
        assert sum(g.owns(name) for g in groups) == 1, name
    assert encoder_modules(model) == ["encoder.conv1", "encoder.bn1", *(f"encoder.layer{i}" for i in range(1, 5))]


def test_lp_trains_decoder_and_head_only() -> None:
    torch.manual_seed(0)
    model = build_segmenter("resnet18_unet", 3)
    groups = build_strategy("lp").param_groups(model, 1e-2)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if not n.startswith(ENCODER)}
    assert [g["name"] for g in groups] == ["head"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(groups, lr=1e-2)
    model.train()
    model(torch.randn(2, 3, 64, 64)).square().mean().backward()
    optimizer.step()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in after if k.startswith(ENCODER))  # BN statistics too
    assert not torch.equal(before["segmentation_head.0.weight"], after["segmentation_head.0.weight"])
    assert not torch.equal(before["decoder.blocks.0.convs.conv_0.conv.weight"],
                           after["decoder.blocks.0.convs.conv_0.conv.weight"])
