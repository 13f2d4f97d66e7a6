"""MONAI Label training task for a medxfer bundle: the bundle's own ``train.json`` on the datastore's final labels.

``POST /train/<bundle>`` with params (all optional; :meth:`BundleTrainTask.config` lists them with defaults)::

    {"max_epochs": 10, "strategy": "lp_ft", "pretrained": "current", "image_size": 224, "batch_size": 16,
     "learning_rate": 0.0001, "num_workers": 0}

(segmentation bundles take ``patch_size`` instead of ``image_size``.)

``strategy`` names an overlay ``configs/finetune/<name>.json``; ``pretrained`` is ``"current"`` (the bundle's own
``models/model.pt``), ``"none"``, ``"imagenet"``, a weights file or ``"bundle:<bundle folder>"``. A model trained
with other preprocessing (e.g. 64 px) keeps it (its checkpoint card's settings) unless the request sets it.

Every run writes ``<workspace>/<bundle>/datalist.json`` (image ids sorted, every k-th to validation, k = round(1 /
val_fraction) and at least 2) and trains afresh (``resume="never"``) in ``<workspace>/<bundle>/training/``: the
served ``models/model.pt`` keeps answering ``/infer`` during the run and stays if it fails; a finished run's model
replaces it, the previous one kept in ``models/previous-<time>/``. Classification validation must hold a finding
both present and absent (AUC is undefined otherwise): training images are moved into validation, in id order,
until it does.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from monailabel.interfaces.tasks.train import TrainTask

from common.bundle_runner import run_bundle
from common.data.bcss_codes import BCSS_GTRUTH_CODES, build_code_lookup
from common.errors import ConfigError, MedxferError, OutputError, find_user_error, user_message
from common.experiments.bundles import FINETUNE_DIR
from common.io import atomic_write_json
from common.label.bundles import CLASSIFICATION, SEGMENTATION, LabelBundle
from common.label.datastore import MedxferDatastore
from common.networks import SEGMENTERS, get_arch, imagenet_weights_file
from common.networks.checkpoint_card import card_path, read_card
from common.networks.weights import resolve_state_dict

__all__ = ["STATS_FILE", "BundleTrainTask", "split_items"]

logger = logging.getLogger(__name__)

STATS_FILE = "label_train_stats.json"
#: request keys MONAI Label itself adds (the model name, GPU selection, the training subprocess's rank)
_MONAI_LABEL_KEYS = frozenset({"model", "gpus", "local_rank", "bundle_path"})
RUN_DIR = "training"  # under the bundle's workspace root: where a run trains before its model is served
#: numeric request params: bundle key, type, smallest value
_NUMBERS = {"max_epochs": ("epochs", int, 1), "image_size": ("image_size", int, 8),
            "patch_size": ("patch_size", int, 16),
            "batch_size": ("batch_size", int, 1), "learning_rate": ("learning_rate", float, 0.0),
            "num_workers": ("num_workers", int, 0)}  # fmt: skip


def _refuse(text: str) -> HTTPException:
    return HTTPException(status_code=400, detail=" ".join(text.split()))


def _strategies() -> list[str]:
    return sorted(p.stem for p in FINETUNE_DIR.glob("*.json"))


def _auc_defined(items: list[dict[str, Any]]) -> bool:
    """Whether some class is both present (1) and absent (0) among ``items``' labels."""
    return any({item["label"][c] for item in items} >= {0, 1} for c in range(len(items[0]["label"])))


