"""The MONAI model-zoo's bundle checks, offline: ``zoo_checks(bundle_dir, mode="full") -> ZooReport``.

Reproduces what Project-MONAI/model-zoo ``ci/verify_bundle.py`` checks (its ``-m min`` and ``-m full``), through
MONAI's own functions, and adds the workflow checks the zoo's per-bundle unit tests make, on the default config:

=============  ====  ==========================================================================================
check          mode  what
=============  ====  ==========================================================================================
files          min   ``configs/metadata.json`` and ``LICENSE`` exist; so do ``models/model.pt`` and
                     ``configs/inference.{json,yaml,yml}`` (the zoo raises on those too)
large_files    min   every entry of ``large_files.{yml,yaml,json}`` is already at its path, with its hash when
                     one is given (the zoo downloads them; nothing is downloaded here)
version        min   ``version`` and ``changelog`` present, the version in the changelog
metadata       min   ``verify_metadata`` against a local copy of the schema the metadata names
requirements   min   every ``required_packages_version`` entry installed here at that version, from a package
                     index (the zoo pip-installs them first: a package installed from a folder, like an
                     editable medxfer, is one a site cannot install)
workflows      full  ``create_workflow`` + ``check_properties`` for train (train.json), evaluate (train.json +
                     evaluate.json, workflow type "train" as the zoo's unit tests do) and inference
                     (inference.json), with the default config, so with no data
net_in_out     full  ``verify_net_in_out`` of ``network_def`` in the inference config
torchscript    full  ``ckpt_export`` of models/model.pt by scripting, or by tracing where metadata.json says
                     ``"torchscript_export": {"use_trace": true}``; the export is loaded back and must give
                     the network's output; a shipped ``models/model.ts`` must load
=============  ====  ==========================================================================================

Left out: the zoo's check that the version is new to its own ``model_info.json`` (``pack`` refuses a released
version instead), and its app-specific property files (``supported_apps``). Nothing is written into the bundle:
the checks run on a temporary copy of it (creating a workflow builds its handlers, and a TensorBoard handler opens
an event file under ``logs/`` at once; a received bundle must keep matching its manifest). The copy's root is put
first on ``sys.path`` while it is checked (as the zoo does), so a packed bundle's vendored ``scripts`` package is
the one imported; modules loaded from it are dropped afterwards, so several bundles can be checked in one process,
one after the other.

This file imports only the standard library, torch and MONAI, so a site can run it where medxfer is not
installed: ``python zoo.py BUNDLE [BUNDLE ...] [--mode min|full] [--schema FILE] [--json]``
(exit status 0 all passed, 1 a check failed, 2 a usage error).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigParser, ckpt_export, create_workflow, verify_metadata, verify_net_in_out

__all__ = ["MODES", "SCHEMA_DIR", "WORKFLOWS", "CheckResult", "ZooReport", "main", "zoo_checks"]

MODES = ("min", "full")
SCHEMA_DIR = Path(__file__).resolve().parent / "schema"
#: name -> (config files under configs/, MONAI workflow type)
WORKFLOWS = {"train": (["train.json"], "train"), "evaluate": (["train.json", "evaluate.json"], "train"),
             "inference": (["inference.json"], "infer")}
_CONFIG_SUFFIXES = ("json", "yaml", "yml")
_LOCAL_INSTALL = "installed from a folder, not a package index"


@dataclass
class CheckResult:
    """One check: its name, whether it passed, and a line saying what was found."""

    name: str
    ok: bool
    detail: str
    seconds: float = 0.0


@dataclass
class ZooReport:
    """Every check run on one bundle, in order."""

    bundle: str
    mode: str
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def failed(self) -> dict[str, str]:
        """``{check name: detail}`` of the checks that failed."""
        return {check.name: check.detail for check in self.checks if not check.ok}

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": self.bundle, "mode": self.mode, "ok": self.ok, "checks": [asdict(c) for c in self.checks]}

    def format_text(self) -> str:
        lines = [f"{self.bundle}: model-zoo checks ({self.mode}) {'passed' if self.ok else 'FAILED'}"]
        lines += [f"  {'ok  ' if c.ok else 'FAIL'} {c.name:<13} {c.detail} ({c.seconds:.1f} s)" for c in self.checks]
        return "\n".join(lines)


class _CheckFailed(Exception):
    """A check's finding (not a crash): its message is the report line."""


