"""Grad-CAM of a trained classification bundle: maps and overlays per image (``explain.json``), pointing game
against the datalist's boxes (``python -m common explain-eval``).

The model is built as inference builds it, the way :class:`common.label.bundles.Predictor` does: MONAI's
``ConfigParser`` over ``configs/inference.json`` with ``bundle_root`` and the checkpoint card's trained settings
(``arch``, preprocessing: :func:`common.networks.checkpoint_card.trained_settings`), ``check_checkpoint``, then the
weights of ``models/model.pt``. Maps are computed at the network's input resolution (``image_size``); boxes, in the
stored image's pixels, are rescaled to that grid (:func:`common.explain.pointing_game.map_box`). The preprocessing
resizes the whole image (no crop), so the rescaling is exact.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn as nn
from monai.bundle import ConfigParser
from PIL import Image

from common.data.datalist import load_datalist
from common.errors import ConfigError, DataError
from common.explain.gradcam import FindingGradCAM
from common.explain.pointing_game import (
    DEFAULT_IOU_THRESHOLD,
    DEFAULT_TOLERANCE_PX,
    BoxScore,
    map_box,
    score_box,
    summarise_scores,
)
from common.io import atomic_write_json, atomic_write_text, make_directory
from common.networks.checkpoint_card import check_checkpoint, read_card, trained_settings
from common.networks.weights import read_state_dict
from common.transforms.radiograph import read_radiograph

__all__ = ["ExplanationWriter", "output_names", "load_bundle_model", "evaluate_pointing_game", "format_pointing_table"]

logger = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _stem(path: str) -> str:
    return _UNSAFE.sub("_", Path(path).stem)


def output_names(paths: Iterable[str]) -> dict[str, str]:
    """File-name stem of each image's maps: the image's own stem when the stems are unique, else its path.

    CBIS-DDSM names every DICOM ``1-1.dcm`` in its own folder, so a stem alone would overwrite the other images'
    maps. When two inputs share a stem, every name becomes the path relative to the inputs' shared folder, without
    suffix, ``/`` written as ``__`` (``Mass-Training_P_00001_LEFT_CC__07-20-2016-DDSM-74994__1-1``): deterministic
    for a given datalist, and the same for every image of the run.
    """
    unique = list(dict.fromkeys(str(path) for path in paths))
    stems = [_stem(path) for path in unique]
    if len(set(stems)) == len(stems):
        return dict(zip(unique, stems, strict=True))
    absolute = [os.path.abspath(path) for path in unique]
    base = os.path.commonpath(absolute) if len(absolute) > 1 else os.path.dirname(absolute[0])
    names = {}
    for path, full in zip(unique, absolute, strict=True):
        relative = os.path.splitext(os.path.relpath(full, base))[0]
        names[path] = "__".join(_UNSAFE.sub("_", part) for part in Path(relative).parts)
    return names


def overlay(image: np.ndarray, cam_map: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """An RGB uint8 heat map (jet) of ``cam_map`` in [0, 1] over the grey ``image`` in [0, 1], at the map's size."""
    grey = cv2.resize(image.astype(np.float32), cam_map.shape[::-1], interpolation=cv2.INTER_AREA)
    grey = np.repeat((np.clip(grey, 0, 1) * 255)[..., None], 3, axis=2)
    heat = cv2.applyColorMap((np.clip(cam_map, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    return ((1 - alpha) * grey + alpha * heat).round().astype(np.uint8)


class ExplanationWriter:
    """Run Grad-CAM over a bundle's inference dataloader; save ``<image>_<finding>.npy`` and ``.png`` overlays.

    Used by ``configs/explain.json`` on top of ``inference.json``; files go to ``output_dir``
    (``<bundle_root>/explanations``). The map of each finding is at the network input's resolution, in [0, 1].

    Args:
        network: the inference network (weights are loaded from ``ckpt_path`` by :meth:`run`).
        arch: architecture name (picks the Grad-CAM target layer).
        class_names: the network's output names.
        output_dir: folder receiving the files.
        findings: names to explain (default: every class).
    """

    def __init__(self, network: nn.Module, arch: str, class_names: Sequence[str], output_dir: str | os.PathLike,
                 findings: Sequence[str] | None = None) -> None:  # fmt: skip
        names = list(class_names)
        chosen = list(findings) if findings else names
        unknown = [name for name in chosen if name not in names]
        if unknown:
            raise ConfigError(f"explain findings {unknown} are not classes of the model; choose from: {names}")
        self.network, self.arch, self.output_dir = network, arch, Path(output_dir)
        self.findings, self.indices = chosen, [names.index(name) for name in chosen]

    def run(self, dataloader: Iterable[dict[str, Any]], ckpt_path: str | os.PathLike,
            device: torch.device | str = "cpu") -> int:  # fmt: skip
        """Load the checkpoint, explain every batch, return the number of images written."""
        self.network.load_state_dict(read_state_dict(ckpt_path))
        self.network.to(device).eval()
        cam = FindingGradCAM(self.network, self.arch)
        make_directory(self.output_dir)
        count = 0
        items = getattr(getattr(dataloader, "dataset", None), "data", None)
        names = output_names(item["image"] for item in items) if isinstance(items, Sequence) else {}
        for batch in dataloader:
            images = batch["image"]
            maps = cam(images.to(device), self.indices).cpu().numpy()
            files = images.meta["filename_or_obj"] if hasattr(images, "meta") else [f"image{count + i}" for i in
                                                                                   range(len(images))]  # fmt: skip
            for path, image_maps in zip(files, maps, strict=True):
                original = read_radiograph(path)[0] if os.path.isfile(str(path)) else None
                for name, cam_map in zip(self.findings, image_maps, strict=True):
                    stem = f"{names.get(str(path)) or _stem(str(path))}_{name}"  # names may hold dots (DICOM UIDs)
                    np.save(self.output_dir / f"{stem}.npy", cam_map.astype(np.float32))
                    if original is not None:
                        Image.fromarray(overlay(original, cam_map)).save(self.output_dir / f"{stem}.png")
                count += 1
        logger.info("Grad-CAM (%s) of %d image(s) x %d finding(s) written to %s", cam.layer, count,
                    len(self.findings), self.output_dir)  # fmt: skip
        return count


def load_bundle_model(bundle_root: str | os.PathLike, configs_dir: str | os.PathLike | None = None,
                      **override: Any) -> dict[str, Any]:  # fmt: skip
    """Inference objects of a trained bundle: ``network`` (weights loaded, eval), ``preprocessing``, ``arch``,
    ``class_names``, ``device``, ``image_size``, built from ``inference.json`` with the checkpoint card's settings."""
    root = Path(bundle_root)
    configs = Path(configs_dir) if configs_dir else root / "configs"
    model = root / "models" / "model.pt"
    for needed in (configs / "inference.json", configs / "metadata.json", model):
        if not needed.is_file():
            raise ConfigError(f"explain-eval needs {needed}: train the bundle first, or pass --configs for a "
                              "bundle_root without configs/")  # fmt: skip
    parser = ConfigParser()
    parser.read_config(str(configs / "inference.json"))
    parser.read_meta(str(configs / "metadata.json"))
    parser.update({"bundle_root": str(root), **trained_settings(read_card(model)), **override})
    arch = str(parser["arch"])
    class_names = [str(c) for c in parser.get_parsed_content("class_names")]
    network = parser.get_parsed_content("network")
    check_checkpoint(model, arch=arch, class_names=class_names,
                     preprocessing=parser.get_parsed_content("checkpoint_card#preprocessing"), network=network)
    network.load_state_dict(read_state_dict(model))
    network.eval()
    return {"network": network, "preprocessing": parser.get_parsed_content("preprocessing"), "arch": arch,
            "class_names": class_names, "device": parser.get_parsed_content("device"),
            "image_size": parser.get_parsed_content("image_size")}  # fmt: skip


def _boxed_items(datalist: Path, split: str, dataset_dir: Path) -> list[tuple[str, list[dict[str, Any]]]]:
    """``(absolute image path, boxes)`` of the split's items with boxes (paths checked by ``load_datalist``)."""
    checked = load_datalist(datalist, split, dataset_dir, check_images=False)
    raw = json.loads(datalist.read_text(encoding="utf-8"))[split]
    pairs = [(item["image"], original.get("boxes") or []) for item, original in zip(checked, raw, strict=True)]
    boxed = [(image, boxes) for image, boxes in pairs if boxes]
    if not boxed:
        raise DataError(f"{datalist}: no item of split {split!r} has 'boxes'; put BBox_List_2017.csv in the dataset "
                        "folder and rerun `python -m common prepare-data chestxray14`")  # fmt: skip
    return boxed


def _stored_shape(path: str) -> tuple[int, int]:
    try:
        with Image.open(path) as img:
            return img.size[1], img.size[0]
    except OSError:
        return tuple(read_radiograph(path)[0].shape)  # DICOM or another format PIL does not read


def evaluate_pointing_game(bundle_root: str | os.PathLike, dataset_dir: str | os.PathLike,
                           datalist: str | os.PathLike | None = None, split: str = "test", *,
                           configs_dir: str | os.PathLike | None = None, batch_size: int = 8,
                           tolerance_px: float = DEFAULT_TOLERANCE_PX, iou_threshold: float = DEFAULT_IOU_THRESHOLD,
                           n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """Pointing game and IoU of the trained bundle's Grad-CAM on the split's boxes.

    Writes ``<bundle_root>/explanations/pointing_game.json`` (:func:`summarise_scores` plus the model and data) and
    ``pointing_game.md`` (:func:`format_pointing_table`); returns the JSON content.
    """
    dataset = Path(dataset_dir)
    file = Path(datalist) if datalist else dataset / "datalist.json"
    parts = load_bundle_model(bundle_root, configs_dir, dataset_dir=str(dataset))
    names = parts["class_names"]
    items = _boxed_items(file, split, dataset)
    cam = FindingGradCAM(parts["network"], parts["arch"])
    scores: list[BoxScore] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        for path, boxes in chunk:
            unknown = sorted({b["finding"] for b in boxes} - set(names))
            if unknown:
                raise DataError(f"{file}: boxes of {path} name {unknown}, not classes of the model ({names})")
        wanted = sorted({names.index(b["finding"]) for _, boxes in chunk for b in boxes})
        batch = torch.stack([parts["preprocessing"]({"image": path})["image"] for path, _ in chunk])
        maps = cam(batch.to(parts["device"]), wanted).cpu().numpy()
        for (path, boxes), image_maps in zip(chunk, maps, strict=True):
            shape = _stored_shape(path)
            for box in boxes:
                cam_map = image_maps[wanted.index(names.index(box["finding"]))]
                scores.append(score_box(cam_map, box["finding"], map_box(box, shape, cam_map.shape), tolerance_px,
                                        iou_threshold))  # fmt: skip
    result = summarise_scores(scores, n_boot=n_boot, seed=seed, tolerance_px=tolerance_px, iou_threshold=iou_threshold)
    result["model"] = {"arch": parts["arch"], "target_layer": cam.layer, "image_size": parts["image_size"],
                       "bundle_root": str(bundle_root)}  # fmt: skip
    result["data"] = {"datalist": str(file), "split": split, "n_images": len(items)}
    out = Path(bundle_root) / "explanations"
    atomic_write_json(out / "pointing_game.json", result)
    atomic_write_text(out / "pointing_game.md", format_pointing_table(result))
    return result


def format_pointing_table(result: dict[str, Any]) -> str:
    """Markdown table: per finding n boxes, hit rate [95% CI], random baseline, mean IoU."""
    s = result["settings"]
    lines = [f"Pointing game (Grad-CAM maximum inside the box +- {s['tolerance_px']:g} px per {s['reference_size']} "
             f"px), IoU at {s['iou_threshold']:g} of the map's maximum; 95% CI: {s['ci']} ({s['n_boot']} resamples)",
             "", "| finding | boxes | hit rate [95% CI] | random baseline | mean IoU |", "|---|---|---|---|---|"]
    rows = [*result["findings"].items(), ("all", result["all"])]
    for name, r in rows:
        if r.get("n_boxes"):
            lo, hi = r["hit_rate_ci95"]
            lines.append(f"| {name} | {r['n_boxes']} | {r['hit_rate']:.3f} [{lo:.3f}, {hi:.3f}] | "
                         f"{r['random_baseline']:.3f} | {r['mean_iou']:.3f} |")  # fmt: skip
    return "\n".join(lines) + "\n"
