"""Segmentation report: ``metrics.json``, ``report.md``, a confusion matrix and overlay pictures, as one atomic folder.

Every class keeps one colour in every picture (:func:`segmentation_palette`); the ignored label is black. Figures
are drawn on ``matplotlib.figure.Figure`` with an Agg canvas, never through pyplot.
"""

from __future__ import annotations

import colorsys
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.patches import Patch

from common.errors import DataError
from common.io import atomic_directory, atomic_write_json, atomic_write_text
from common.metrics.formatting import NA as _NA
from common.metrics.formatting import fmt as _fmt
from common.metrics.formatting import new_figure as _new_figure

__all__ = [
    "segmentation_palette",
    "colorize_labels",
    "format_segmentation_table",
    "plot_segmentation_confusion",
    "plot_segmentation_overlay",
    "write_segmentation_report",
]

logger = logging.getLogger(__name__)

Overlay = tuple[str, np.ndarray, np.ndarray, np.ndarray]
# Outside the annotated region the prediction is still drawn, darkened to this fraction of its colour.
_IGNORED_DIM = 0.35


def segmentation_palette(num_classes: int) -> np.ndarray:
    """RGB colours ``(K + 1, 3)`` uint8: row 0 black (ignored), row ``c`` the colour of label ``c``.

    Labels 1..10 take matplotlib's tab10, 11..20 the light half of tab20, later ones evenly spread hues, so a
    class keeps its colour whatever K is.

    Example:
        >>> segmentation_palette(2).tolist()
        [[0, 0, 0], [31, 119, 180], [255, 127, 14]]
    """
    tab10, tab20 = matplotlib.colormaps["tab10"].colors, matplotlib.colormaps["tab20"].colors
    colours = [(0.0, 0.0, 0.0), *tab10, *tab20[1::2]]
    for extra in range(max(0, num_classes + 1 - len(colours))):
        colours.append(colorsys.hsv_to_rgb((extra * 0.618034) % 1.0, 0.75, 0.9))
    return np.round(np.asarray(colours[: num_classes + 1]) * 255).astype(np.uint8)


def colorize_labels(labels: np.ndarray, palette: np.ndarray, ignore_index: int = 0) -> np.ndarray:
    """Map a label map ``(H, W)`` (``ignore_index`` or 1..K) to RGB ``(H, W, 3)`` uint8; ignored pixels black."""
    array = np.asarray(labels).astype(np.int64)
    shown = np.where(array == ignore_index, 0, array)
    if shown.min(initial=0) < 0 or shown.max(initial=0) >= len(palette):
        raise DataError(f"labels must be {ignore_index} (ignored) or 1..{len(palette) - 1}; found "
                        f"{int(shown.min())}..{int(shown.max())}")
    return palette[shown]


def _hd95_rule(metrics: dict[str, Any]) -> str:
    """One sentence saying how missed HD95 cases (class in only one of truth and prediction) were counted."""
    missed = metrics.get("hd95_missed_images", 0)
    if metrics.get("hd95_missed") == "diagonal":
        return (f"{missed} image-class cases with the class in only one of truth and prediction (MONAI: HD95 = inf) "
                "are scored as the image diagonal")
    return (f"{missed} image-class cases with the class in only one of truth and prediction (MONAI: HD95 = inf) "
            "are left out of the mean and counted in the *HD95 missed* column")