def _message(error: BaseException) -> str:
    """The innermost cause's message: MONAI wraps errors of config expressions in RuntimeError."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = " ".join(str(error).split())
    return text if isinstance(error, _CheckFailed) else f"{type(error).__name__}: {text}"


def _find_config(folder: Path, stem: str) -> Path | None:
    found = [folder / f"{stem}.{suffix}" for suffix in _CONFIG_SUFFIXES if (folder / f"{stem}.{suffix}").is_file()]
    return found[0] if found else None


def _metadata(bundle: Path) -> dict[str, Any]:
    file = bundle / "configs" / "metadata.json"
    if not file.is_file():
        raise _CheckFailed(f"{file} not found")
    return json.loads(file.read_text(encoding="utf-8"))


# -- min ------------------------------------------------------------------------------------------------------------
def check_files(bundle: Path) -> str:
    required = ("configs/metadata.json", "LICENSE", "models/model.pt")
    missing = [name for name in required if not (bundle / name).is_file()]
    if _find_config(bundle / "configs", "inference") is None:
        missing.append("configs/inference.json (or .yaml/.yml)")
    if missing:
        raise _CheckFailed(f"missing: {', '.join(missing)}")
    return "configs/metadata.json, LICENSE, models/model.pt and the inference config present"


def check_large_files(bundle: Path) -> str:
    listing = next((bundle / n for n in ("large_files.yml", "large_files.yaml", "large_files.json")
                    if (bundle / n).is_file()), None)
    if listing is None:
        return "no large_files.yml: nothing to fetch"
    entries = ConfigParser.load_config_file(str(listing)).get("large_files", [])
    problems = []
    for entry in entries:
        path = (bundle / entry["path"]).resolve()
        if not path.is_relative_to(bundle.resolve()):
            problems.append(f"{entry['path']}: outside the bundle")
        elif not path.is_file():
            problems.append(f"{entry['path']}: not here (the zoo downloads it from {entry.get('url')}; offline, "
                            "put the file there)")
        elif entry.get("hash_val"):
            digest = hashlib.new(entry.get("hash_type") or "md5", path.read_bytes()).hexdigest()
            if digest != entry["hash_val"]:
                problems.append(f"{entry['path']}: {entry.get('hash_type') or 'md5'} {digest}, listed "
                                f"{entry['hash_val']}")
    if problems:
        raise _CheckFailed(f"{listing.name}: " + "; ".join(problems))
    return f"{listing.name}: {len(entries)} file(s) present and matching"


def check_version(bundle: Path) -> str:
    metadata = _metadata(bundle)
    for key in ("version", "changelog"):
        if key not in metadata:
            raise _CheckFailed(f"configs/metadata.json has no {key!r}")
    if metadata["version"] not in metadata["changelog"]:
        raise _CheckFailed(f"version {metadata['version']} is not in the changelog "
                           f"({', '.join(metadata['changelog'])})")
    return f"version {metadata['version']} in the changelog"


def find_schema(bundle: Path, schema: str | os.PathLike | None = None) -> Path:
    """The schema file: ``schema`` when given, else the copy shipped beside this module named as the metadata's."""
    if schema is not None:
        return Path(schema)
    name = str(_metadata(bundle).get("schema", "")).rsplit("/", 1)[-1]
    candidate = SCHEMA_DIR / name
    if not name or not candidate.is_file():
        raise _CheckFailed(f"no local copy of the metadata schema {name or '(none named)'} in {SCHEMA_DIR}; pass "
                           "--schema FILE (nothing is downloaded)")
    return candidate


def check_metadata(bundle: Path, schema: Path) -> str:
    verify_metadata(meta_file=str(bundle / "configs" / "metadata.json"), filepath=str(schema))
    return f"valid against {schema.name}"


def _local_install(name: str) -> str | None:
    """Where ``name`` was installed from when that is a folder or file rather than a package index, else None."""
    for dist in importlib.metadata.distributions(name=name):
        direct = dist.read_text("direct_url.json")
        if direct:
            info = json.loads(direct)
            if "dir_info" in info or str(info.get("url", "")).startswith("file:"):
                return str(info.get("url"))
    return None


def check_requirements(bundle: Path) -> str:
    declared = _metadata(bundle).get("required_packages_version", {}) or {}
    problems = []
    for name, version in declared.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{name}=={version} not installed")
            continue
        if installed != version:
            problems.append(f"{name}=={version} declared, {installed} installed")
        origin = _local_install(name)
        if origin is not None:
            problems.append(f"{name} is {_LOCAL_INSTALL} ({origin}): a site cannot pip install {name}=={version}")
    if problems:
        raise _CheckFailed("; ".join(problems))
    return f"{len(declared)} package(s) installed at the declared versions: {', '.join(declared) or 'none'}"


