"""What runs at one site of a federation: the bundle under MonaiAlgo, driven by NVFlare's Client API.

Per round the site (1) loads the received global weights (plain arrays, never unpickled objects), (2) evaluates
them on its own test split with the bundle's evaluation config and keeps that report locally under
``<site dir>/rounds/round_<r>/``, (3) trains ``local_epochs`` epochs, numbering the epochs by global round so
epoch-driven strategies (LP-FT, gradual unfreezing) switch on the federation's schedule, and (4) sends back the
weight differences and scalar metrics only (:func:`outgoing_payload` refuses anything else).

Example:
    >>> run_site(["--bundle", "bundles/chest_xray_classification", "--datalist", "/data/site-1/datalist.json",
    ...           "--dataset-dir", "/data/site-1", "--local-epochs", "1", "--site-dir", "/work/fl/site-1"])
    ... # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.errors import ConfigError
from common.io import atomic_directory, atomic_write_json, make_directory, recover_directory

__all__ = ["FL_EVAL_OVERLAY", "FL_TRAIN_OVERLAY", "ROUND_REPORT_OVERRIDES", "build_algo", "evaluate_weights",
           "keep_report", "outgoing_payload", "parse_site_args", "run_site", "to_tensors", "train_round",
           "weights_digest"]

logger = logging.getLogger(__name__)

FL_TRAIN_OVERLAY = "configs/fl_train.json"
FL_EVAL_OVERLAY = "configs/fl_evaluate.json"
#: what the per-round evaluation changes in the bundle's evaluation config: no bootstrap intervals and no PNG plots
#: (ROC, confusion matrices, segmentation overlays: 1.5-3.4 s a round, the largest fixed cost), read by
#: ``configs/fl_evaluate.json`` as ``report_plots``; the final global model's report (:func:`evaluate_weights`)
#: keeps the bundle's ``n_boot`` and its plots. The metrics themselves are the same.
ROUND_REPORT_OVERRIDES: dict[str, Any] = {"n_boot": 0, "report_plots": False}
#: report keys that hold a bundle's headline test metric (multi-label, single-label, segmentation)
_REPORT_KEY_METRICS = ("mean_auc", "macro_auc", "mean_dice")
#: metric values a site may send: scalars only (no arrays that could carry per-image predictions)
_SCALAR_TYPES = (int, float, np.integer, np.floating)


def parse_site_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The client script's arguments (NVFlare passes them split on whitespace, so no value may contain spaces)."""
    parser = argparse.ArgumentParser(description="medxfer federated site: the bundle under MonaiAlgo")
    parser.add_argument("--bundle", required=True, help="the bundle folder installed at this site")
    parser.add_argument("--datalist", required=True, help="this site's datalist JSON")
    parser.add_argument("--dataset-dir", required=True, help="this site's dataset folder")
    parser.add_argument("--site-dir", required=True, help="where this site writes checkpoints and reports")
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--strategy", default=None, help="a fine-tuning overlay (configs/finetune/*.json)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="override a top-level bundle setting, e.g. image_size=64 (repeatable)")
    return parser.parse_args(argv)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=JSON, got {item!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    site_dir = Path(args.site_dir).resolve()
    overrides.update({
        "dataset_dir": str(Path(args.dataset_dir).resolve()),
        "datalist": str(Path(args.datalist).resolve()),
        "ckpt_dir": str(site_dir / "models"),
        "output_dir": str(site_dir / "eval"),
        "log_dir": str(site_dir / "logs"),
    })
    return overrides


def build_algo(args: argparse.Namespace, train: bool = True) -> Any:
    """MonaiAlgo on the site's bundle: train.json + fl_train.json (+ strategy), evaluate.json + fl_evaluate.json.

    ``train=True`` builds the per-round site: its evaluation of each received global model applies
    :data:`ROUND_REPORT_OVERRIDES` (no bootstrap intervals, no plots: fixed costs every round). ``train=False``
    builds the evaluation side only, with the bundle's own settings (the final global model's full report).

    The bundle's ``logging.conf`` is never applied (MonaiAlgo's default ``logging_file=False``; a test checks it).
    """
    from monai.fl.client import MonaiAlgo

    bundle = Path(args.bundle).resolve()
    for overlay in (FL_TRAIN_OVERLAY, FL_EVAL_OVERLAY):
        if not (bundle / overlay).is_file():
            raise ConfigError(f"bundle {bundle} has no {overlay}: it is not prepared for federated training")
    train_files: list[str] | None = ["configs/train.json", FL_TRAIN_OVERLAY] if train else None
    if train_files is not None and args.strategy:
        train_files.append(str(Path(args.strategy).resolve()))
    overrides = _overrides(args)
    return MonaiAlgo(bundle_root=str(bundle), local_epochs=args.local_epochs, send_weight_diff=True,
                     config_train_filename=train_files, train_kwargs=dict(overrides),
                     config_evaluate_filename=["configs/train.json", "configs/evaluate.json", FL_EVAL_OVERLAY],
                     eval_kwargs={**overrides, **ROUND_REPORT_OVERRIDES} if train else dict(overrides))


def weights_digest(weights: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the names and bytes of a state dict (which global model a round received).

    Example:
        >>> len(weights_digest({"w": torch.zeros(2)}))
        64
    """
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(weights[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def to_tensors(params: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Received global weights as tensors; only numeric arrays are accepted (nothing is unpickled)."""
    tensors = {}
    for name, value in params.items():
        if isinstance(value, torch.Tensor):
            tensors[name] = value.detach().cpu().clone()
            continue
        array = np.asarray(value)
        if array.dtype == object or not np.issubdtype(array.dtype, np.number):
            raise ConfigError(f"received parameter {name!r} is {array.dtype}, not a numeric array; refusing it")
        tensors[name] = torch.from_numpy(array.copy())
    return tensors


def outgoing_payload(weights: Mapping[str, Any], metrics: Mapping[str, Any], expected: set[str]) -> dict:
    """What a site sends: ``{"params": name -> CPU tensor, "metrics": name -> float}``, checked.

    NVFlare's PyTorch Client API takes tensors (it drops anything else), so parameters stay tensors.

    Raises:
        ConfigError: a parameter name the global model does not have (so nothing but the model's own tensors
            leaves), a non-numeric array, or a non-scalar metric (per-image values could identify patients).
    """
    params = {}
    for name, value in weights.items():
        if name not in expected:
            raise ConfigError(f"refusing to send {name!r}: not a parameter of the global model")
        tensor = value.detach().cpu() if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
        if tensor.dtype == torch.bool or tensor.is_complex():
            raise ConfigError(f"refusing to send {name!r}: {tensor.dtype} is not a real-valued parameter")
        params[name] = tensor
    scalars = {}
    for name, value in metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if not isinstance(value, _SCALAR_TYPES) or isinstance(value, bool):
            raise ConfigError(f"refusing to send metric {name!r}: {type(value).__name__} is not a scalar")
        scalars[name] = float(value)
    return {"params": params, "metrics": scalars}


def keep_report(site_dir: Path, stage: str) -> dict[str, Any]:
    """Copy the last evaluation report (metrics.json, predictions.npz ...) to ``rounds/<stage>`` (replaced whole,
    atomically); its metrics."""
    eval_dir, dest = recover_directory(site_dir / "eval"), site_dir / "rounds" / stage
    with atomic_directory(dest) as tmp:
        shutil.copytree(eval_dir, tmp, dirs_exist_ok=True)
    return json.loads((dest / "metrics.json").read_text())


def train_round(algo: Any, weights: Mapping[str, torch.Tensor], current_round: int, local_epochs: int) -> Any:
    """Train one round from the global ``weights``; MonaiAlgo's result (weight differences + statistics).

    Epochs are numbered by global round: round ``r`` trains epochs ``r*E+1 .. (r+1)*E`` whichever rounds this site
    took part in, so epoch-driven strategies switch on the federation's schedule.

    Example:
        >>> diff = train_round(algo, global_weights, current_round=0, local_epochs=1).weights  # doctest: +SKIP
    """
    from monai.fl.utils.constants import WeightType
    from monai.fl.utils.exchange_object import ExchangeObject

    algo.trainer.state.epoch = current_round * local_epochs
    algo.train(ExchangeObject(weights=dict(weights), weight_type=WeightType.WEIGHTS))
    return algo.get_weights()


def evaluate_weights(argv: Sequence[str], weights: Mapping[str, torch.Tensor], stage: str = "final") -> dict:
    """Evaluate ``weights`` on a site's test split with the bundle's full report, kept under ``rounds/<stage>``.

    The same metrics as a round's report, plus what a round leaves out (:data:`ROUND_REPORT_OVERRIDES`): bootstrap
    intervals and plots. Returns the report's ``metrics.json``, whose key metric depends on the bundle.

    Example:
        >>> report = evaluate_weights(site_arguments.split(), global_weights)  # doctest: +SKIP
        >>> report["mean_auc"]  # or "macro_auc" (single-label), "mean_dice" (segmentation)  # doctest: +SKIP
    """
    from monai.fl.utils.constants import ExtraItems, WeightType
    from monai.fl.utils.exchange_object import ExchangeObject

    args = parse_site_args(argv)
    algo = build_algo(args, train=False)
    algo.initialize(extra={ExtraItems.CLIENT_NAME: Path(args.site_dir).name})
    algo.evaluate(ExchangeObject(weights=dict(weights), weight_type=WeightType.WEIGHTS))
    algo.finalize()
    return keep_report(Path(args.site_dir).resolve(), stage)


def run_site(argv: Sequence[str] | None = None) -> None:
    """The site loop (see the module docstring); returns when the server ends the job."""
    import nvflare.client as flare
    from monai.fl.utils.constants import ExtraItems, WeightType
    from monai.fl.utils.exchange_object import ExchangeObject
    from nvflare.apis.fl_constant import FLMetaKey
    from nvflare.app_common.abstract.fl_model import FLModel, ParamsType

    args = parse_site_args(argv)
    site_dir = make_directory(Path(args.site_dir).resolve())
    flare.init()
    site = flare.get_site_name()
    algo = build_algo(args)
    algo.initialize(extra={ExtraItems.CLIENT_NAME: site})
    expected = set(algo.trainer.network.state_dict())
    while flare.is_running():
        incoming = flare.receive()
        if incoming is None:
            break
        received_at = time.time()
        weights = to_tensors(incoming.params)
        current_round = int(incoming.current_round or 0)
        evaluated = algo.evaluate(ExchangeObject(weights=weights, weight_type=WeightType.WEIGHTS))
        inference_seconds = algo.evaluator.state.times.get("EPOCH_COMPLETED")  # the test split's forward passes
        report = keep_report(site_dir, f"round_{current_round:03d}")
        evaluated_at = time.time()
        result = train_round(algo, weights, current_round, args.local_epochs)
        trained_at = time.time()
        # the bundle's own key metrics: the received global model on the local test split, the locally trained
        # model on the local validation split (what the server selects the best global model by)
        metrics = dict(evaluated.metrics or {})
        metrics.update(algo.train_workflow.evaluator.state.metrics)
        headline = {key: report[key] for key in _REPORT_KEY_METRICS if key in report}
        logger.info("%s round %d: %s (report: %s)", site, current_round, metrics, headline)
        payload = outgoing_payload(result.weights, metrics, expected)
        steps = int(result.statistics.get("num_executed_iterations", 1))
        atomic_write_json(site_dir / "rounds" / f"round_{current_round:03d}" / "sent.json",
                          {"params": sorted(payload["params"]), "metrics": payload["metrics"], "steps": steps,
                           "received_sha256": weights_digest(weights), "received_at": received_at,
                           "evaluate_seconds": evaluated_at - received_at,
                           "evaluate_inference_seconds": inference_seconds, "train_seconds": trained_at - evaluated_at})
        flare.send(FLModel(params=payload["params"], params_type=ParamsType.DIFF, metrics=payload["metrics"],
                           meta={FLMetaKey.NUM_STEPS_CURRENT_ROUND: steps}))
    algo.finalize()
