"""Segmentation handlers for MONAI evaluators: report, validation mean Dice, and a mask writer for inference.

All three read decollated items (a MONAI evaluator with a postprocessing) where ``pred`` is ``(K, *spatial)``
class scores (logits or probabilities) for labels ``1..K`` and ``label`` is ``(1, *spatial)`` with
``ignore_index`` (0) or ``1..K``; see :mod:`common.metrics.segmentation` for the convention.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import nibabel as nib
import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.metrics import Metric
from PIL import Image

from common.engines.collect import batch_sources, item_filename, item_meta
from common.errors import ConfigError, DataError
from common.io import atomic_save, atomic_write_json
from common.metrics.segmentation import (
    HD95_MISSED_POLICIES,
    confusion_matrix,
    dice_iou_from_confusion,
    dice_per_image_from_confusion,
    hd95_per_class,
    image_diagonal,
    labels_from_scores,
    segmentation_metrics_from_confusion,
)
from common.metrics.segmentation_report import format_segmentation_table, write_segmentation_report

__all__ = ["SegmentationReportHandler", "MeanDice", "SegmentationMaskWriter"]

logger = logging.getLogger(__name__)


def _decollated(engine: Engine, who: str) -> list[dict[str, Any]]:
    items = engine.state.output
    if isinstance(items, dict):
        raise DataError(f"{who} needs decollated output: give the evaluator a postprocessing")
    return list(items)


def _label_map(value: Any) -> np.ndarray:
    """``(1, *spatial)`` label tensor -> ``(*spatial)`` int64 array."""
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.ndim < 2 or array.shape[0] != 1:
        raise DataError(f"expected a label of shape (1, *spatial); found {array.shape}")
    return np.rint(array[0]).astype(np.int64)


def _file_stem(filename: str) -> str:
    name = Path(filename).name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else Path(name).stem


def _image_to_rgb(image: Any, mean: Sequence[float] | None, std: Sequence[float] | None) -> np.ndarray:
    """``(C, H, W)`` image (C = 1 or 3) -> uint8 ``(H, W, 3)``: undo ``(x - mean) / std``, else min-max scale."""
    array = (image.detach().float().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)).copy()
    if array.ndim != 3 or array.shape[0] not in (1, 3):
        raise DataError(f"overlays need an image of shape (1 or 3, H, W); found {array.shape}")
    if mean is not None and std is not None:
        array = array * np.asarray(std, dtype=np.float64)[:, None, None] + np.asarray(mean)[:, None, None]
    else:
        low, high = float(array.min()), float(array.max())
        array = (array - low) / (high - low) if high > low else np.zeros_like(array)
    rgb = np.repeat(array, 3, axis=0) if array.shape[0] == 1 else array
    return np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8).transpose(1, 2, 0)


class SegmentationReportHandler:
    """Accumulate a pixel confusion matrix and per-image HD95, then write the segmentation report on COMPLETED.

    Only the first ``n_overlays`` images are kept (for the pictures; none when ``plots`` is False); everything else
    is reduced per iteration.
    Meant for a single-process evaluation run (``python -m common eval``), not for DDP.

    Args:
        output_dir: report folder (see :func:`~common.metrics.write_segmentation_report`), replaced whole.
        class_names: names of labels ``1..K``.
        n_overlays: how many images get an image / truth / prediction picture.
        mean: per-channel mean the image was normalised with (in [0, 1] units), to undo it for pictures.
        std: the matching standard deviations. Without mean and std, pictures are min-max scaled.
        ignore_index: the ignored truth label.
        title: report heading.
        reverse_indexing: arrays are ``(W, H)`` (MONAI ``LoadImage`` with ``PILReader`` default); transpose pictures.
        hd95_missed: how an image whose truth or prediction lacks a class counts in HD95: ``"exclude"`` (mean over
            finite values, missed cases counted) or ``"diagonal"`` (scored as the image diagonal); see
            :mod:`common.metrics.segmentation`.
        plots: draw the confusion matrix and the overlays. ``False`` (a federated round's report) writes no PNG
            and keeps no overlay images; the metrics are the same.

    Example:
        >>> SegmentationReportHandler("eval/test", ["tumor", "stroma"]).attach(evaluator)  # doctest: +SKIP
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        class_names: Sequence[str],
        n_overlays: int = 4,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        ignore_index: int = 0,
        title: str = "Segmentation evaluation",
        reverse_indexing: bool = False,
        hd95_missed: str = "exclude",
        plots: bool = True,
    ) -> None:
        if hd95_missed not in HD95_MISSED_POLICIES:
            raise ConfigError(f"unknown hd95_missed {hd95_missed!r}; choose from: {', '.join(HD95_MISSED_POLICIES)}")
        if (mean is None) != (std is None):
            raise ConfigError(f"give both mean and std to undo normalisation, or neither; found {mean} and {std}")
        self.output_dir, self.class_names = Path(output_dir), list(class_names)
        self.n_overlays, self.mean, self.std = int(n_overlays), mean, std
        self.ignore_index, self.title, self.reverse_indexing = int(ignore_index), title, bool(reverse_indexing)
        self.hd95_missed, self.plots = hd95_missed, bool(plots)
        self.metrics: dict[str, Any] | None = None
        self.reset()

    def attach(self, engine: Engine) -> None:
        """Register with ``engine``: reset at start, accumulate every iteration, write the report at the end."""
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def reset(self, engine: Engine | None = None) -> None:
        """Forget the previous run."""
        k = len(self.class_names)
        self.confusion = np.zeros((k, k), dtype=np.int64)
        self.hd95_rows: list[list[float | None]] = []
        self.dice_rows: list[list[float | None]] = []
        self.diagonals: list[float] = []
        self.overlays: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []

    def collect(self, engine: Engine) -> None:
        """Add the current iteration's decollated items to the running statistics."""
        k = len(self.class_names)
        items = _decollated(engine, "SegmentationReportHandler")
        for item, source in zip(items, batch_sources(engine, items), strict=True):
            pred, truth = labels_from_scores(item["pred"], k), _label_map(item["label"])
            image_confusion = confusion_matrix(pred, truth, k, self.ignore_index)
            self.confusion += image_confusion
            self.dice_rows.append(dice_per_image_from_confusion(image_confusion))
            self.hd95_rows.append(hd95_per_class(pred, truth, k, self.ignore_index))
            self.diagonals.append(image_diagonal(truth.shape))
            if self.plots and len(self.overlays) < self.n_overlays and pred.ndim == 2:
                rgb = _image_to_rgb(item["image"], self.mean, self.std)
                if self.reverse_indexing:
                    rgb, truth, pred = rgb.transpose(1, 0, 2), truth.T, pred.T
                name = _file_stem(item_filename(item, source=source)) or f"image_{len(self.hd95_rows) - 1}"
                self.overlays.append((name, rgb, truth, pred))

    def completed(self, engine: Engine) -> None:
        """Compute the metrics and write the report folder."""
        self.metrics = segmentation_metrics_from_confusion(
            self.confusion, self.hd95_rows, self.class_names, self.ignore_index,
            dice_rows=self.dice_rows, diagonals=self.diagonals, hd95_missed=self.hd95_missed,
        )
        write_segmentation_report(self.metrics, self.output_dir, self.overlays, self.class_names, self.title,
                                  plots=self.plots)
        logger.info("segmentation report written to %s\n%s", self.output_dir, format_segmentation_table(self.metrics))


