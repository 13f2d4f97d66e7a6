"""Evaluate a received bundle on this site's data, beside the numbers it was shipped with.

``python -m common.sharing evaluate ARCHIVE_OR_DIR --dataset-dir DIR [--site site.json] [--output DIR]``:

1. verifies the bundle (:mod:`common.sharing.verify`; refused, status 1, when a check fails) and audits its
   configs (:mod:`common.sharing.audit`; refused when anything is flagged, unless ``--trust``);
2. copies it into ``<output>/<name>/`` (the received archive or folder is never written to);
3. applies the site's ``site.json`` (:mod:`common.sharing.site`: dataset folder, label mapping, plain settings)
   and the checkpoint card's training preprocessing and architecture, then runs the bundle's own
   ``train.json`` + ``evaluate.json`` through ``python -m monai.bundle run`` in a subprocess whose working
   directory and ``PYTHONPATH`` are the bundle copy (so its vendored ``scripts`` package is what runs);
4. writes ``<output>/site_comparison.json`` and ``<output>/site_report.md``: every metric the sender's
   provenance record (``docs/provenance.json``) and this site's ``eval/metrics.json`` both hold, side by side
   with the difference (site minus origin), so a shift between sites is visible at a glance.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common.errors import ConfigError
from common.io import atomic_write_json, atomic_write_text, make_directory
from common.sharing.errors import SharingError, VerificationError
from common.sharing.run import bundle_environment, check_runnable, monai_command
from common.sharing.site import SITE_FILE, load_site, remap_datalist, site_settings

__all__ = ["add_arguments", "compare_metrics", "evaluate_received", "flatten_metrics", "run"]

_MARKER = ".medxfer-site-evaluation"


def flatten_metrics(metrics: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a metrics mapping as ``{"a.b": value}``; lists of ``{"name": ...}`` rows go by name.

    Example:
        >>> flatten_metrics({"mean_auc": 0.8, "per_class": [{"name": "Mass", "auc": 0.7}]})
        {'mean_auc': 0.8, 'per_class.Mass.auc': 0.7}
    """
    out: dict[str, float] = {}
    if isinstance(metrics, dict):
        for key, value in metrics.items():
            out.update(flatten_metrics(value, f"{prefix}{key}."))
    elif isinstance(metrics, list) and metrics and all(isinstance(r, dict) and "name" in r for r in metrics):
        for row in metrics:
            out.update(flatten_metrics({k: v for k, v in row.items() if k != "name"}, f"{prefix}{row['name']}."))
    elif isinstance(metrics, (int, float)) and not isinstance(metrics, bool) and math.isfinite(metrics):
        out[prefix.rstrip(".")] = float(metrics)
    return out


def compare_metrics(origin: Any, site: Any) -> list[dict[str, Any]]:
    """Rows ``{"metric", "origin", "site", "difference"}`` for every metric both hold, in the site's order."""
    ours, theirs = flatten_metrics(site), flatten_metrics(origin)
    return [{"metric": key, "origin": theirs[key], "site": value, "difference": value - theirs[key]}
            for key, value in ours.items() if key in theirs]


def _origin_metrics(bundle: Path) -> Any:
    path = bundle / "docs" / "provenance.json"
    if not path.is_file():
        return {}
    provenance = json.loads(path.read_text(encoding="utf-8"))
    return provenance.get("metrics") or {}


def _prepare_copy(source: Path, output: Path) -> Path:
    """Copy the received bundle (archive or folder) into ``output/<name>``; a previous evaluation copy is replaced."""
    import shutil

    from common.sharing.safezip import safe_extract

    make_directory(output)
    with tempfile.TemporaryDirectory(prefix=".site-", dir=output) as tmp:
        if source.is_file():
            bundle = safe_extract(source, Path(tmp) / "unpacked")
        else:
            bundle = Path(shutil.copytree(source, Path(tmp) / source.name))
        target = output / bundle.name
        if target.exists():
            if not (target / _MARKER).is_file():
                raise SharingError(f"{target}: exists and was not written by an earlier evaluation; "
                                   "choose another --output")
            shutil.rmtree(target)
        (bundle / _MARKER).write_text("working copy written by python -m common.sharing evaluate\n")
        os.replace(bundle, target)
    return target


def _verified(source: Path, trusted_keys: Path | None, strict: bool) -> Any:
    """The verification report of ``source``; raises :class:`VerificationError` when a check fails."""
    from common.sharing.verify import verify_bundle

    report = verify_bundle(source, trusted_keys=trusted_keys, strict=strict)
    if not report.ok:
        raise VerificationError(f"{source}: verification failed: {report.failure_summary()}", report)
    return report