def split_items(items: list[dict[str, Any]], val_fraction: float,
                classification: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:  # fmt: skip
    """Training and validation items: every k-th (k = round(1 / val_fraction), >= 2) to validation, at least 1 in each.

    ``items`` come sorted by image id. Classification: while no class is both present and absent in validation,
    the first training item that adds a missing value moves there (keeping one training item).

    Example:
        >>> [len(s) for s in split_items([{"image": str(i)} for i in range(10)], 0.2, False)]
        [8, 2]
    """
    step = max(2, round(1 / val_fraction))
    val_index = set(range(step - 1, len(items), step)) or {len(items) - 1}
    training = [x for i, x in enumerate(items) if i not in val_index]
    validation = [x for i, x in enumerate(items) if i in val_index]
    while classification and not _auc_defined(validation) and len(training) > 1:
        seen = [{x["label"][c] for x in validation} for c in range(len(validation[0]["label"]))]
        helps = [x for x in training if any(v not in seen[c] for c, v in enumerate(x["label"]))]
        if not helps:
            break
        training.remove(helps[0])
        validation.append(helps[0])
    order = {id(x): i for i, x in enumerate(items)}
    return training, sorted(validation, key=lambda x: order[id(x)])


class BundleTrainTask(TrainTask):
    """``/train/<bundle>``: check the request, write the datalist, run the bundle's ``train.json``.

    Args:
        bundle: the served bundle.
        min_labels: labelled images needed before training starts (at least 2: one to train, one to validate).
        val_fraction: share of labelled images used for validation (every k-th, k = round(1 / val_fraction), >= 2).
        settings: fixed bundle overrides for every run (the server's, e.g. ``{"val_batch_size": 4}``); a
            request's params still win for the keys it sets.
    """

    def __init__(self, bundle: LabelBundle, min_labels: int = 2, val_fraction: float = 0.2,
                 settings: Mapping[str, Any] | None = None) -> None:  # fmt: skip
        if isinstance(min_labels, bool) or not isinstance(min_labels, int) or min_labels < 2:
            raise ConfigError(f"min_labels must be an integer >= 2 (one image to train, one to validate), "
                              f"got {min_labels!r}")  # fmt: skip
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction!r}")
        super().__init__(f"Train {bundle.name} (its configs/train.json) on the datastore's final labels")
        self.bundle, self.min_labels, self.val_fraction = bundle, min_labels, val_fraction
        self.settings = dict(settings or {})
        self._defaults = json.loads(bundle.config_file("train.json").read_text(encoding="utf-8"))

    def _base(self) -> dict[str, Any]:
        """Bundle overrides before the request's: the trained model's card settings, then the server's."""
        return {**self.bundle.trained_settings(), **self.settings}

    def config(self) -> dict[str, Any]:
        """Params a client may set, with their defaults (``strategy``: the choices, the default first)."""
        try:
            base = {**self._defaults, **self._base()}
        except MedxferError as err:  # an unreadable card must not break GET /info; check() answers 400 with it
            logger.warning("%s: %s", self.bundle.name, user_message(err))
            base = {**self._defaults, **self.settings}
        names = _strategies()
        default = "ft" if "ft" in names else names[0]
        out: dict[str, Any] = {"max_epochs": base["epochs"], "strategy": [default, *[n for n in names if n != default]],
                               "pretrained": base["pretrained"]}  # fmt: skip
        if self.bundle.kind == CLASSIFICATION:
            out["image_size"] = base["image_size"]
        elif "patch_size" in base:
            out["patch_size"] = base["patch_size"]
        out.update(batch_size=base["batch_size"], learning_rate=base["learning_rate"],
                   num_workers=self.settings.get("num_workers", 0))
        return out

    # -- checking -------------------------------------------------------------------------------------------------
    def check(self, request: Mapping[str, Any], datastore: MedxferDatastore) -> dict[str, Any]:
        """Validate a request before anything runs; return the resolved run.

        Returns:
            ``{"model", "strategy", "overlay" (file or None), "settings" (bundle overrides), "training",
            "validation" (datalist items)}``.

        Raises:
            HTTPException: 400 with one line: unknown param or strategy, a bad number, too few labels, a
                validation split without a finding both present and absent, weights that cannot be found.
        """
        try:
            return self._check(request, datastore)
        except MedxferError as err:
            raise _refuse(user_message(err)) from err

    def _check(self, request: Mapping[str, Any], datastore: MedxferDatastore) -> dict[str, Any]:
        given = {k: v for k, v in request.items() if k not in _MONAI_LABEL_KEYS}
        config = self.config()
        unknown = sorted(set(given) - set(config))
        if unknown:
            raise _refuse(f"unknown training param(s) {', '.join(unknown)} for {self.bundle.name}; valid: "
                          f"{', '.join(config)}")
        values = {**{k: (v[0] if isinstance(v, list) else v) for k, v in config.items()}, **given}
        strategy = values["strategy"][0] if isinstance(values["strategy"], list) else values["strategy"]
        if strategy not in config["strategy"]:
            close = difflib.get_close_matches(str(strategy).lower().replace("-", "_"), config["strategy"], n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise _refuse(f"unknown strategy {strategy!r}; {hint}choose from: {', '.join(config['strategy'])}")
        settings = {**self._base(), "resume": "never"}
        for key, (bundle_key, kind, smallest) in _NUMBERS.items():
            if key in values:
                settings[bundle_key] = _number(key, values[key], kind, smallest)
        settings["pretrained"] = self._pretrained(values["pretrained"], settings.get("arch") or self._defaults["arch"])
        items = datastore.training_items(self.bundle)
        if len(items) < self.min_labels:
            how = (f'a JSON label {{"model": "{self.bundle.name}", "findings": [...]}}'
                   if self.bundle.kind == CLASSIFICATION
                   else f"a mask image, codes 0..{len(self.bundle.class_names())}, 0 = not annotated")
            raise _refuse(f"{self.bundle.name} has {len(items)} labelled image(s); training needs at least "
                          f"{self.min_labels}: label more with PUT /datastore/label?image=<id>&tag=final ({how})")
        if self.bundle.kind == SEGMENTATION:
            self._require_class_codes(settings)
        training, validation = split_items(items, self.val_fraction, self.bundle.kind == CLASSIFICATION)
        if self.bundle.kind == CLASSIFICATION and not _auc_defined(validation):
            raise _refuse(f"{self.bundle.name}: the {len(validation)} validation image(s) have no finding both "
                          f"present and absent, so validation AUC is undefined; label more images, some with "
                          f"and some without the same finding (at least 3 labelled images)")
        overlay = str(FINETUNE_DIR / f"{strategy}.json") if "strategy" in given else None
        return {"model": self.bundle.name, "strategy": strategy, "overlay": overlay, "settings": settings,
                "training": training, "validation": validation}

    def _require_class_codes(self, settings: Mapping[str, Any]) -> None:
        """Datastore masks hold class codes 0..K; the bundle reads BCSS codes through ``class_map``: they must agree."""
        class_map = self.bundle.parser("train.json", **settings).get("class_map")
        if isinstance(class_map, dict):
            lut = build_code_lookup(BCSS_GTRUTH_CODES, class_map)[: len(class_map) + 1]
            if lut.tolist() != list(range(len(class_map) + 1)):
                raise _refuse(f"{self.bundle.name}: its class_map does not read mask code c as class c (it maps "
                              f"codes 0..{len(class_map)} to {lut.tolist()}), but datastore masks hold class codes; "
                              f"train with the default class_map")

    def _pretrained(self, value: Any, arch: str) -> str:
        """The ``pretrained`` value the bundle gets; 400 when its weights cannot be found (no file is read)."""
        if not isinstance(value, str) or not value:
            raise _refuse(f"pretrained must be a string ('current', 'none', 'imagenet', a file or 'bundle:<path>'), "
                          f"got {value!r}")
        if value == "none":
            return value
        if value == "current":
            if not self.bundle.trained:
                raise _refuse(f"pretrained 'current': {self.bundle.name} has no trained model yet "
                              f"({self.bundle.model_path}); use 'none', 'imagenet', a file or 'bundle:<path>'")
            return str(self.bundle.model_path)
        if value == "imagenet":
            segmenter = SEGMENTERS.get(arch)
            if self.bundle.kind == SEGMENTATION and (segmenter is None or segmenter.backbone is None):
                raise _refuse(f"pretrained 'imagenet': arch {arch!r} has no ImageNet weights (its encoder is not a "
                              f"classifier backbone); use 'none', 'current', a file or 'bundle:<path>'")
            backbone = segmenter.backbone if segmenter is not None else arch
            spec = get_arch(backbone)
            if spec.imagenet_loader is None and (spec.imagenet_weights is None
                                                 or not imagenet_weights_file(backbone).is_file()):
                resolve_state_dict("imagenet", backbone)  # raises the WeightsError naming the missing file
            return value
        file = Path(value.removeprefix("bundle:")).expanduser().resolve()
        if value.startswith("bundle:"):
            if not (file / "models" / "model.pt").is_file():
                raise _refuse(f"pretrained {value!r}: no trained model {file / 'models' / 'model.pt'}")
            return f"bundle:{file}"
        if not file.is_file():
            raise _refuse(f"pretrained {value!r}: weights file not found: {file}")
        return str(file)

    # -- running --------------------------------------------------------------------------------------------------
    def __call__(self, request: Mapping[str, Any], datastore: MedxferDatastore) -> dict[str, Any]:
        """Check, write the datalist, train; return (and keep, for :meth:`stats`) the run's stats.

        Raises:
            HTTPException: 400 from :meth:`check`, or with the one-line message of a user error of the bundle run
                (500 for an output that cannot be written); other errors propagate with their traceback.
        """
        plan = self.check(request, datastore)
        started = time.perf_counter()
        datalist: dict[str, Any] = {"training": plan["training"], "validation": plan["validation"]}
        if self.bundle.kind == CLASSIFICATION:
            # stage 2's sampler reads each item's weight and its class names come from the datalist; others ignore
            for item in plan["training"] + plan["validation"]:
                item["weight"] = 1.0
            datalist["class_names"] = self.bundle.class_names()
        datalist_file = atomic_write_json(self.bundle.root / "datalist.json", datalist)
        configs = ["train.json"] + ([plan["overlay"]] if plan["overlay"] else [])
        run_root = self.bundle.root / RUN_DIR
        shutil.rmtree(run_root, ignore_errors=True)  # the previous run's scratch: the served model is not there
        try:
            workflow = run_bundle(self.bundle.source, configs, "train", state_root=run_root,
                                  dataset_dir=str(datastore.studies), datalist=str(datalist_file), **plan["settings"])
            self._publish(run_root)
        except Exception as exc:
            err = find_user_error(exc)
            self._write_stats({"status": "failed", "model": self.bundle.name, "error": user_message(exc),
                               "seconds": round(time.perf_counter() - started, 2)})
            if err is None:
                raise
            raise HTTPException(500 if isinstance(err, OutputError) else 400, user_message(exc)) from exc
        card = read_card(self.bundle.model_path) or {}
        metric = {k: v for k, v in (card.get("metric") or {}).items() if isinstance(v, float) and math.isfinite(v)}
        stats = {
            "status": "done", "model": self.bundle.name, "model_version": self.bundle.version(),
            "epochs": int(workflow.parser.get_parsed_content("train#trainer").state.epoch),
            "n_train": len(plan["training"]), "n_val": len(plan["validation"]),
            "best_metric": next(iter(metric.values()), None), "metric_name": next(iter(metric), None),
            "best_epoch": card.get("epoch"), "strategy": plan["strategy"], "pretrained": plan["settings"]["pretrained"],
            "seconds": round(time.perf_counter() - started, 2), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        self._write_stats(stats)
        logger.info("trained %s: %s", self.bundle.name, json.dumps(stats))
        return stats

    def _publish(self, run_root: Path) -> None:
        """Serve the new model: keep the current one under ``models/previous-<time>/``, then move the new one in.

        The run trained in ``run_root``, so the served model stayed in place (and answered ``/infer``) all along,
        and a failed run leaves it untouched. Each file is replaced by one rename, the card before the model;
        the predictor retries once when it catches the two between renames.
        """
        new_model = run_root / "models" / "model.pt"
        if not new_model.is_file():
            raise OutputError(f"training of {self.bundle.name} finished without saving a model ({new_model}): no "
                              "validation ran; raise max_epochs or label more images")  # fmt: skip
        models = self.bundle.model_path.parent
        models.mkdir(parents=True, exist_ok=True)
        if self.bundle.trained:
            aside = models / f"previous-{time.strftime('%Y%m%d-%H%M%S')}"
            aside.mkdir(exist_ok=True)
            for old in (self.bundle.model_path, card_path(self.bundle.model_path)):
                if old.is_file():
                    shutil.copy2(old, aside / old.name)
        if card_path(new_model).is_file():
            os.replace(card_path(new_model), card_path(self.bundle.model_path))
        os.replace(new_model, self.bundle.model_path)

    def _write_stats(self, stats: dict[str, Any]) -> None:
        atomic_write_json(self.bundle.root / STATS_FILE, stats)

    def stats(self) -> dict[str, Any]:
        """The last run's stats (written by the training subprocess; ``{}`` before the first run)."""
        file = self.bundle.root / STATS_FILE
        try:
            return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            logger.warning("cannot read %s (%s): no training stats shown", file, err)
            return {}


def _number(key: str, value: Any, kind: type, smallest: float) -> int | float:
    """``value`` as ``kind`` (numeric strings accepted), ``> 0`` for floats and ``>= smallest`` for ints."""
    try:
        number = kind(value) if not isinstance(value, bool) else None
        if kind is int and isinstance(value, float | str) and float(value) != number:
            number = None
    except (TypeError, ValueError):
        number = None
    if number is None or not math.isfinite(number) or number < smallest or (kind is float and number <= smallest):
        need = f"an integer >= {smallest}" if kind is int else f"a number > {smallest}"
        raise _refuse(f"{key} must be {need}, got {value!r}")
    return number
