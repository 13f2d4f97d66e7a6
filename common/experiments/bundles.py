"""What the runner needs to know about a bundle: where it is, its metric, which architectures it builds."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import ConfigError

__all__ = ["BUNDLES_DIR", "FINETUNE_DIR", "BundleInfo", "bundle_info"]

_REPO = Path(__file__).resolve().parents[2]
BUNDLES_DIR = _REPO / "bundles"
FINETUNE_DIR = _REPO / "configs" / "finetune"

_CLASSIFIER_FACTORY = "common.networks.build_classifier"
_SEGMENTER_FACTORY = "common.networks.build_segmenter"


def _classifier_archs() -> list[str]:
    from common.networks import ARCHITECTURES

    return sorted(ARCHITECTURES)


def _segmenter_archs() -> dict[str, str | None]:
    """Segmentation arch -> the classifier backbone its encoder takes weights from (``None``: no backbone)."""
    from common.networks import SEGMENTERS

    return {name: spec.backbone for name, spec in SEGMENTERS.items()}


@dataclass(frozen=True)
class BundleInfo:
    """A bundle folder and the facts the grid is checked against.

    Attributes:
        name: folder name (the ``bundle`` column of results).
        path: the bundle folder (``configs/`` inside).
        factory: ``network_def``'s ``_target_`` in ``train.json``.
        default_arch: the bundle's ``arch`` default.
        metric: the evaluation metric the leaderboard ranks on (``key_metric`` without ``val_``).
        config_ids: top-level ids of ``train.json`` and ``evaluate.json``: what a task override may set.
        train_ids: top-level ids of ``train.json`` alone (a stage-2 run is trained, not evaluated).
    """

    name: str
    path: Path
    factory: str
    default_arch: str
    metric: str
    config_ids: frozenset[str] = frozenset()
    train_ids: frozenset[str] = frozenset()

    @property
    def kind(self) -> str:
        """``"classification"`` or ``"segmentation"`` (by the key metric)."""
        return "segmentation" if "dice" in self.metric else "classification"

    def archs(self) -> list[str]:
        """Architectures this bundle's ``network_def`` can build (by its ``arch`` key)."""
        if self.factory == _CLASSIFIER_FACTORY:
            return _classifier_archs()
        if self.factory == _SEGMENTER_FACTORY:
            return sorted(_segmenter_archs())
        return [self.default_arch]

    def check_arch(self, arch: str) -> None:
        """Raise ``ConfigError`` unless this bundle builds ``arch``."""
        if arch not in self.archs():
            raise ConfigError(f"bundle {self.name} cannot build architecture {arch!r}; "
                              f"choose from: {', '.join(self.archs())}")

    def build_network(self, arch: str, num_classes: int = 2) -> Any:
        """A fresh network of ``arch`` as this bundle's factory builds it (random weights).

        Raises:
            ConfigError: the bundle's network is not built by a medxfer factory.
        """
        from common.networks import build_classifier, build_segmenter

        if self.factory == _CLASSIFIER_FACTORY:
            return build_classifier(arch, num_classes)
        if self.factory == _SEGMENTER_FACTORY:
            return build_segmenter(arch, num_classes)
        raise ConfigError(f"bundle {self.name}: its network ({self.factory}) is not built by a medxfer factory")

    def backbone(self, arch: str) -> str | None:
        """The classifier architecture whose weights fill ``arch`` (itself for classifiers; ``None``: none)."""
        if self.factory == _CLASSIFIER_FACTORY:
            return arch
        if self.factory == _SEGMENTER_FACTORY:
            return _segmenter_archs().get(arch)
        return None


def _read_json(file: Path) -> dict[str, Any]:
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read bundle config {file}: {err}") from err


def bundle_info(name_or_path: str, base: str | os.PathLike = ".") -> BundleInfo:
    """Find a bundle by name under ``bundles/`` or by path (relative to ``base``) and read its facts.

    Raises:
        ConfigError: no such bundle, or its ``train.json`` lacks ``network_def`` / ``arch`` / a key metric.
    """
    candidates = [BUNDLES_DIR / name_or_path, Path(base) / os.path.expanduser(name_or_path)]
    path = next((p.resolve() for p in candidates if (p / "configs" / "train.json").is_file()), None)
    if path is None:
        known = sorted(p.name for p in BUNDLES_DIR.iterdir() if (p / "configs" / "train.json").is_file())
        raise ConfigError(f"unknown bundle {name_or_path!r}: no configs/train.json there or under {BUNDLES_DIR}; "
                          f"shipped bundles: {', '.join(known)}")
    train = _read_json(path / "configs" / "train.json")
    metrics = list((train.get("validate", {}).get("key_metric") or {}).keys())
    if "arch" not in train or "network_def" not in train or len(metrics) != 1:
        raise ConfigError(f"bundle {path} is not runnable by the experiment runner: its train.json needs an 'arch' "
                          f"key, 'network_def' and one validate#key_metric (found {metrics})")
    ids = set(train)
    if (path / "configs" / "evaluate.json").is_file():
        ids |= set(_read_json(path / "configs" / "evaluate.json"))
    return BundleInfo(name=path.name, path=path, factory=str(train["network_def"].get("_target_", "")),
                      default_arch=str(train["arch"]), metric=metrics[0].removeprefix("val_"),
                      config_ids=frozenset(k for k in ids if "#" not in k),
                      train_ids=frozenset(k for k in train if "#" not in k))
