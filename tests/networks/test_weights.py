"""Weight sources and by-name transfer: files, bundles, the ImageNet cache, and every refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from common.errors import ConfigError, WeightsError
from common.networks import build_classifier, imagenet_weights_file, load_pretrained, read_state_dict


@pytest.fixture(scope="module")
def source_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_classifier("resnet18", num_classes=5)


def _equal_outside_head(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa if not k.startswith("fc."))


@pytest.mark.parametrize("fmt", ["pt", "safetensors", "wrapped", "ddp"], ids=lambda f: f)
def test_file_sources_load_every_backbone_tensor(tmp_path: Path, source_model: torch.nn.Module, fmt: str) -> None:
    state = source_model.state_dict()
    path = tmp_path / f"w.{'safetensors' if fmt == 'safetensors' else 'pt'}"
    if fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif fmt == "wrapped":
        torch.save({"state_dict": state, "epoch": 3}, path)
    elif fmt == "ddp":
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    else:
        torch.save(state, path)
    target = build_classifier("resnet18", num_classes=2)
    report = load_pretrained(target, str(path), "resnet18")
    assert _equal_outside_head(source_model, target)
    assert sorted(report.mismatched) == ["fc.bias", "fc.weight"]
    assert not report.missing and not report.unexpected


def test_same_head_size_loads_the_head_too(tmp_path: Path, source_model: torch.nn.Module) -> None:
    torch.save(source_model.state_dict(), tmp_path / "w.pt")
    target = build_classifier("resnet18", num_classes=5)
    report = load_pretrained(target, str(tmp_path / "w.pt"), "resnet18")
    assert torch.equal(target.fc.weight, source_model.fc.weight)
    assert not report.mismatched


def test_bundle_source_reads_models_model_pt(tmp_path: Path, source_model: torch.nn.Module) -> None:
    (tmp_path / "other_bundle" / "models").mkdir(parents=True)
    torch.save(source_model.state_dict(), tmp_path / "other_bundle" / "models" / "model.pt")
    target = build_classifier("resnet18", num_classes=3)
    report = load_pretrained(target, f"bundle:{tmp_path / 'other_bundle'}", "resnet18")
    assert report.loaded and _equal_outside_head(source_model, target)


def test_wrong_architecture_refuses_instead_of_dropping(tmp_path: Path, source_model: torch.nn.Module) -> None:
    torch.save(source_model.state_dict(), tmp_path / "resnet.pt")
    with pytest.raises(WeightsError, match="do not fit densenet121 outside the head"):
        load_pretrained(build_classifier("densenet121", 2), str(tmp_path / "resnet.pt"), "densenet121")


def test_imagenet_missing_names_the_file_and_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    expected = tmp_path / "hub" / "checkpoints" / "densenet121-a639ec97.pth"
    assert imagenet_weights_file("densenet121") == expected
    with pytest.raises(WeightsError) as info:
        load_pretrained(build_classifier("densenet121", 14), "imagenet", "densenet121")
    assert str(expected) in str(info.value) and "never downloads" in str(info.value)


def test_imagenet_from_cache_renames_old_densenet_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    reference = build_classifier("densenet121", 1000)
    # torchvision's published file uses the old "norm.1" style names; write one like it.
    old = {k.replace("norm1", "norm.1").replace("conv2", "conv.2") if "denselayer" in k else k: v
           for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")}
    imagenet_weights_file("densenet121").parent.mkdir(parents=True)
    torch.save(old, imagenet_weights_file("densenet121"))
    target = build_classifier("densenet121", 14)
    report = load_pretrained(target, "imagenet", "densenet121")
    assert sorted(report.mismatched) == ["classifier.bias", "classifier.weight"]
    assert torch.equal(target.features.denseblock1.denselayer1.norm1.weight,
                       reference.features.denseblock1.denselayer1.norm1.weight)


@pytest.mark.parametrize(("content", "match"), [(None, "not found"), (b"garbage", "cannot read weights"),
                                                ("list", "does not hold a state dict")],
                         ids=["missing", "corrupt", "not-a-state-dict"])
def test_unreadable_files_raise(tmp_path: Path, content: bytes | str | None, match: str) -> None:
    path = tmp_path / "w.pt"
    if content == "list":
        torch.save([torch.zeros(1)], path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(WeightsError, match=match):
        read_state_dict(path)


def test_none_keeps_initialisation() -> None:
    model = build_classifier("resnet18", 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_pretrained(model, "none", "resnet18")
    assert not report.loaded and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(("arch", "head", "features"), [("densenet121", "classifier", 1024), ("resnet50", "fc", 2048),
                                                       ("vgg19", "classifier.6", 4096), ("swin_t", "head", 768)],
                         ids=["densenet121", "resnet50", "vgg19", "swin_t"])
def test_factory_replaces_the_head(arch: str, head: str, features: int) -> None:
    model = build_classifier(arch, 7)
    layer = model.get_submodule(head)
    assert (layer.in_features, layer.out_features) == (features, 7)


def test_unknown_architecture_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown architecture 'densenet'; choose from: densenet121"):
        build_classifier("densenet", 2)


def test_required_modules_replace_the_head_rule(tmp_path: Path) -> None:
    from monai.networks.nets import UNet

    from common.networks.layer_groups import encoder_modules

    source = UNet(2, 3, 4, (8, 16, 32), (2, 2))
    encoder = encoder_modules(source)
    torch.save({k: v for k, v in source.state_dict().items() if k.startswith(tuple(m + "." for m in encoder))},
               tmp_path / "encoder.pt")
    target = UNet(2, 3, 6, (8, 16, 32), (2, 2))
    report = load_pretrained(target, str(tmp_path / "encoder.pt"), "unet", required=encoder)
    assert report.loaded and all(k.startswith(tuple(m + "." for m in encoder)) for k in report.loaded)
    assert report.missing  # the decoder and head keep their initialisation
    partial = {k: v for k, v in source.state_dict().items() if k.startswith(encoder[0] + ".")}
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(WeightsError, match="required modules"):
        load_pretrained(target, str(tmp_path / "partial.pt"), "unet", required=encoder)
