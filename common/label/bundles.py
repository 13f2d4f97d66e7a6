"""The bundles a MONAI Label server serves: where each one's configs and trained model live, and its predictor.

A served bundle reads its configs from the repository's ``bundles/<name>/configs`` (the same preprocessing, network
and post-processing as ``python -m monai.bundle run``: no second copy) and keeps its state, ``models/``, ``eval/``
and logs, under the server's workspace: ``bundle_root`` is overridden to ``<workspace>/<name>``. The model name in
MONAI Label is the bundle's folder name.

:class:`Predictor` runs one image through the bundle's ``inference.json`` (``preprocessing``, ``network``,
``inferer``, ``postprocessing``), loads ``models/model.pt`` through :func:`common.networks.check_checkpoint` (the
checkpoint card's arch is used, so a model trained with ``--arch resnet18`` serves as such) and reloads it when
the file changes (a finished ``/train`` writes it atomically).
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigParser

from common.errors import ConfigError, WeightsError
from common.metrics.segmentation import labels_from_scores
from common.networks.checkpoint_card import check_checkpoint, file_sha256, read_card, trained_settings
from common.networks.weights import read_state_dict

__all__ = ["CLASSIFICATION", "SEGMENTATION", "LabelBundle", "NotTrainedError", "Predictor", "discover_bundles"]

CLASSIFICATION = "classification"
SEGMENTATION = "segmentation"
_CLASSIFICATION_FORMATS = ("multilabel", "binary", "classification", "multiclass")


@functools.lru_cache(maxsize=64)
def _sha256_of(path: str, mtime_ns: int, size: int) -> str:
    """sha256 of ``path`` as it was at (``mtime_ns``, ``size``): ``/info`` and active learning ask for the model
    version on every request, and hashing a 28 MB DenseNet file each time would be wasted I/O."""
    return file_sha256(path)


def model_version(path: Path) -> str:
    """sha256 of the model file, hashed once per (modification time, size)."""
    stat = path.stat()
    return _sha256_of(str(path), stat.st_mtime_ns, stat.st_size)


class NotTrainedError(WeightsError):
    """The bundle has no ``models/model.pt`` yet (the server answers 409)."""


def _read_json(file: Path) -> dict[str, Any]:
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read {file}: {err}") from err


#: the loss of single-label bundles, whose class-index labels the datastore does not write (see LabelBundle)
SINGLE_LABEL_LOSS = "common.losses.SingleLabelLoss"


@dataclass(frozen=True)
class LabelBundle:
    """One bundle as served: configs from ``source``, state under ``root``.

    Attributes:
        name: the bundle folder name (MONAI Label's model name).
        source: the bundle folder whose ``configs/`` are read.
        root: the ``bundle_root`` runs use (``models/``, ``eval/``, ``logs/`` go here).
        kind: :data:`CLASSIFICATION` or :data:`SEGMENTATION` (metadata's output format).
    """

    name: str
    source: Path
    root: Path
    kind: str

    @property
    def metadata(self) -> dict[str, Any]:
        """``configs/metadata.json``."""
        return _read_json(self.source / "configs" / "metadata.json")

    @property
    def trainable_from_labels(self) -> bool:
        """Whether the labels this server saves can train the bundle.

        The datastore saves multi-label findings (a list per image) and segmentation masks; a single-label bundle
        (its ``train.json`` trains with ``common.losses.SingleLabelLoss``, e.g. ``medical_image_classification``)
        takes one class index per image, which the store does not write yet, so it is served for inference and
        active learning only.
        """
        loss = _read_json(self.config_file("train.json")).get("loss")
        return not (isinstance(loss, dict) and loss.get("_target_") == SINGLE_LABEL_LOSS)

    def config_file(self, name: str) -> Path:
        """``configs/<name>`` of the bundle (``ConfigError`` if missing)."""
        file = self.source / "configs" / name
        if not file.is_file():
            raise ConfigError(f"bundle {self.name} has no configs/{name} ({file})")
        return file

    def parser(self, *configs: str, **override: Any) -> ConfigParser:
        """MONAI's parser over ``configs`` (default ``inference.json``) with ``bundle_root`` = :attr:`root`."""
        parser = ConfigParser()
        parser.read_config([str(self.config_file(name)) for name in (configs or ("inference.json",))])
        parser.read_meta(str(self.config_file("metadata.json")))
        parser.update({"bundle_root": str(self.root), **override})
        return parser

    def class_names(self) -> list[str]:
        """Class names as the bundle spells them (the trained card's when there is a model, else the config's)."""
        card = read_card(self.model_path) if self.trained else None
        if card and card.get("class_names"):
            return [str(c) for c in card["class_names"]]
        return [str(c) for c in self.parser().get_parsed_content("class_names")]

    def arch(self) -> str:
        """The architecture served: the checkpoint card's, else the config default."""
        return str(self.trained_settings().get("arch") or self.parser()["arch"])

    def trained_settings(self) -> dict[str, Any]:
        """Config overrides that reproduce the trained model's settings: its card's ``arch`` and preprocessing.

        A model trained at ``image_size=64`` is then served at 64 px without the user repeating it. Empty when
        there is no model or no card.
        """
        return trained_settings(read_card(self.model_path) if self.trained else None)

    @property
    def model_path(self) -> Path:
        """``<root>/models/model.pt``."""
        return self.root / "models" / "model.pt"

    @property
    def trained(self) -> bool:
        """Whether ``models/model.pt`` exists."""
        return self.model_path.is_file()

    def version(self) -> str | None:
        """sha256 of ``models/model.pt`` (``None`` when not trained): the key for per-model caches."""
        return model_version(self.model_path) if self.trained else None

    def thresholds(self, class_names: list[str] | None = None) -> tuple[list[float], str]:
        """Per-class decision thresholds and where they come from.

        The evaluation's validation-chosen thresholds (``eval/metrics.json``, Youden's J) when that report is
        newer than the model; otherwise 0.5 for every class, saying why. ``class_names``: the served model's,
        when the caller has them (saves reading the card again).
        """
        names = class_names if class_names is not None else self.class_names()
        report = self.root / "eval" / "metrics.json"
        if not report.is_file():
            return [0.5] * len(names), "0.5 (no evaluation of this model yet)"
        if self.trained and report.stat().st_mtime_ns < self.model_path.stat().st_mtime_ns:
            return [0.5] * len(names), "0.5 (the evaluation is older than the model)"
        metrics = _read_json(report)
        per_class = metrics.get("per_class") or []
        if metrics.get("threshold_source") != "validation" or [c.get("name") for c in per_class] != names:
            return [0.5] * len(names), "0.5 (the evaluation chose no thresholds for these classes)"
        return [float(c["at_threshold"]["threshold"]) for c in per_class], "validation (eval/metrics.json)"


def _kind(metadata: dict[str, Any], name: str) -> str:
    try:
        fmt = str(metadata["network_data_format"]["outputs"]["pred"]["format"])
    except (KeyError, TypeError) as err:
        raise ConfigError(f"bundle {name}: metadata.json has no network_data_format.outputs.pred.format") from err
    if fmt == "segmentation":
        return SEGMENTATION
    if fmt in _CLASSIFICATION_FORMATS:
        return CLASSIFICATION
    raise ConfigError(f"bundle {name}: output format {fmt!r} is neither segmentation nor one of "
                      f"{', '.join(_CLASSIFICATION_FORMATS)}")  # fmt: skip


def discover_bundles(bundles_dir: str | os.PathLike, workspace: str | os.PathLike,
                     names: list[str] | None = None) -> dict[str, LabelBundle]:
    """Find servable bundles (a folder with ``configs/inference.json`` and ``metadata.json``) under ``bundles_dir``.

    Args:
        bundles_dir: the folder holding bundle folders (the repository's ``bundles/``).
        workspace: where each bundle's state goes (``<workspace>/<name>``, created).
        names: serve only these (in this order); ``None`` or ``["all"]``: every bundle found.

    Raises:
        ConfigError: an unknown name (the message lists the bundles found).
    """
    base = Path(bundles_dir)
    found = sorted(p.name for p in base.iterdir() if (p / "configs" / "inference.json").is_file()) \
        if base.is_dir() else []  # fmt: skip
    if not found:
        raise ConfigError(f"no bundles (folders with configs/inference.json) under {base}")
    wanted = found if not names or names == ["all"] else names
    unknown = [n for n in wanted if n not in found]
    if unknown:
        raise ConfigError(f"unknown bundle(s) {', '.join(unknown)} under {base}; found: {', '.join(found)}")
    out = {}
    for name in wanted:
        source = base / name
        root = Path(workspace) / name
        root.mkdir(parents=True, exist_ok=True)
        out[name] = LabelBundle(name, source.resolve(), root.resolve(),
                                _kind(_read_json(source / "configs" / "metadata.json"), name))
    return out


class Predictor:
    """One bundle's ``inference.json`` as a per-image function, reloading the model when its file changes.

    Thread-safe: MONAI Label runs requests in a thread pool.

    Example:
        >>> Predictor(bundle).predict("studies/img.png")["probabilities"]  # doctest: +SKIP
    """

    def __init__(self, bundle: LabelBundle) -> None:
        self.bundle = bundle
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._parts: dict[str, Any] = {}
        self.version: str | None = None

    def _file_stamp(self) -> tuple[int, int]:
        stat = self.bundle.model_path.stat()
        return stat.st_mtime_ns, stat.st_size

    def _load(self) -> dict[str, Any]:
        """(Re)build the network and transforms when ``model.pt`` changed; return them."""
        if not self.bundle.trained:
            raise NotTrainedError(f"{self.bundle.name} has no trained model yet ({self.bundle.model_path} does not "
                                  f"exist): POST /train/{self.bundle.name} after labelling images")  # fmt: skip
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return self._parts
        settings = self.bundle.trained_settings()
        parser = self.bundle.parser(**settings)
        arch = str(parser["arch"])
        class_names = [str(c) for c in parser.get_parsed_content("class_names")]
        network = parser.get_parsed_content("network")
        preprocessing = parser.get_parsed_content("checkpoint_card#preprocessing")
        try:
            check_checkpoint(self.bundle.model_path, arch=arch, class_names=class_names, preprocessing=preprocessing,
                             network=network)
        except WeightsError:  # caught between a new card and its model (two renames): once more, a moment later
            time.sleep(0.5)
            check_checkpoint(self.bundle.model_path, arch=arch, class_names=class_names, preprocessing=preprocessing,
                             network=network)
            stamp = self._file_stamp()
        network.load_state_dict(read_state_dict(self.bundle.model_path))
        network.eval()
        self._parts = {
            "network": network,
            "preprocessing": parser.get_parsed_content("preprocessing"),
            "postprocessing": parser.get_parsed_content("postprocessing"),
            "inferer": parser.get_parsed_content("inferer"),
            "device": parser.get_parsed_content("device"),
            "amp": bool(parser.get_parsed_content("amp")),
            # the precision key's dtype (bf16 on GPUs that support it); older configs without it autocast to fp16
            "amp_kwargs": dict(parser.get_parsed_content("amp_kwargs")) if "amp_kwargs" in parser else {},
            "class_names": class_names,
        }
        self._stamp, self.version = stamp, model_version(self.bundle.model_path)
        return self._parts

    def scores(self, image: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
        """Post-processed network output for one image file and the class names.

        Returns:
            ``(C,)`` sigmoid probabilities (classification) or ``(K, H, W)`` softmax maps at the input's
            size (segmentation), as float32, and the class names.

        Raises:
            NotTrainedError: no ``models/model.pt``.
        """
        with self._lock:
            parts = self._load()
            item = parts["preprocessing"]({"image": str(image)})
            batch = item["image"].unsqueeze(0).to(parts["device"])
            device_type = parts["device"].type if isinstance(parts["device"], torch.device) else str(parts["device"])
            amp = parts["amp"] and device_type == "cuda"
            with torch.no_grad(), torch.autocast(device_type=device_type, enabled=amp, **parts["amp_kwargs"]):
                logits = parts["inferer"](inputs=batch, network=parts["network"])
            pred = parts["postprocessing"]({"pred": logits[0].float()})["pred"]
            array = pred.detach().cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)
            return array.astype(np.float32), list(parts["class_names"])

    def labels(self, image: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
        """Segmentation label map for one image: ``(H, W)`` uint8 codes ``1..K`` (0 is never predicted)."""
        maps, names = self.scores(image)
        return labels_from_scores(maps, len(names)).astype(np.uint8), names