# -- full -----------------------------------------------------------------------------------------------------------
def check_workflows(bundle: Path, overrides: Mapping[str, Any]) -> str:
    configs, problems, done = bundle / "configs", [], []
    for name, (files, workflow_type) in WORKFLOWS.items():
        if not all((configs / f).is_file() for f in files):
            continue  # the zoo requires only the inference config (check_files)
        try:
            workflow = create_workflow(workflow_type=workflow_type, config_file=[str(configs / f) for f in files],
                                       meta_file=str(configs / "metadata.json"),
                                       logging_file=str(configs / "logging.conf"), bundle_root=str(bundle),
                                       **overrides)
            missing = workflow.check_properties()
        except Exception as err:  # noqa: BLE001 - any failure to parse is this check's finding
            problems.append(f"{name}: {_message(err)}")
            continue
        if missing:
            problems.append(f"{name}: missing or wrong properties {missing}")
        else:
            done.append(name)
    if problems:
        raise _CheckFailed("; ".join(problems))
    return f"{', '.join(done)} created with the default config and have every required property"


def check_net_in_out(bundle: Path, device: str | None, overrides: Mapping[str, Any]) -> str:
    config = _find_config(bundle / "configs", "inference")
    verify_net_in_out(net_id="network_def", meta_file=str(bundle / "configs" / "metadata.json"),
                      config_file=str(config), bundle_root=str(bundle), device=device, **overrides)
    return "network_def input and output shapes match network_data_format"


def _export_options(bundle: Path) -> dict[str, Any]:
    declared = _metadata(bundle).get("torchscript_export", {}) or {}
    unknown = sorted(set(declared) - {"use_trace", "input_shape", "reason"})
    if unknown:
        raise _CheckFailed(f"metadata torchscript_export has unknown keys {unknown}; expected use_trace, "
                           "input_shape, reason")
    return {k: declared[k] for k in ("use_trace", "input_shape") if k in declared}


def _fake_input(parser: ConfigParser, options: Mapping[str, Any]) -> torch.Tensor | None:
    if options.get("input_shape"):
        return torch.rand(*options["input_shape"])
    image = parser.get_parsed_content("_meta_#network_data_format#inputs#image")
    shape = [image.get("num_channels", 1), *image.get("spatial_shape", [])]
    return torch.rand(1, *shape) if all(isinstance(s, int) for s in shape) else None


def check_torchscript(bundle: Path, overrides: Mapping[str, Any]) -> str:
    configs, options = bundle / "configs", _export_options(bundle)
    config = _find_config(configs, "inference")
    with tempfile.TemporaryDirectory(prefix="zoo_export_") as folder:
        exported = Path(folder) / "verify_model.ts"
        ckpt_export(net_id="network_def", filepath=str(exported), ckpt_file=str(bundle / "models" / "model.pt"),
                    meta_file=str(configs / "metadata.json"), config_file=str(config), bundle_root=str(bundle),
                    **options, **overrides)
        module = torch.jit.load(str(exported), map_location="cpu")
    parser = ConfigParser()
    parser.read_config(str(config))
    parser.read_meta(str(configs / "metadata.json"))
    parser.update({"bundle_root": str(bundle), **overrides})
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True))
    how = "traced" if options.get("use_trace") else "scripted"
    sample = _fake_input(parser, options)
    if sample is not None:
        with torch.no_grad():
            expected, got = network.eval()(sample), module.eval()(sample)
        if not torch.allclose(expected, got, rtol=1e-4, atol=1e-5):
            raise _CheckFailed(f"the {how} module's output differs from the network's by up to "
                               f"{(expected - got).abs().max().item():.3g}")
    shipped = bundle / "models" / "model.ts"
    if shipped.is_file():
        torch.jit.load(str(shipped), map_location="cpu")
    compared = f"same output on {list(sample.shape)}" if sample is not None else "output not compared"
    return f"{how} from models/model.pt and loaded back, {compared}" + ("; models/model.ts loads" if shipped.is_file()
                                                                        else "")


# -- running --------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _bundle_on_path(bundle: Path) -> Iterator[None]:
    """Bundle root first on ``sys.path`` (the zoo does this); modules imported from the bundle dropped afterwards."""
    root, before = str(bundle), set(sys.modules)
    sys.path.insert(0, root)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(root)
        for name in set(sys.modules) - before:
            file = getattr(sys.modules[name], "__file__", None) or ""
            if file and Path(file).resolve().is_relative_to(bundle.resolve()):
                del sys.modules[name]