class MeanDice(Metric):
    """Mean Dice over classes ``1..K`` from a pixel confusion matrix accumulated over the whole run.

    Unlike ``monai.handlers.MeanDice`` (per-image Dice, then averaged) it pools pixels over all images, skips
    pixels whose truth is ``ignore_index``, and leaves classes absent from truth and prediction out of the mean.
    Under DDP the confusion matrices of all ranks are summed (``ignite.distributed.all_reduce``) before dividing.

    Args:
        num_classes: K.
        ignore_index: the ignored truth label.
        output_transform: maps ``engine.state.output`` to ``(y_pred, y)``, e.g.
            ``monai.handlers.from_engine(["pred", "label"])``; each a list of items or a batched tensor.

    Example:
        >>> MeanDice(3, output_transform=from_engine(["pred", "label"])).attach(evaluator, "val_mean_dice")
        ...     # doctest: +SKIP
    """

    def __init__(
        self, num_classes: int, ignore_index: int = 0, output_transform: Callable[[Any], Any] = lambda x: x
    ) -> None:
        self.num_classes, self.ignore_index = int(num_classes), int(ignore_index)
        super().__init__(output_transform=output_transform)

    def reset(self) -> None:
        self._confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, output: Sequence[Any]) -> None:
        y_pred, y = output
        for scores, label in zip(y_pred, y, strict=True):
            pred = labels_from_scores(scores, self.num_classes)
            self._confusion += confusion_matrix(pred, _label_map(label), self.num_classes, self.ignore_index)

    def compute(self) -> float:
        total = idist.all_reduce(torch.from_numpy(self._confusion.copy()))
        dice, _ = dice_iou_from_confusion(total.cpu().numpy())
        if np.isnan(dice).all():
            raise DataError("MeanDice: no annotated pixel was seen (every truth pixel is ignored or no images)")
        return float(np.nanmean(dice))


