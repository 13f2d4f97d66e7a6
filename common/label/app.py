"""The MONAI Label app serving medxfer bundles (``apps/monailabel/main.py`` re-exports :class:`MedxferApp`).

App settings (``--conf KEY VALUE`` of ``monailabel start_server``, or ``python -m common.label serve``):

- ``models``: comma-separated bundle names, or ``all`` (default);
- ``bundles``: the folder holding the bundles (default: this repository's ``bundles/``);
- ``workspace``: where each bundle's trained model, evaluation and training datalist go (default:
  ``<studies>/.medxfer``, beside the data it was trained on);
- ``min_labels``: labelled images needed before ``/train`` starts (default 2).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask

import common
from common.label.bundles import LabelBundle, Predictor, discover_bundles
from common.label.datastore import MedxferDatastore
from common.label.infer import BundleInferTask
from common.label.routes import install_train_check
from common.label.strategies import Random, Uncertainty
from common.label.studies import STUDY_EXTENSIONS
from common.label.train import BundleTrainTask

__all__ = ["BUNDLES_DIR", "MedxferApp"]

logger = logging.getLogger(__name__)

BUNDLES_DIR = Path(__file__).resolve().parents[2] / "bundles"


class MedxferApp(MONAILabelApp):
    """Every medxfer bundle as a MONAI Label model: infer, train from the datastore, active learning."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        conf = dict(conf or {})
        names = [n.strip() for n in conf.get("models", "all").split(",") if n.strip()]
        workspace = Path(conf.get("workspace") or Path(studies) / ".medxfer")
        self.bundles: dict[str, LabelBundle] = discover_bundles(conf.get("bundles") or BUNDLES_DIR, workspace, names)
        self.predictors = {name: Predictor(bundle) for name, bundle in self.bundles.items()}
        self.min_labels = int(conf.get("min_labels", 2))
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="medxfer",
            description="medxfer bundles: chest X-ray and mammography classification, histology segmentation",
            version=common.__version__,
        )

    def init_datastore(self) -> Datastore:
        """A local studies folder whose labels are checked against the served bundles' classes."""
        from monailabel.config import settings

        return MedxferDatastore(self.studies, self.bundles, extensions=STUDY_EXTENSIONS,
                                auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
                                read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY)

    def init_infers(self) -> dict[str, InferTask]:
        """One infer task per bundle, sharing the predictors with the uncertainty strategy."""
        return {name: BundleInferTask(bundle, self.predictors[name]) for name, bundle in self.bundles.items()}

    def init_trainers(self) -> dict[str, TrainTask]:
        """One train task per bundle the saved labels can train (the bundle's own ``train.json``).

        Single-label bundles get none yet (:attr:`LabelBundle.trainable_from_labels`): ``/train/<bundle>`` answers
        that no such trainer exists instead of starting a job that would refuse every saved label.
        """
        return {name: BundleTrainTask(bundle, min_labels=self.min_labels) for name, bundle in self.bundles.items()
                if bundle.trainable_from_labels}

    def init_strategies(self) -> dict[str, Strategy]:
        """``uncertainty`` and ``random`` (both per bundle: params ``{"model": <bundle>}``)."""
        return {"uncertainty": Uncertainty(self.bundles, self.predictors), "random": Random(self.bundles)}

    def on_init_complete(self) -> None:
        """Server start: MONAI Label's jobs, then the ``/train`` request check (400 before a job starts)."""
        super().on_init_complete()
        install_train_check(self)

    def trainer(self, name: str) -> BundleTrainTask | None:
        """The train task of bundle ``name`` (``None`` when not served)."""
        task = self._trainers.get(name)
        return task if isinstance(task, BundleTrainTask) else None

    def info(self) -> dict[str, Any]:
        """MONAI Label's info plus the workspace folder."""
        out = super().info()
        out["workspace"] = str(next(iter(self.bundles.values())).root.parent) if self.bundles else None
        return out
