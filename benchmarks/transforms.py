"""Transform speed: our OpenCV-backed CLAHE versus scikit-image ``equalize_adapthist`` on a 16-bit radiograph.

The image is the real RG1_UNCI chest radiograph (pydicom-data) resized to ``--size`` squared and scaled to
uint16. Both run in one process, alternating the order each repeat, with matched settings: the same tile
grid (skimage ``kernel_size = size / tiles``) and clip limit (skimage ``clip_limit = ours / 256``, since
skimage clips at a fraction of the tile pixels per bin with 256 bins; see common/transforms/clahe.py).
They are comparable, not identical algorithms: ours equalises 16-bit input with 65536 bins, skimage
quantises it to ``nbins`` bins. Reports medians and the speed-up. Target: ours >= 10x faster.

    python benchmarks/transforms.py --size 2048 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from pydicom.data import get_testdata_file
from skimage.exposure import equalize_adapthist

from common.transforms import read_radiograph
from common.transforms.clahe import CLAHE

__all__ = ["main", "synthesise_radiograph_uint16"]


def synthesise_radiograph_uint16(size: int) -> np.ndarray:
    """RG1_UNCI chest radiograph resized to ``(size, size)`` and scaled to the full uint16 range.

    Example:
        >>> synthesise_radiograph_uint16(64).dtype  # doctest: +SKIP
        dtype('uint16')
    """
    image, _ = read_radiograph(get_testdata_file("RG1_UNCI.dcm"))
    interpolation = cv2.INTER_AREA if size <= min(image.shape) else cv2.INTER_CUBIC
    resized = np.clip(cv2.resize(image, (size, size), interpolation=interpolation), 0.0, 1.0)
    return np.rint(resized * 65535).astype(np.uint16)


def _seconds(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Time both implementations side by side and print medians and the speed-up."""
    cli = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cli.add_argument("--size", type=int, default=2048, help="image side in pixels (default 2048)")
    cli.add_argument("--repeats", type=int, default=5, help="timed runs of each implementation (median reported)")
    cli.add_argument("--clip-limit", type=float, default=2.0, help="our clip limit, OpenCV units (default 2.0)")
    cli.add_argument("--tiles", type=int, default=8, help="tile grid per side (default 8)")
    cli.add_argument("--nbins", type=int, default=256, help="scikit-image histogram bins (default 256)")
    cli.add_argument("--cv2-threads", type=int, default=None, help="cv2.setNumThreads (default: OpenCV's choice)")
    args = cli.parse_args(argv)
    if args.cv2_threads is not None:
        cv2.setNumThreads(args.cv2_threads)
    image = synthesise_radiograph_uint16(args.size)
    clahe = CLAHE(clip_limit=args.clip_limit, tile_grid_size=args.tiles)
    kernel = args.size // args.tiles

    def ours() -> Any:
        return clahe(image[None])

    def reference() -> Any:
        return equalize_adapthist(image, kernel_size=kernel, clip_limit=args.clip_limit / 256, nbins=args.nbins)

    ours(), reference()  # warm-up: imports, allocator, OpenCV thread pool
    times: dict[Callable[[], Any], list[float]] = {ours: [], reference: []}
    for repeat in range(args.repeats):
        for fn in (ours, reference) if repeat % 2 == 0 else (reference, ours):
            times[fn].append(_seconds(fn))
    t_ours, t_ref = statistics.median(times[ours]), statistics.median(times[reference])
    runs_ours, runs_ref = ([round(t * 1000, 1) for t in times[fn]] for fn in (ours, reference))
    sys.stdout.write(
        f"CLAHE on {args.size}x{args.size} uint16 (RG1_UNCI), {args.tiles}x{args.tiles} tiles, clip "
        f"{args.clip_limit:g} (skimage {args.clip_limit / 256:.4g}, nbins {args.nbins}), {args.repeats} repeats, "
        f"cv2 threads {cv2.getNumThreads()}\n"
        f"medxfer CLAHE (OpenCV)       : {t_ours * 1000:8.1f} ms  runs {runs_ours}\n"
        f"skimage equalize_adapthist   : {t_ref * 1000:8.1f} ms  runs {runs_ref}\n"
        f"speed-up                     : {t_ref / t_ours:8.1f}x (target >= 10x)\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