def format_segmentation_table(metrics: dict[str, Any]) -> str:
    """Markdown table of :func:`~common.metrics.compute_segmentation_metrics` output, one row per class, and the means.

    Example:
        >>> print(format_segmentation_table(metrics))  # doctest: +SKIP
    """
    lines = ["| Class | Label | Dice (pooled) | Dice (per-image mean) | IoU | HD95 (px) | HD95 missed | Truth pixels "
             "| Predicted pixels |",
             "|---|---|---|---|---|---|---|---|---|"]
    for e in metrics["per_class"]:
        name = e["name"].replace("|", "\\|")
        lines.append(f"| {name} | {e['label']} | {_fmt(e['dice'])} | {_fmt(e.get('dice_per_image'))} "
                     f"| {_fmt(e['iou'])} | {_fmt(e['hd95'], 2)} | {e.get('hd95_missed_images', 0)} "
                     f"| {e['support']} | {e['predicted']} |")
    n_defined = len(metrics["class_names"]) - len(metrics["undefined_classes"])
    lines += [
        "",
        f"- Mean Dice over {n_defined} classes, pixels pooled over all images: {_fmt(metrics['mean_dice'])}",
        f"- Mean Dice per image (MONAI DiceMetric, include_background=True, ignore_empty=True, reduction=\"mean\": "
        f"each image over the classes its truth holds, then over images): {_fmt(metrics.get('mean_dice_per_image'))}",
        f"- Mean IoU (pooled): {_fmt(metrics['mean_iou'])}",
        f"- Mean HD95 (pixels; hd95_missed=\"{metrics.get('hd95_missed', 'exclude')}\"): "
        f"{_fmt(metrics['mean_hd95'], 2)}; {_hd95_rule(metrics)}",
        f"- Pixel accuracy: {_fmt(metrics['pixel_accuracy'], 4)}",
        f"- Images: {metrics['n_images']}; counted pixels: {metrics['n_pixels']} "
        f"(label {metrics['ignore_index']} = not annotated, ignored)",
    ]
    if metrics["undefined_classes"]:
        lines.append("- Absent from truth and prediction (excluded from the means): "
                     + ", ".join(metrics["undefined_classes"]))
    return "\n".join(lines)


def plot_segmentation_confusion(metrics: dict[str, Any], path: str | os.PathLike, title: str = "Evaluation") -> None:
    """Draw the pixel confusion matrix normalised per truth row, each cell annotated in percent; save a PNG."""
    names = metrics["confusion_matrix"]["class_names"]
    counts = np.asarray(metrics["confusion_matrix"]["counts"], dtype=np.float64)
    support = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, support, out=np.full_like(counts, np.nan), where=support > 0)
    size = 2.5 + 0.7 * len(names)
    fig = _new_figure(size + 1.0, size)
    ax = fig.add_subplot()
    image = ax.imshow(np.nan_to_num(rates), cmap="Blues", vmin=0.0, vmax=1.0)
    for (row, col), rate in np.ndenumerate(rates):
        text = _NA if np.isnan(rate) else f"{100 * rate:.1f}%"
        ax.text(col, row, text, ha="center", va="center", fontsize="small",
                color="white" if rate > 0.5 else "black")
    ticks = list(range(len(names)))
    ax.set(xticks=ticks, yticks=ticks, xlabel="Predicted class", ylabel="True class")
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_yticklabels(names)
    fig.colorbar(image, ax=ax, label="fraction of the true class's pixels")
    ax.set_title(f"{title}: confusion matrix (rows normalised)")
    fig.savefig(path, dpi=120)


