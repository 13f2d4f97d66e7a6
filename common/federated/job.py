"""Build the NVFlare job of a federated bundle run: FedAvg recipe, MonaiAlgo client script, one config per site.

The job carries the client script and the first global model only. Each site runs the copy of medxfer and of the
bundle installed (and reviewed) there; its datalist comes from its per-site config. Arguments reach the script split
on whitespace (NVFlare's ScriptRunner), so paths and values with spaces are refused here, not mangled there.

Example:
    >>> spec = FederationSpec(bundle="bundles/chest_xray_classification", sites={"site-1": "/d1/datalist.json",
    ...                       "site-2": "/d2/datalist.json"}, rounds=2, local_epochs=1)  # doctest: +SKIP
    >>> with contextlib.chdir("/tmp/fl"):  # holding initial_model.pt  # doctest: +SKIP
    ...     recipe = build_recipe(spec, "/tmp/fl")
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import ConfigError

__all__ = ["CLIENT_SCRIPT", "INITIAL_MODEL", "TASK_REQUEST_INTERVAL", "FederationSpec", "build_recipe", "parse_sites",
           "site_arguments", "validate_job_folder"]

#: the client script every site runs (it only calls common.federated.site.run_site)
CLIENT_SCRIPT = Path(__file__).with_name("client_script.py")
#: the first global model's file name in the staging folder and in the job's server app
INITIAL_MODEL = "initial_model.pt"
#: NVFlare's default is 2 s: a site that sent its result sleeps that long before asking for the next task, and
#: again after each "try again" while the server waits for the slower site; that idled ~1-2 s of every round
#: (measured, 64 px simulator rounds of ~10 s). 0.5 s keeps it small at a few requests per second per site.
TASK_REQUEST_INTERVAL = 0.5
_SITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass
class FederationSpec:
    """One federated run: the bundle, each site's datalist, rounds, local epochs, strategy, overrides.

    ``dataset_dirs`` defaults to each datalist's folder; ``overrides`` are top-level bundle settings every site
    applies (``image_size``, ``pretrained`` ...); ``workdir`` holds the site folders (simulation).
    """

    bundle: str
    sites: dict[str, str]
    rounds: int = 2
    local_epochs: int = 1
    strategy: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    dataset_dirs: dict[str, str] = field(default_factory=dict)
    workdir: str = "federated_output"
    name: str = "medxfer_fedavg"
    #: the validation metric the server selects the best global model by; None = the bundle's own key metric
    key_metric: str | None = None
    #: seconds a site waits before asking the server again for a task (NVFlare's ``task_request_interval``)
    task_request_interval: float = TASK_REQUEST_INTERVAL

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.local_epochs < 1:
            raise ConfigError(f"rounds and local epochs must be >= 1, got rounds={self.rounds}, "
                              f"local_epochs={self.local_epochs}")
        if not 0 < self.task_request_interval <= 60:
            raise ConfigError(f"task_request_interval must be in (0, 60] seconds, got {self.task_request_interval}")
        if len(self.sites) < 1:
            raise ConfigError("a federation needs at least one site (--sites site-1=DATALIST,...)")
        for site in self.sites:
            if not _SITE_NAME.match(site) or site == "server":
                raise ConfigError(f"site name {site!r} must be letters, digits, '-' or '_' and not 'server'")
        # absolute from here on: the job is built inside its staging folder (contextlib.chdir)
        self.bundle = str(Path(self.bundle).resolve())
        self.strategy = str(Path(self.strategy).resolve()) if self.strategy else None
        self.sites = {site: str(Path(path).resolve()) for site, path in self.sites.items()}
        self.dataset_dirs = {site: str(Path(path).resolve()) for site, path in self.dataset_dirs.items()}
        self.workdir = str(Path(self.workdir).resolve())


def parse_sites(text: str) -> dict[str, str]:
    """``"site-1=a.json,site-2=b.json"`` -> ``{"site-1": "a.json", "site-2": "b.json"}``.

    Example:
        >>> parse_sites("site-1=/d/1.json,site-2=/d/2.json")
        {'site-1': '/d/1.json', 'site-2': '/d/2.json'}
    """
    sites: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, datalist = item.partition("=")
        if not sep or not name or not datalist:
            raise ConfigError(f"--sites expects NAME=DATALIST[,NAME=DATALIST...], got {item!r}")
        if name in sites:
            raise ConfigError(f"site {name!r} is named twice in --sites")
        sites[name] = datalist
    if not sites:
        raise ConfigError("--sites names no site; expected NAME=DATALIST[,NAME=DATALIST...]")
    return sites


def _no_space(what: str, value: str) -> str:
    if re.search(r"\s", value):
        raise ConfigError(f"{what} {value!r} contains whitespace; NVFlare splits script arguments on whitespace, "
                          "so move it to a path without spaces")
    return value


def site_arguments(spec: FederationSpec, site: str) -> str:
    """The client script's argument string for ``site`` (see :func:`common.federated.site.parse_site_args`)."""
    datalist = Path(spec.sites[site]).resolve()
    dataset_dir = Path(spec.dataset_dirs.get(site) or datalist.parent).resolve()
    site_dir = (Path(spec.workdir) / "sites" / site).resolve()
    args = ["--bundle", str(Path(spec.bundle).resolve()), "--datalist", str(datalist), "--dataset-dir",
            str(dataset_dir), "--site-dir", str(site_dir), "--local-epochs", str(spec.local_epochs)]
    if spec.strategy:
        args += ["--strategy", str(Path(spec.strategy).resolve())]
    for key, value in sorted(spec.overrides.items()):
        args += ["--set", f"{key}={json.dumps(value, separators=(',', ':'))}"]
    return " ".join(_no_space("script argument", arg) for arg in args)