class SegmentationMaskWriter:
    """Write each prediction as a label map (labels ``1..K``) named after its input file, plus ``classes.json``.

    PNG inputs (and anything not NIfTI) give ``<stem>.png`` (uint8, 2-D); NIfTI inputs (``.nii`` / ``.nii.gz``) give
    a NIfTI file with the same extension and the image's affine (meta ``affine``: the grid the prediction is on;
    invert spatial transforms before this handler to land on the file's grid). ``classes.json`` maps
    ``{"1": name, ...}`` and is written once. Every file is written atomically.

    Args:
        output_dir: destination folder.
        class_names: names of labels ``1..K`` (K <= 255).
        relative_to: keep input sub-folders below this folder (avoids clashes of equal file names).
        reverse_indexing: arrays are ``(W, H)`` (MONAI ``LoadImage`` with ``PILReader`` default); transpose PNGs.

    Example:
        >>> SegmentationMaskWriter("predictions", ["tumor", "stroma"]).attach(evaluator)  # doctest: +SKIP
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        class_names: Sequence[str],
        relative_to: str | None = None,
        reverse_indexing: bool = False,
    ) -> None:
        if not 1 <= len(class_names) <= 255:
            raise ConfigError(f"PNG masks hold labels 1..255: need 1 to 255 class names; found {len(class_names)}")
        self.output_dir, self.class_names = Path(output_dir), list(class_names)
        self.relative_to, self.reverse_indexing = relative_to, bool(reverse_indexing)
        self.written: list[Path] = []
        self._seen: set[Path] = set()
        self._classes_written = False

    def attach(self, engine: Engine) -> None:
        """Register with ``engine``: ``classes.json`` at start, masks every iteration."""
        engine.add_event_handler(Events.STARTED, self.start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.write)

    def start(self, engine: Engine | None = None) -> None:
        """Write ``classes.json`` (first run only) and forget the previous run's files."""
        self.written, self._seen = [], set()
        if not self._classes_written:
            names = {str(c): name for c, name in enumerate(self.class_names, start=1)}
            atomic_write_json(self.output_dir / "classes.json", names)
            self._classes_written = True

    def _destination(self, filename: str) -> Path:
        if not filename:
            return self.output_dir / f"prediction_{len(self.written):05d}.png"
        relative = Path(os.path.relpath(filename, self.relative_to)) if self.relative_to else Path(Path(filename).name)
        if relative.parts and relative.parts[0] == "..":
            raise DataError(f"input {filename} is not inside relative_to={self.relative_to}")
        nifti = filename.lower().endswith((".nii", ".nii.gz"))
        extension = (".nii.gz" if filename.lower().endswith(".gz") else ".nii") if nifti else ".png"
        dest = self.output_dir / relative.parent / (_file_stem(filename) + extension)
        if dest in self._seen:
            raise DataError(f"two inputs map to the same output file {dest}; set relative_to to keep sub-folders")
        return dest

    def _write_png(self, dest: Path, labels: np.ndarray, meta: dict[str, Any]) -> None:
        if labels.ndim != 2:
            raise DataError(f"PNG masks must be 2-D; prediction for {dest.name} has spatial shape {labels.shape}")
        pixels = labels.T if self.reverse_indexing else labels
        if "width" in meta and "height" in meta and pixels.shape != (int(meta["height"]), int(meta["width"])):
            raise DataError(f"mask {dest.name} would be {pixels.shape[1]}x{pixels.shape[0]} (WxH) but the input is "
                            f"{meta['width']}x{meta['height']}; check reverse_indexing or invert resizing first")
        atomic_save(dest, lambda tmp: Image.fromarray(pixels.astype(np.uint8)).save(tmp, format="PNG"))

    def _write_nifti(self, dest: Path, labels: np.ndarray, meta: dict[str, Any]) -> None:
        affine = meta.get("affine", meta.get("original_affine"))
        if affine is None:
            raise DataError(f"cannot write {dest.name}: the input's meta has no 'affine'")
        affine = affine.cpu().numpy() if isinstance(affine, torch.Tensor) else np.asarray(affine)
        image = nib.Nifti1Image(labels.astype(np.uint8), affine.astype(np.float64))
        image.set_data_dtype(np.uint8)
        atomic_save(dest, lambda tmp: nib.save(image, tmp))

    def write(self, engine: Engine) -> None:
        """Write the masks of the current iteration's decollated items."""
        items = _decollated(engine, "SegmentationMaskWriter")
        for item, source in zip(items, batch_sources(engine, items), strict=True):
            filename = item_filename(item, source=source)
            dest = self._destination(filename)
            labels = labels_from_scores(item["pred"], len(self.class_names))
            meta = item_meta(item, "image", source)
            if dest.name.lower().endswith((".nii", ".nii.gz")):
                self._write_nifti(dest, labels, meta)
            else:
                self._write_png(dest, labels, meta)
            self.written.append(dest)
            self._seen.add(dest)
        logger.debug("wrote %d masks to %s", len(self.written), self.output_dir)