def _check_overlay(name: str, image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(f"overlay {name!r}: image must be uint8 (H, W, 3); found {image.dtype} {image.shape}")
    if truth.shape != image.shape[:2] or pred.shape != image.shape[:2]:
        raise DataError(f"overlay {name!r}: truth and prediction must be {image.shape[:2]} like the image; "
                        f"found {truth.shape} and {pred.shape}")


def plot_segmentation_overlay(
    image: np.ndarray,
    truth: np.ndarray,
    pred: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    title: str = "",
    ignore_index: int = 0,
) -> None:
    """Save image, truth and prediction side by side with a colour legend.

    Ignored truth pixels are black; the prediction is drawn everywhere but darkened outside the annotated region.
    """
    _check_overlay(title, image, truth, pred)
    palette = segmentation_palette(len(class_names))
    ignored = np.asarray(truth) == ignore_index
    shown_pred = colorize_labels(pred, palette, ignore_index).astype(np.float64)
    shown_pred[ignored] *= _IGNORED_DIM
    height, width = truth.shape
    fig = _new_figure(3 * 3.2, 3.2 * height / width + 1.0)
    panels = (("Image", image), ("Truth", colorize_labels(truth, palette, ignore_index)),
              ("Prediction", shown_pred.astype(np.uint8)))
    for ax, (label, picture) in zip(fig.subplots(1, 3), panels, strict=True):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(label)
        ax.set_axis_off()
    handles = [Patch(color=palette[c] / 255, label=name) for c, name in enumerate(class_names, start=1)]
    handles.append(Patch(color="black", label="not annotated (ignored)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize="small")
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)


def _overlay_file_names(names: Sequence[str]) -> list[str]:
    """Safe, unique PNG file names (``a b.png`` -> ``a_b.png``; a repeated name gets ``_2``, ``_3``...)."""
    seen: set[str] = set()
    files = []
    for name in names:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"
        candidate, n = stem, 1
        while candidate in seen:
            n += 1
            candidate = f"{stem}_{n}"
        seen.add(candidate)
        files.append(f"{candidate}.png")
    return files


def write_segmentation_report(
    metrics: dict[str, Any],
    output_dir: str | os.PathLike,
    overlays: Sequence[Overlay] = (),
    class_names: Sequence[str] | None = None,
    title: str = "Evaluation",
    plots: bool = True,
) -> Path:
    """Write ``metrics.json``, ``report.md``, ``confusion_matrix.png`` and ``overlays/<name>.png`` to ``output_dir``.

    Everything is written into a temporary sibling folder that replaces ``output_dir`` only once complete.

    Args:
        metrics: output of :func:`~common.metrics.compute_segmentation_metrics`.
        output_dir: report folder; replaced as a whole.
        overlays: ``(name, image_rgb uint8 (H, W, 3), truth (H, W), prediction (H, W))`` per picture.
        class_names: names of labels 1..K; must match the metrics (defaults to theirs).
        title: heading of the report and the figures.
        plots: draw the confusion matrix and the overlays. ``False`` (a federated round's report, where drawing
            them was the largest fixed cost) writes no PNG and no ``overlays/`` folder, and ``report.md`` names
            no picture; ``overlays`` are still checked; ``metrics.json`` is the same.

    Returns:
        ``output_dir`` as a Path.

    Raises:
        DataError: class names differ from the metrics', or an overlay's arrays do not fit together.

    Example:
        >>> write_segmentation_report(metrics, "eval/test", [("case1", rgb, truth, pred)])  # doctest: +SKIP
    """
    names = list(metrics["class_names"] if class_names is None else class_names)
    if names != metrics["class_names"]:
        raise DataError(f"class_names {names} differ from the metrics' {metrics['class_names']}")
    pictures = [(n, np.asarray(i), np.asarray(t), np.asarray(p)) for n, i, t, p in overlays]
    for picture in pictures:
        _check_overlay(*picture)
    files = _overlay_file_names([p[0] for p in pictures])
    drawn = list(zip(pictures, files, strict=True)) if plots else []
    markdown = [f"# {title}", "", format_segmentation_table(metrics), ""]
    if plots:
        markdown += ["![Confusion matrix](confusion_matrix.png)", ""]
    if drawn:
        markdown += ["## Examples (image, truth, prediction)", ""]
        markdown += [f"![{name}](overlays/{file})\n" for (name, *_), file in drawn]
    with atomic_directory(output_dir) as tmp:
        atomic_write_json(tmp / "metrics.json", metrics)
        atomic_write_text(tmp / "report.md", "\n".join(markdown))
        if plots:
            plot_segmentation_confusion(metrics, tmp / "confusion_matrix.png", title=title)
        if drawn:
            (tmp / "overlays").mkdir()
        for (name, image, truth, pred), file in drawn:
            plot_segmentation_overlay(image, truth, pred, names, tmp / "overlays" / file, name,
                                      metrics["ignore_index"])
    logger.info("wrote segmentation report (%d images, %d classes, %d overlays) to %s",
                metrics["n_images"], len(names), len(drawn), output_dir)
    return Path(output_dir)
