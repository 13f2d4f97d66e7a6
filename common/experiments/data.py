"""Data of a grid's tasks: prepared folders as given, or embedded synthetic datasets generated once per run folder."""

from __future__ import annotations

import logging
from pathlib import Path

from common.errors import ConfigError
from common.experiments.specs import DataSpec
from common.io import atomic_directory, recover_directory
from common.networks.checkpoint_card import fingerprint

__all__ = ["EMBEDDED_LAYOUTS", "SITES_LAYOUT", "data_location", "embedded_layouts", "prepare_data", "site_locations"]

logger = logging.getLogger(__name__)

#: Embedded layouts every checkout has: the first native public layouts plus the stage-2 multi-source set; the
#: full list (class folders, MedMNIST ... as registered in ``common.synthetic.embedded``) is :func:`embedded_layouts`.
EMBEDDED_LAYOUTS = ("chestxray14", "cbis-ddsm", "bcss", "general_medical")
#: The embedded layout of several synthetic hospitals (:func:`common.synthetic.sites.generate_sites`): one folder per
#: site, each with its own ``datalist.json``, and ``sites.json`` (the manifest) once all are written.
SITES_LAYOUT = "sites"


def embedded_layouts() -> tuple[str, ...]:
    """Embedded layouts a grid may name: every ``EMBEDDED_DATASETS`` entry of :mod:`common.synthetic.embedded`
    (imported here, on first use: it pulls in the generators) plus ``general_medical`` and ``sites``."""
    from common.synthetic.embedded import EMBEDDED_DATASETS

    return tuple(dict.fromkeys([*EMBEDDED_DATASETS, "general_medical", SITES_LAYOUT]))


def _generate(layout: str, root: Path, spec: DataSpec) -> None:
    if layout == "general_medical":
        from common.synthetic.general_medical import make_general_medical_dataset

        make_general_medical_dataset(root, **spec.generate, **spec.split)
    elif layout == SITES_LAYOUT:
        from common.synthetic.sites import generate_sites

        generate_sites(root, **spec.generate, **spec.split)
    else:
        from common.synthetic import make_embedded_dataset

        make_embedded_dataset(layout, root, spec.generate, spec.split)


def data_location(spec: DataSpec, data_root: Path) -> tuple[Path, Path]:
    """``(dataset_dir, datalist)`` of ``spec`` without generating anything (see :func:`prepare_data`).

    For ``embedded: sites`` the second path is the manifest ``sites.json`` (each site has its own datalist: see
    :func:`site_locations`).

    Raises:
        ConfigError: ``spec`` lists its sites one by one (each has its own location).
    """
    if spec.sites:
        raise ConfigError("a federation's data has one location per site: use site_locations")
    if spec.embedded is None:
        if spec.dataset_dir is None or spec.datalist is None:  # parse_grid guarantees both
            raise ConfigError("a data entry needs dataset_dir (and datalist) or embedded")
        return spec.dataset_dir, spec.datalist
    folder = data_root / f"{spec.embedded}-{fingerprint({'generate': spec.generate, 'split': spec.split})[:8]}"
    return folder, folder / ("sites.json" if spec.embedded == SITES_LAYOUT else "datalist.json")


def site_locations(spec: DataSpec, data_root: Path, names: tuple[str, ...]) -> dict[str, tuple[Path, Path]]:
    """``{site: (dataset_dir, datalist)}`` of a federation's data (sites one by one, or ``embedded: sites``).

    Example:
        >>> site_locations(DataSpec(embedded="sites"), Path("/run/data"), ("site-1",))["site-1"][1].name
        'datalist.json'
    """
    if spec.sites:
        return {name: data_location(spec.sites[name], data_root) for name in names}
    folder, _ = data_location(spec, data_root)
    return {name: (folder / name, folder / name / "datalist.json") for name in names}


def prepare_data(spec: DataSpec, data_root: Path) -> tuple[Path, Path]:
    """Return ``(dataset_dir, datalist)`` for ``spec``, generating an embedded dataset under ``data_root``.

    An embedded dataset is written to ``data_root/<layout>-<settings hash>`` through a temporary folder,
    so an interrupted generation leaves nothing half-written; a finished one is reused by later runs. A federation's
    sites given one by one are each prepared; the return value is then ``(data_root, data_root)``.
    """
    if spec.sites:
        for site in spec.sites.values():
            prepare_data(site, data_root)
        return data_root, data_root
    folder, datalist = data_location(spec, data_root)
    if spec.embedded is not None:
        recover_directory(folder)  # a generation killed between the swap's two renames
    if spec.embedded is not None and not datalist.is_file():
        logger.info("generating the embedded %s dataset in %s", spec.embedded, folder)
        with atomic_directory(folder) as tmp:
            _generate(spec.embedded, tmp, spec)
    return folder, datalist