@contextlib.contextmanager
def _kept_global_state() -> Iterator[None]:
    """Undo what creating the workflows does to the process: seeds (the train ``initialize`` calls
    ``set_determinism``), cuDNN flags and the root logger (``logging.conf`` is applied with ``fileConfig``)."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()  # noqa: NPY002 (the one seeded)
    cudnn = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])  # noqa: NPY002
        torch.set_rng_state(states[2])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        root.handlers[:] = handlers
        root.setLevel(level)


def _run(report: ZooReport, name: str, check: Callable[[], str]) -> None:
    start = time.perf_counter()
    try:
        ok, detail = True, check()
    except Exception as err:  # noqa: BLE001 - a failed check is reported, the next one still runs
        ok, detail = False, _message(err)
    report.checks.append(CheckResult(name, ok, detail, round(time.perf_counter() - start, 2)))


def zoo_checks(bundle_dir: str | os.PathLike, mode: str = "full", *, schema: str | os.PathLike | None = None,
               device: str | None = None, overrides: Mapping[str, Any] | None = None) -> ZooReport:
    """Run the model-zoo checks of ``mode`` on the bundle folder ``bundle_dir``; every check runs and is reported.

    Args:
        bundle_dir: an unpacked bundle (``configs/``, ``LICENSE``, ``models/model.pt`` ...).
        mode: ``"min"`` (files, large files, version, metadata schema, requirements) or ``"full"`` (those, then the
            workflows, ``verify_net_in_out`` and the TorchScript export).
        schema: the metadata schema file; default: the copy in ``common/sharing/schema/`` named like the one
            ``metadata.json`` links to.
        device: where ``verify_net_in_out`` runs the network; default: MONAI's (a GPU when there is one).
        overrides: config ids set in every parsed config (``{"pretrained": "none"}`` on a machine without the
            ImageNet weights the default train config loads); none by default, as in the zoo.

    Returns:
        A :class:`ZooReport`; ``report.ok`` says whether every check passed, ``report.failed()`` what did not.

    Raises:
        ValueError: an unknown ``mode`` or a ``bundle_dir`` that is not a folder.

    Example:
        >>> report = zoo_checks("received/chest_xray_classification", "full")  # doctest: +SKIP
        >>> report.ok, report.failed()  # doctest: +SKIP
        (True, {})
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from: {', '.join(MODES)}")
    bundle = Path(bundle_dir).resolve()
    if not bundle.is_dir():
        raise ValueError(f"{bundle_dir}: not a bundle folder")
    extra = dict(overrides or {})
    report = ZooReport(str(bundle), mode)
    with tempfile.TemporaryDirectory(prefix="zoo_checks_") as tmp:
        work = Path(shutil.copytree(bundle, Path(tmp) / bundle.name, symlinks=True))
        _run_checks(report, work, mode, schema, device, extra)
    return report


def _run_checks(report: ZooReport, bundle: Path, mode: str, schema: str | os.PathLike | None, device: str | None,
                extra: Mapping[str, Any]) -> None:
    with _bundle_on_path(bundle), _kept_global_state(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns on every config parsed (GHSA-873f-pvrv-4x83); audit covers it
        _run(report, "files", lambda: check_files(bundle))
        _run(report, "large_files", lambda: check_large_files(bundle))
        _run(report, "version", lambda: check_version(bundle))
        _run(report, "metadata", lambda: check_metadata(bundle, find_schema(bundle, schema)))
        _run(report, "requirements", lambda: check_requirements(bundle))
        if mode == "full":
            _run(report, "workflows", lambda: check_workflows(bundle, extra))
            _run(report, "net_in_out", lambda: check_net_in_out(bundle, device, extra))
            _run(report, "torchscript", lambda: check_torchscript(bundle, extra))


def _override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main(argv: list[str] | None = None) -> int:
    """``python zoo.py BUNDLE ... [--mode full] [--schema FILE] [--device cpu] [--override KEY=VALUE] [--json]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     epilog="exit status: 0 all checks passed, 1 a check failed, 2 usage error")
    parser.add_argument("bundles", nargs="+", type=Path, help="unpacked bundle folder(s)")
    parser.add_argument("--mode", "-m", choices=MODES, default="full")
    parser.add_argument("--schema", type=Path, help=f"metadata schema file (default: the copy in {SCHEMA_DIR})")
    parser.add_argument("--device", help="device for verify_net_in_out (default: MONAI's choice)")
    parser.add_argument("--override", type=_override, action="append", default=[], metavar="KEY=VALUE",
                        help="config id set in every parsed config (JSON value), e.g. pretrained=none")
    parser.add_argument("--json", action="store_true", help="print the reports as one JSON list")
    args = parser.parse_args(argv)
    missing = [str(b) for b in args.bundles if not b.is_dir()]
    if missing:
        sys.stderr.write(f"error: not a bundle folder: {', '.join(missing)}\n")
        return 2
    reports = [zoo_checks(b, args.mode, schema=args.schema, device=args.device, overrides=dict(args.override))
               for b in args.bundles]
    sys.stdout.write((json.dumps([r.to_dict() for r in reports], indent=2) if args.json
                      else "\n".join(r.format_text() for r in reports)) + "\n")
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
