"""Embedded datasets: synthetic data written in a public dataset's native layout, then read back by that
dataset's real adapter. The demo, the benchmarks and the bundle tests all make their data this way."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from common.data.bcss import load_bcss_datalist
from common.data.cbis_ddsm import load_cbis_ddsm_datalist
from common.data.chestxray14 import load_chestxray14_datalist
from common.data.class_folders import load_class_folders_datalist
from common.data.medmnist import load_medmnist_folder
from common.errors import ConfigError
from common.io import atomic_write_json
from common.synthetic.brain_mri import generate_brain_mri
from common.synthetic.cxr import generate_chestxray14
from common.synthetic.dermoscopy import generate_dermoscopy
from common.synthetic.endoscopy import generate_endoscopy
from common.synthetic.histology import generate_bcss
from common.synthetic.mammo import generate_cbis_ddsm
from common.synthetic.medmnist import generate_medmnist, generate_pathmnist

__all__ = ["EMBEDDED_DATASETS", "make_embedded_dataset"]

#: layout name -> (generator writing the native layout, adapter turning it into a datalist)
EMBEDDED_DATASETS: dict[str, tuple[Callable[..., Path], Callable[..., dict]]] = {
    "chestxray14": (generate_chestxray14, load_chestxray14_datalist),
    "cbis-ddsm": (generate_cbis_ddsm, load_cbis_ddsm_datalist),
    "bcss": (generate_bcss, load_bcss_datalist),
    "dermoscopy": (generate_dermoscopy, load_class_folders_datalist),
    "endoscopy": (generate_endoscopy, load_class_folders_datalist),
    "brain-mri": (generate_brain_mri, load_class_folders_datalist),
    "pathmnist": (generate_pathmnist, load_medmnist_folder),  # split {"flag": ...} not needed: the only npz
    "medmnist": (generate_medmnist, load_medmnist_folder),  # generate {"flag": "dermamnist", "size": 64}
}


def make_embedded_dataset(
    layout: str,
    root: str | os.PathLike,
    generate: Mapping[str, Any] | None = None,
    split: Mapping[str, Any] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Generate ``layout`` into ``root``, build its datalist with the real adapter, write ``root/datalist.json``.

    Args:
        layout: a key of :data:`EMBEDDED_DATASETS`: ``"chestxray14"``, ``"cbis-ddsm"``, ``"bcss"``, and the
            single-label class-folder sets ``"dermoscopy"``, ``"endoscopy"``, ``"brain-mri"``, and the MedMNIST npz
            sets ``"pathmnist"`` and ``"medmnist"`` (generate ``{"flag": "dermamnist", "size": 28}``).
        root: dataset folder to write.
        generate: keyword arguments of the generator (``n_patients``, ``image_size`` / ``tile_size``, ``seed`` ...).
        split: keyword arguments of the adapter (``val_fraction``, ``seed`` ...).

    Returns:
        The datalist (as written).

    Example:
        >>> make_embedded_dataset("chestxray14", "/tmp/cxr", {"n_patients": 20})  # doctest: +SKIP
    """
    if layout not in EMBEDDED_DATASETS:
        raise ConfigError(f"unknown embedded dataset {layout!r}; choose from: {', '.join(EMBEDDED_DATASETS)}")
    generator, adapter = EMBEDDED_DATASETS[layout]
    generator(root, **(generate or {}))
    datalist = adapter(root, **(split or {}))
    atomic_write_json(Path(root) / "datalist.json", datalist)
    return datalist
