"""Synthetic BCSS dataset: H&E-like RGB tiles with detailed-code masks, in the native BCSS layout.

:func:`generate_bcss` writes ``rgbs_colorNormalized/`` and ``masks/`` PNGs with matching TCGA-style names
(``TCGA-A2-B3C4-DX1_xmin12345_ymin23456_MPP-0.2500.png``) and ``meta/gtruth_codes.tsv``, so the real adapter
(:mod:`common.data.bcss`) and the segmentation bundles run unchanged on it. :func:`render_tile` paints each
tissue with its own colour and texture, so the classes are learnable from pixels:

- stroma (2): pink eosin with oriented fibres and sparse elongated nuclei (the background tissue);
- tumour nests (1): large irregular purple blobs crowded with big dark nuclei;
- inflammatory: clusters of dense small dark nuclei, lymphocytes (3) or plasma cells (10, larger, eccentric);
- necrosis (4): pale pink-grey blotchy debris with small dark fragments;
- other: fat (9, white with thin-walled round vacuoles) and blood (6, red with round cells);
- exclude (7): green marker-ink patches; outside_roi (0): tissue outside a polygonal ROI at the border.

Sizes scale with ``tile_size`` (a nucleus radius is a fixed fraction of the tile), so a small tile is a
down-sampled large one. Only the ``numpy.random.Generator`` passed in is used.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from common.data.bcss import BCSS_GTRUTH_CODES, CODES_FILE, MASK_FOLDER
from common.errors import ConfigError, DataError
from common.io import atomic_directory, atomic_write_text

__all__ = ["TISSUE_COLOURS", "MIN_TILE_SIZE", "render_tile", "generate_bcss"]

logger = logging.getLogger(__name__)

MIN_TILE_SIZE = 32
# RGB of each tissue's background and its nuclei (colour-normalised H&E look).
TISSUE_COLOURS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "stroma": ((234, 158, 190), (120, 66, 150)),
    "tumor": ((186, 118, 196), (78, 40, 122)),
    "inflammatory": ((196, 140, 196), (42, 24, 88)),
    "necrosis": ((214, 196, 208), (110, 84, 136)),
    "fat": ((248, 244, 246), (226, 160, 192)),
    "blood": ((196, 44, 66), (226, 70, 88)),
    "ink": ((70, 150, 100), (40, 110, 70)),
}
_CODE = {name: BCSS_GTRUTH_CODES[name] for name in
         ("outside_roi", "tumor", "stroma", "lymphocytic_infiltrate", "necrosis_or_debris", "blood", "exclude",
          "fat", "plasma_cells")}  # fmt: skip
# Tissue source sites of TCGA-BRCA, for realistic barcodes.
_SITES = ("A1", "A2", "A7", "A8", "AN", "AO", "AR", "B6", "BH", "C8", "D8", "E2", "E9", "EW", "GM", "OL", "S3")
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-blurred noise of shape (size, size)."""
    field = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), max(sigma, 0.3))
    return (field - field.mean()) / (float(field.std()) + 1e-6)  # a Python float: the same bits under NumPy 1 and 2


def _fibres(rng: np.random.Generator, size: int) -> np.ndarray:
    """Oriented streaks: white noise smeared along one random direction (collagen fibres)."""
    length = max(3, size // 10) | 1
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    rotation = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (length, length))
    field = cv2.filter2D(rng.standard_normal((size, size)).astype(np.float32), -1, kernel / kernel.sum())
    return (field - field.mean()) / (float(field.std()) + 1e-6)  # a Python float: the same bits under NumPy 1 and 2


def _blob(rng: np.random.Generator, size: int, radius: float, irregularity: float = 0.35) -> np.ndarray:
    """A smooth irregular region (bool) around a random centre: a noisy star polygon, blurred and re-cut."""
    centre = rng.uniform(0.1, 0.9, 2) * size
    angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(8, 15))))
    radii = radius * (1 + irregularity * rng.uniform(-1, 1, angles.size))
    points = centre + np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    canvas = np.zeros((size, size), np.float32)
    cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 1.0)
    smooth = cv2.GaussianBlur(canvas, (0, 0), max(radius * 0.2, 0.5)) + 0.15 * _noise(rng, size, radius * 0.15)
    return smooth > 0.5