def build_recipe(spec: FederationSpec, staging: str | Path) -> Any:
    """NVFlare's PyTorch FedAvg recipe for ``spec``, starting from ``staging/initial_model.pt`` (a state dict).

    ``staging`` also receives a copy of the client script. The script and the initial model are named relative to
    it, so NVFlare packs both into the job (``custom/``) instead of pointing at this machine's paths: build, export
    and run the recipe inside ``contextlib.chdir(staging)``. Sites send weight differences (MonaiAlgo
    ``send_weight_diff``) weighted by their local iteration count; the server keeps the global model with the best
    mean ``key_metric`` (local validation, never test). The server asks idle sites to come back after
    ``spec.task_request_interval`` seconds (:data:`TASK_REQUEST_INTERVAL`).
    """
    from nvflare.app_opt.pt.recipes.fedavg import FedAvgRecipe
    from nvflare.recipe.utils import set_per_site_config

    staging = Path(staging).resolve()
    if not (staging / INITIAL_MODEL).is_file():
        raise ConfigError(f"{staging / INITIAL_MODEL} is missing (common.federated.model.write_initial_model)")
    shutil.copyfile(CLIENT_SCRIPT, staging / CLIENT_SCRIPT.name)
    if Path.cwd().resolve() != staging:
        raise ConfigError(f"build the recipe inside contextlib.chdir({staging}): the job names files relative to it")

    from common.federated.model import bundle_key_metric

    overrides = {k: v for k, v in spec.overrides.items() if k in ("arch", "class_names", "num_classes")}
    recipe = FedAvgRecipe(
        name=spec.name,
        model={"path": "common.federated.model.bundle_network",
               "args": {"bundle": str(Path(spec.bundle).resolve()), "overrides": overrides}},
        initial_ckpt=INITIAL_MODEL,
        min_clients=len(spec.sites),
        num_rounds=spec.rounds,
        train_script=CLIENT_SCRIPT.name,
        key_metric=spec.key_metric or bundle_key_metric(spec.bundle),
        key_metric_mode="max",
    )
    recipe.add_server_config({"server": {"task_request_interval": spec.task_request_interval}})
    set_per_site_config(recipe, {site: {"train_args": site_arguments(spec, site)} for site in spec.sites})
    return recipe


def validate_job_folder(job_dir: str | Path) -> dict[str, Any]:
    """Validate an exported job folder as NVFlare does before running it (its JobMetaValidator); the job meta.

    Raises:
        ConfigError: the folder is missing or NVFlare rejects it (its message included).

    Example:
        >>> validate_job_folder("export/medxfer_fedavg")["deploy_map"]  # doctest: +SKIP
    """
    from nvflare.apis.utils.job_utils import convert_legacy_zipped_app_to_job
    from nvflare.fuel.utils.zip_utils import zip_directory_to_bytes
    from nvflare.private.fed.server.job_meta_validator import JobMetaValidator

    folder = Path(job_dir).resolve()
    if not (folder / "meta.json").is_file():
        raise ConfigError(f"{folder} is not an NVFlare job folder: meta.json is missing")
    data = convert_legacy_zipped_app_to_job(zip_directory_to_bytes(str(folder.parent), folder.name))
    valid, error, meta = JobMetaValidator().validate(folder.name, data)
    if not valid:
        raise ConfigError(f"NVFlare rejects the job folder {folder}: {error}")
    return meta
