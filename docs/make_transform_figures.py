"""Draw the before/after pictures of docs/transforms.md into docs/images/.

Inputs are real images that ship with installed packages, so the script runs offline: the pydicom-data
chest radiograph RG1_UNCI.dcm (CR, 15-bit, MONOCHROME1), scikit-image's retina (fundus) and
immunohistochemistry (histology) photographs, plus a synthetic MLO mammogram with burned-in text drawn
here with OpenCV (no real mammogram ships with a package). Random transforms use ``prob=1`` and a fixed
seed; where a default effect is too faint to see at this size the figure says which parameters it used.

Usage:
    python docs/make_transform_figures.py [--output-dir docs/images] [--panel 180] [--seed 0]
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    LoadImaged,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianSharpend,
    RandGaussianSmoothd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandSpatialCropd,
    RandZoomd,
    Resize,
)
from PIL import Image, ImageDraw, ImageFont
from pydicom.data import get_testdata_file
from skimage import data as skdata

from common.synthetic.mammo_render import MammoFinding, render_mammogram
from common.transforms import (
    CLAHE,
    ArtifactMask,
    AspectResize,
    DicomIntensityd,
    ForegroundCrop,
    LoadRadiograph,
    ToImageNetInput,
)

__all__ = ["main", "synthetic_mammogram"]

logger = logging.getLogger("make_transform_figures")

Panel = tuple[str, np.ndarray]
_TITLE_HEIGHT, _GAP = 30, 4


def _display(image: np.ndarray | torch.Tensor, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """``(C, H, W)`` or ``(H, W)`` image -> uint8 ``(H, W)`` grey or ``(H, W, 3)`` RGB, ``[low, high]`` -> 0..255."""
    array = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image, dtype=np.float32)
    array = array[0] if array.ndim == 3 and array.shape[0] == 1 else array
    array = np.moveaxis(array, 0, -1) if array.ndim == 3 else array
    return np.rint(np.clip((array - low) / (high - low), 0.0, 1.0) * 255).astype(np.uint8)


def _wrap(title: str, width: int, draw: ImageDraw.ImageDraw, font: ImageFont.FreeTypeFont) -> str:
    """``title`` broken into lines that fit ``width`` pixels (at most two are shown)."""
    lines = [""]
    for word in title.split():
        candidate = f"{lines[-1]} {word}".strip()
        if lines[-1] and draw.textlength(candidate, font=font) > width - 4:
            lines.append(word)
        else:
            lines[-1] = candidate
    return "\n".join(lines[:2])


def _figure(panels: Sequence[Panel], height: int) -> Image.Image:
    """Panels side by side, each scaled to ``height`` px with its title above; grey unless a panel is RGB."""
    font = ImageFont.load_default(size=12)
    rgb = any(image.ndim == 3 for _, image in panels)
    scaled = []
    for title, image in panels:
        width = max(1, round(image.shape[1] * height / image.shape[0]))
        tile = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        scaled.append((title, np.repeat(tile[..., None], 3, axis=2) if rgb and tile.ndim == 2 else tile))
    total = sum(tile.shape[1] for _, tile in scaled) + _GAP * (len(scaled) - 1)
    canvas = Image.new("RGB" if rgb else "L", (total, height + _TITLE_HEIGHT), "white")
    draw, x = ImageDraw.Draw(canvas), 0
    for title, tile in scaled:
        canvas.paste(Image.fromarray(tile), (x, _TITLE_HEIGHT))
        draw.multiline_text((x + 2, 1), _wrap(title, tile.shape[1], draw, font), fill="black", font=font, spacing=1)
        x += tile.shape[1] + _GAP
    return canvas


def _save(figure: Image.Image, path: Path) -> None:
    """Write a small PNG: grey posterised to 64 levels, colour reduced to a 128-colour palette."""
    small = figure.point(lambda v: (v // 4) * 4 + 2) if figure.mode == "L" else figure.quantize(128)
    small.save(path, optimize=True)
    logger.info("wrote %s (%d x %d px, %.0f KB)", path, *figure.size, path.stat().st_size / 1024)


def _outline(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """RGB copy of a grey uint8 ``image`` with the outline of ``mask`` drawn in red."""
    rgb = np.repeat(image[..., None], 3, axis=2)
    contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return cv2.drawContours(rgb, contours, -1, (255, 0, 0), thickness=3)


def _windowing_figure(out: Path, path: str, loaded: torch.Tensor, height: int) -> None:
    """Stored values vs LoadRadiograph vs LoadImaged(PydicomReader) + DicomIntensityd with a narrower window."""
    raw = Compose([LoadImaged("image", reader="PydicomReader", prune_metadata=False, swap_ij=False),
                   EnsureChannelFirstd("image")])({"image": path})["image"]
    narrow = DicomIntensityd("image", window=(11000, 18000))({"image": raw})["image"]
    stored = _display(raw, float(raw.min()), float(raw.max()))
    _save(_figure([("stored values (min-max)", stored), ("LoadRadiograph", _display(loaded)),
                   ("DicomIntensityd 11000/18000", _display(narrow))], height), out / "loader_windowing.png")


def _chest_figures(out: Path, height: int) -> np.ndarray:
    """Loader/windowing, CLAHE and artifact mask on RG1_UNCI; returns the cropped chest at 224 px."""
    path = get_testdata_file("RG1_UNCI.dcm")
    loaded = LoadRadiograph()(path)  # (1, 1955, 1841) float in [0, 1]
    _windowing_figure(out, path, loaded, height)
    small = AspectResize(448)(loaded)  # work at a display-like size; the transforms are size-agnostic
    clahe = CLAHE(clip_limit=2.0, tile_grid_size=8, bit_depth=8)(small)
    _save(_figure([("LoadRadiograph", _display(small)), ("CLAHE clip 2, 8x8 tiles", _display(clahe))], height),
          out / "clahe_chest.png")
    result = ArtifactMask().compute(small)
    outline = _outline(_display(small), _display(result.mask))
    _save(_figure([("mask outline (red)", outline), ("ArtifactMask output", _display(result.image))], height),
          out / "artifact_mask_chest.png")
    cropped = ForegroundCrop(margin=0.02)(small, mask=result.mask)
    return np.asarray(AspectResize(224)(cropped))


def _augmentations(seed: int) -> list[tuple[str, list[tuple[str, Any]]]]:
    """(file stem, [(title, transform), ...]) per augmentation; ``prob=1`` so every figure shows an effect.

    Rotation, translation and zoom use degenerate ranges (low == high) so the title states the exact amount.
    """
    deg15 = float(np.deg2rad(15.0))
    intensity = Compose([RandScaleIntensityd("image", factors=0.2, prob=1.0),
                         RandShiftIntensityd("image", offsets=0.1, prob=1.0)])
    return [
        ("aug_crop", [("RandSpatialCropd 160x160", RandSpatialCropd("image", roi_size=(160, 160)))]),
        ("aug_flip", [("RandFlipd spatial_axis 1", RandFlipd("image", prob=1.0, spatial_axis=1))]),
        ("aug_rotate", [("RandAffined rotate 15 deg, zeros padding",
                         RandAffined("image", prob=1.0, rotate_range=[(deg15, deg15)], padding_mode="zeros"))]),
        ("aug_translate", [("RandAffined translate 22 px (10%) per axis", RandAffined(
            "image", prob=1.0, translate_range=[(22.4, 22.4), (-22.4, -22.4)], padding_mode="zeros"))]),
        ("aug_stretch", [("RandZoomd H x0.85, W x1.2", RandZoomd(
            "image", prob=1.0, min_zoom=(0.85, 1.2), max_zoom=(0.85, 1.2), keep_size=True, padding_mode="constant"))]),
        ("aug_blur", [("RandGaussianSmoothd sigma 1.5-2",
                       RandGaussianSmoothd("image", prob=1.0, sigma_x=(1.5, 2.0), sigma_y=(1.5, 2.0)))]),
        ("aug_sharpen", [("RandGaussianSharpend defaults (alpha 10-30)", RandGaussianSharpend("image", prob=1.0)),
                         ("alpha 1-3", RandGaussianSharpend("image", prob=1.0, alpha=(1.0, 3.0)))]),
        ("aug_contrast", [("RandAdjustContrastd gamma 0.7-1.5",
                           RandAdjustContrastd("image", prob=1.0, gamma=(0.7, 1.5)))]),
        ("aug_intensity", [("RandScaleIntensityd 0.2 + RandShiftIntensityd 0.1", intensity)]),
    ]


def _augmentation_figures(out: Path, chest: np.ndarray, height: int, seed: int) -> None:
    """One before/after picture per MONAI augmentation on the 224 px chest."""
    before = _display(chest)
    for stem, variants in _augmentations(seed):
        panels = [("before", before)]
        for title, transform in variants:
            transform.set_random_state(seed)
            panels.append((title, _display(transform({"image": torch.from_numpy(chest.copy())})["image"])))
        _save(_figure(panels, height), out / f"{stem}.png")


def _colour_figures(out: Path, height: int) -> None:
    """CLAHE per channel vs on luminance (retina) and ToImageNetInput channels (histology)."""
    fundus = cv2.resize(skdata.retina(), (320, 320), interpolation=cv2.INTER_AREA)
    rgb = np.moveaxis(fundus, -1, 0).astype(np.float32) / 255.0
    panels = [("retina (scikit-image)", fundus)]
    for mode in ("per_channel", "luminance"):
        panels.append((f"CLAHE {mode}", _display(CLAHE(2.0, 8, 8, channel_mode=mode)(rgb))))
    _save(_figure(panels, height), out / "clahe_retina.png")
    tissue = cv2.resize(skdata.immunohistochemistry(), (256, 256), interpolation=cv2.INTER_AREA)
    normalised = ToImageNetInput()(np.moveaxis(tissue, -1, 0).astype(np.float32) / 255.0)
    panels = [("histology RGB", tissue)]
    for index, name in enumerate("RGB"):
        panels.append((f"{name}: -2.5..2.5 shown", _display(normalised[index], -2.5, 2.5)))
    _save(_figure(panels, height - 20), out / "imagenet_input.png")


def synthetic_mammogram(height: int = 400, seed: int = 0) -> np.ndarray:
    """A right MLO mammogram from the project's generator (burned-in text, marker, pectoral muscle, a
    malignant mass), ``(1, H, W)`` float32 in [0, 1]."""
    pixels, _ = render_mammogram([MammoFinding("mass", True)], "R", "MLO", np.random.default_rng(seed), height)
    return (pixels.astype(np.float32) / 65535.0)[None]


def _mammogram_figures(out: Path, chest: np.ndarray, height: int, seed: int) -> None:
    """Artifact mask + laterality flip + pectoral removal; AspectResize vs Resize on the (tall) breast crop."""
    image = synthetic_mammogram(seed=seed)
    masker = ArtifactMask(mode="mammography", threshold_method="triangle")
    masked = masker.compute(image)
    pectoral = ArtifactMask(mode="mammography", threshold_method="triangle", remove_pectoral=True)
    removed = pectoral.compute(image, view="MLO")
    _save(_figure([("synthetic R MLO with burned-in text", _display(image)),
                   (f"masked, flipped={masked.flipped} (side from {masked.laterality_source})",
                    _display(masked.image)),
                   ("remove_pectoral=True, view MLO", _display(removed.image))], height),
          out / "artifact_mask_mammo.png")
    crop = ForegroundCrop()(masked.image, mask=masked.mask)
    _save(_figure([("chest: crop + AspectResize 224", _display(chest)),
                   (f"breast crop {crop.shape[2]}x{crop.shape[1]} (W x H)", _display(crop)),
                   ("AspectResize 224 (pad shown grey)", _display(AspectResize(224, pad_value=0.3)(crop))),
                   ("plain Resize 224x224 (stretched)", _display(Resize((224, 224), mode="area")(crop)))], height),
          out / "aspect_resize.png")


def main(argv: Sequence[str] | None = None) -> int:
    """Write every figure; returns 0. Run ``python docs/make_transform_figures.py --help`` for options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).resolve().parent / "images",
                        help="folder for the PNGs (default: docs/images next to this script)")
    parser.add_argument("--panel", type=int, default=180, help="panel height in pixels (default: 180)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random transforms and the phantom")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    chest = _chest_figures(args.output_dir, args.panel)
    _augmentation_figures(args.output_dir, chest, args.panel, args.seed)
    _colour_figures(args.output_dir, args.panel)
    _mammogram_figures(args.output_dir, chest, args.panel, args.seed)
    total = sum(path.stat().st_size for path in args.output_dir.glob("*.png"))
    logger.info("total %.0f KB in %s", total / 1024, args.output_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