def _nuclei(
    rng: np.random.Generator, region: np.ndarray, cover: float, radius: float, elongation: float = 1.0
) -> np.ndarray:
    """Stain layer in [0, 1]: filled ellipses inside ``region`` covering about ``cover`` of it."""
    layer = np.zeros(region.shape, np.float32)
    where = np.argwhere(region)
    major, minor = max(1, round(radius * elongation)), max(1, round(radius))
    # Randomly placed nuclei overlap: n of area a cover 1 - exp(-n a / A) of the region's area A.
    count = int(-np.log1p(-cover) * where.shape[0] / (np.pi * major * minor)) if where.size else 0
    direction = rng.uniform(0, 180)  # nuclei of one region share a direction (fibres, streaming cells)
    for y, x in where[rng.integers(0, where.shape[0], count)] if count else []:
        angle = direction + rng.normal(0, 15) if elongation > 1 else rng.uniform(0, 180)
        axes = (max(1, round(major * rng.uniform(0.8, 1.2))), max(1, round(minor * rng.uniform(0.8, 1.2))))
        cv2.ellipse(layer, (int(x), int(y)), axes, angle, 0, 360, float(rng.uniform(0.75, 1.0)), -1)
    return layer * region


def _paint(rgb: np.ndarray, region: np.ndarray, colour: tuple[int, ...], texture: np.ndarray, amount: float) -> None:
    """Fill ``region`` of ``rgb`` (float, in place) with ``colour`` modulated by ``texture`` (+- ``amount``)."""
    shaded = np.asarray(colour, np.float32) + amount * texture[..., None]
    rgb[region] = shaded[region]


def _stain(rgb: np.ndarray, layer: np.ndarray, colour: tuple[int, ...]) -> None:
    """Blend nuclei (``layer`` in [0, 1]) of ``colour`` into ``rgb`` in place."""
    alpha = layer[..., None]
    rgb[:] = rgb * (1 - alpha) + np.asarray(colour, np.float32) * alpha


def _roi_outside(rng: np.random.Generator, size: int) -> np.ndarray:
    """Pixels outside a random quadrilateral ROI (annotators drew polygons inside the exported rectangle)."""
    if rng.random() < 0.2:
        return np.zeros((size, size), bool)
    inset = rng.uniform(0, 0.15, (4, 2)) * size
    corners = np.array([[0, 0], [size - 1, 0], [size - 1, size - 1], [0, size - 1]], np.float32)
    corners += inset * np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], np.float32)
    inside = np.zeros((size, size), np.uint8)
    cv2.fillPoly(inside, [np.round(corners).astype(np.int32)], 1)
    return inside == 0


def _add_region(rgb: np.ndarray, codes: np.ndarray, region: np.ndarray, code: int, tissue: str,
                texture: np.ndarray, amount: float) -> None:  # fmt: skip
    _paint(rgb, region, TISSUE_COLOURS[tissue][0], texture, amount)
    codes[region] = code


def _check_tile_size(tile_size: int) -> None:
    if isinstance(tile_size, bool) or not isinstance(tile_size, int | np.integer) or tile_size < MIN_TILE_SIZE:
        raise ConfigError(f"tile_size must be an integer >= {MIN_TILE_SIZE}, got {tile_size!r}")