def _monai_run(bundle: Path, configs: list[str], overrides: dict[str, Any], log: Path) -> None:
    """Run ``configs`` of ``bundle`` with ``python -m monai.bundle run`` in a subprocess (the bundle root as working
    folder and first on ``PYTHONPATH``, as :mod:`common.sharing.run` starts it); the site's settings go in an
    args file beside the working copy, never into the bundle's own files."""
    args_file = log.with_name("site_args.json")
    atomic_write_json(args_file, {"config_file": [str(bundle / "configs" / c) for c in configs],
                                  "meta_file": str(bundle / "configs" / "metadata.json"),
                                  "logging_file": str(bundle / "configs" / "logging.conf"),
                                  "bundle_root": str(bundle), **overrides})
    with open(log, "w", encoding="utf-8") as out:
        done = subprocess.run(monai_command(["--args_file", str(args_file)]), cwd=bundle,
                              env=bundle_environment(bundle), stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise SharingError(f"evaluation of {bundle} failed (status {done.returncode}): {tail[0]} (log: {log})")


def evaluate_received(source: str | os.PathLike, dataset_dir: str | os.PathLike | None = None, *,
                      site_file: str | os.PathLike | None = None, output: str | os.PathLike = "site_evaluation",
                      trusted_keys: str | os.PathLike | None = None, strict: bool = False,
                      trust: bool = False) -> dict[str, Any]:
    """Verify, audit and evaluate the received bundle ``source`` on this site's test split.

    Returns:
        The comparison written to ``<output>/site_comparison.json``.

    Raises:
        VerificationError: verification failed, or the audit flagged something and ``trust`` is off.
        ConfigError: no dataset folder, or a bad site file.
        SharingError: the evaluation run failed (its log named).
    """
    from common.networks.checkpoint_card import read_card, trained_settings

    src, out = Path(source), Path(output)
    site = load_site(site_file)
    given = dataset_dir or site.get("dataset_dir")
    data_dir = Path(given) if given else None
    if data_dir is None or not data_dir.is_dir():
        raise ConfigError(f"dataset folder {data_dir or '(none given)'} not found; give --dataset-dir or "
                          f"dataset_dir in {SITE_FILE}")
    report = _verified(src, Path(trusted_keys) if trusted_keys else None, strict)
    bundle = _prepare_copy(src, out)
    check_runnable(bundle, trust=trust)  # the audit, logging files and code outside scripts/, as `run` refuses
    card = read_card(bundle / "models" / "model.pt") or {}
    overrides: dict[str, Any] = {**trained_settings(card), "dataset_dir": str(data_dir.resolve())}
    overrides.update(site_settings(bundle, site, str(site_file or SITE_FILE)))
    datalist = Path(site.get("datalist") or data_dir / "datalist.json")
    labels = None
    if site.get("labels"):
        if not card.get("class_names"):
            raise ConfigError(f"{site_file}: labels need the model's class names, and its checkpoint card has none")
        labels = remap_datalist(datalist, site, [str(c) for c in card["class_names"]], out / "site_datalist.json")
        datalist = out / "site_datalist.json"
    overrides["datalist"] = str(datalist.resolve())
    _monai_run(bundle, ["train.json", "evaluate.json"], overrides, out / "site_evaluation.log")
    site_metrics = json.loads((bundle / "eval" / "metrics.json").read_text(encoding="utf-8"))
    rows = compare_metrics(_origin_metrics(bundle), site_metrics)
    comparison = {"bundle": bundle.name, "source": str(src), "verification": report.to_json() if hasattr(
        report, "to_json") else None, "labels": labels, "settings": overrides, "rows": rows,
        "site_metrics": str(bundle / "eval" / "metrics.json")}
    atomic_write_json(out / "site_comparison.json", comparison)
    atomic_write_text(out / "site_report.md", _markdown(bundle.name, rows, labels))
    return comparison


def _fmt(value: float) -> str:
    return f"{value:+.3f}" if value else "0.000"


def _markdown(name: str, rows: list[dict[str, Any]], labels: dict[str, Any] | None) -> str:
    lines = [f"# {name}: this site vs. the sender's numbers", "",
             "| metric | sender | this site | difference |", "|---|---|---|---|"]
    lines += [f"| {r['metric']} | {r['origin']:.3f} | {r['site']:.3f} | {_fmt(r['difference'])} |" for r in rows]
    if not rows:
        lines.append("| (the sender's provenance holds no metric this evaluation reports) | | | |")
    if labels:
        lines += ["", f"Labels mapped: {labels['mapped']}; unknown at this site: {labels['unknown_at_site']}; "
                      f"site labels dropped: {labels['dropped']}."]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m common.sharing evaluate``."""
    parser.add_argument("source", type=Path, help="received archive (.zip) or bundle folder")
    parser.add_argument("--dataset-dir", type=Path, help=f"this site's dataset folder (or dataset_dir in {SITE_FILE})")
    parser.add_argument("--site", type=Path, help=f"site file (default: {SITE_FILE} beside the source, if present)")
    parser.add_argument("--output", type=Path, default=Path("site_evaluation"),
                        help="folder for the working copy and the report (default ./site_evaluation)")
    parser.add_argument("--trusted-keys", type=Path, help="folder of trusted public keys; the signature is checked")
    parser.add_argument("--strict", action="store_true", help="verification warnings fail (e.g. unsigned)")
    parser.add_argument("--trust", action="store_true", help="run even when the audit flags config entries")


def run(args: argparse.Namespace) -> int:
    """``evaluate``: verify, audit, evaluate, and print the side-by-side table."""
    site_file = args.site
    if site_file is None and (args.source.parent / SITE_FILE).is_file():
        site_file = args.source.parent / SITE_FILE
    evaluate_received(args.source, args.dataset_dir, site_file=site_file, output=args.output,
                      trusted_keys=args.trusted_keys, strict=args.strict, trust=args.trust)
    sys.stdout.write((args.output / "site_report.md").read_text(encoding="utf-8"))
    sys.stdout.write(f"wrote {args.output / 'site_comparison.json'} and {args.output / 'site_report.md'}\n")
    return 0