def render_tile(rng: np.random.Generator, tile_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Render one H&E-like ROI and its mask of detailed BCSS codes.

    Every tile holds stroma, one or two tumour nests and one or two inflammatory clusters; necrosis, fat,
    blood, marker ink (``exclude``) and a polygonal ROI border (``outside_roi``) appear at random.

    Args:
        rng: the only source of randomness.
        tile_size: height and width in pixels, at least :data:`MIN_TILE_SIZE`.

    Returns:
        ``(rgb, codes)``: ``(H, W, 3)`` uint8 RGB and ``(H, W)`` uint8 codes from
        :data:`~common.data.bcss.BCSS_GTRUTH_CODES`.

    Raises:
        ConfigError: ``tile_size`` below :data:`MIN_TILE_SIZE`.

    Example:
        >>> rgb, codes = render_tile(np.random.default_rng(0), 64)
        >>> rgb.shape, codes.shape, bool((codes == 1).any() and (codes == 2).any())
        ((64, 64, 3), (64, 64), True)
    """
    _check_tile_size(tile_size)
    n = tile_size
    rgb = np.zeros((n, n, 3), np.float32)
    codes = np.full((n, n), _CODE["stroma"], np.uint8)
    _add_region(rgb, codes, np.ones((n, n), bool), _CODE["stroma"], "stroma", _fibres(rng, n), 14.0)
    stain = _nuclei(rng, codes == _CODE["stroma"], 0.04, n / 90, elongation=3.0)
    _stain(rgb, stain, TISSUE_COLOURS["stroma"][1])
    extras = [("necrosis", 0.7), ("fat", 0.5), ("blood", 0.4)]
    for tissue, chance in extras:
        if rng.random() < chance:
            _draw_other(rng, rgb, codes, tissue, _blob(rng, n, n * rng.uniform(0.12, 0.2)))
    for _ in range(int(rng.integers(1, 3))):
        nest = _blob(rng, n, n * rng.uniform(0.18, 0.3), irregularity=0.45)
        _add_region(rgb, codes, nest, _CODE["tumor"], "tumor", _noise(rng, n, n / 60), 8.0)
        _stain(rgb, _nuclei(rng, nest, 0.45, n / 45, elongation=1.2), TISSUE_COLOURS["tumor"][1])
    for _ in range(int(rng.integers(1, 3))):
        _draw_inflammatory(rng, rgb, codes, _blob(rng, n, n * rng.uniform(0.08, 0.15)))
    if rng.random() < 0.3:
        ink = _blob(rng, n, n * rng.uniform(0.05, 0.1))
        rgb[ink] = 0.35 * rgb[ink] + 0.65 * np.asarray(TISSUE_COLOURS["ink"][0], np.float32)
        codes[ink] = _CODE["exclude"]
    codes[_roi_outside(rng, n)] = _CODE["outside_roi"]
    rgb = cv2.GaussianBlur(rgb, (0, 0), 0.6) + rng.normal(0, 4, rgb.shape).astype(np.float32)
    rgb *= rng.uniform(0.96, 1.04, 3).astype(np.float32)  # residual stain variation after normalisation
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8), codes


def _draw_other(rng: np.random.Generator, rgb: np.ndarray, codes: np.ndarray, tissue: str, region: np.ndarray) -> None:
    """Necrosis (blotchy, with debris), fat (white vacuoles with thin walls) or blood (red cells)."""
    n = codes.shape[0]
    code = {"necrosis": _CODE["necrosis_or_debris"], "fat": _CODE["fat"], "blood": _CODE["blood"]}[tissue]
    texture = _noise(rng, n, n / 25) if tissue == "necrosis" else _noise(rng, n, 1.0)
    _add_region(rgb, codes, region, code, tissue, texture, 12.0 if tissue == "necrosis" else 3.0)
    edge = TISSUE_COLOURS[tissue][1]
    if tissue == "necrosis":
        _stain(rgb, _nuclei(rng, region, 0.08, n / 110), edge)  # karyorrhectic fragments
        return
    walls = np.zeros((n, n), np.float32)
    radius = n / 18 if tissue == "fat" else n / 70
    where = np.argwhere(region)
    count = int(where.shape[0] / radius**2) + 1 if where.size else 0
    for y, x in where[rng.integers(0, where.shape[0], count)] if count else []:
        r = max(1, round(radius * rng.uniform(0.7, 1.3)))
        cv2.circle(walls, (int(x), int(y)), r, 0.8, 1 if tissue == "fat" else -1)
    _stain(rgb, (walls * region) * (1.0 if tissue == "fat" else 0.5), edge)


def _draw_inflammatory(rng: np.random.Generator, rgb: np.ndarray, codes: np.ndarray, region: np.ndarray) -> None:
    """Lymphocytes (small round dense nuclei) or plasma cells (larger cells, more cytoplasm)."""
    n = codes.shape[0]
    plasma = rng.random() < 0.3
    code = _CODE["plasma_cells"] if plasma else _CODE["lymphocytic_infiltrate"]
    _add_region(rgb, codes, region, code, "inflammatory", _noise(rng, n, 1.0), 6.0)
    cover, radius = (0.6, n / 70) if plasma else (0.75, n / 100)  # plasma cells: larger, more cytoplasm
    _stain(rgb, _nuclei(rng, region, cover, radius), TISSUE_COLOURS["inflammatory"][1])


def _patients(rng: np.random.Generator, n_patients: int) -> list[str]:
    found: dict[str, None] = {}
    while len(found) < n_patients:
        participant = "".join(rng.choice(list(_ALNUM), 4))
        found.setdefault(f"TCGA-{rng.choice(_SITES)}-{participant}", None)
    return list(found)


def generate_bcss(
    output_dir: str | os.PathLike, n_patients: int = 6, tiles_per_patient: int = 2, tile_size: int = 256, seed: int = 0
) -> Path:
    """Write a synthetic BCSS dataset: ``rgbs_colorNormalized/``, ``masks/`` and ``meta/gtruth_codes.tsv``.

    Args:
        output_dir: destination folder (created); existing image and mask folders are replaced whole.
        n_patients: number of TCGA patients (at least 1); each gets its own barcode.
        tiles_per_patient: ROIs per patient (from one slide, ``-DX1``, at different offsets).
        tile_size: ROI height and width in pixels (>= :data:`MIN_TILE_SIZE`).
        seed: seed of barcodes, offsets and pixels; a tile depends only on (seed, patient, tile).

    Returns:
        ``output_dir`` as a Path.

    Raises:
        ConfigError: fewer than one patient or tile, or a too small ``tile_size``.

    Example:
        >>> root = generate_bcss("/tmp/bcss", n_patients=4, tile_size=64)  # doctest: +SKIP
        >>> sorted(p.name for p in root.iterdir())  # doctest: +SKIP
        ['masks', 'meta', 'rgbs_colorNormalized']
    """
    if n_patients < 1 or tiles_per_patient < 1:
        raise ConfigError(f"need n_patients >= 1 and tiles_per_patient >= 1, got {n_patients}, {tiles_per_patient}")
    _check_tile_size(tile_size)
    root, rng = Path(output_dir), np.random.default_rng(seed)
    with atomic_directory(root / "rgbs_colorNormalized") as images, atomic_directory(root / MASK_FOLDER) as masks:
        for p_index, patient in enumerate(_patients(rng, n_patients)):
            for t_index in range(tiles_per_patient):
                xmin, ymin = (int(v) for v in rng.integers(5000, 120000, 2))
                name = f"{patient}-DX1_xmin{xmin}_ymin{ymin}_MPP-0.2500.png"
                rgb, codes = render_tile(np.random.default_rng([seed, p_index, t_index]), tile_size)
                for path, pixels in ((images / name, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)), (masks / name, codes)):
                    if not cv2.imwrite(str(path), pixels):
                        raise DataError(f"could not write {path}")
    table = "".join(f"{label}\t{code}\n" for label, code in BCSS_GTRUTH_CODES.items())
    atomic_write_text(root / CODES_FILE, "label\tGT_code\n" + table)
    logger.info("synthetic BCSS: %d ROIs of %d patients in %s", n_patients * tiles_per_patient, n_patients, root)
    return root
