"""Choose a cut-off layer: a linear probe on each candidate layer's pooled features, scored by validation AUC.

The cut-off-layer literature for medical transfer (e.g. Ravishankar et al. 2016, "Understanding the
mechanisms of deep transfer learning for medical images"; Kornblith et al. 2019 for linear probes)
compares layers by how linearly separable the target labels are in their features. Here every
candidate layer's output is captured with forward hooks in one pass over each batch, global-average
pooled over its spatial dimensions, and a standardised logistic regression per class (one-vs-rest) is
fitted on the training features and scored by mean ROC AUC on the validation features.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torchvision.models as tvm
from monai.bundle import ConfigParser
from monai.data import DataLoader, Dataset, MetaTensor
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from common.errors import ConfigError, DataError, MedxferError
from common.finetune.base import unwrap
from common.finetune.strategies.cutoff import KERAS_DENSENET121_ALIASES

__all__ = ["probe_cutoff_layers", "probe_bundle_cutoff", "pool_features", "resolve_layers", "format_table"]

logger = logging.getLogger(__name__)


def pool_features(output: torch.Tensor, channel_last: bool = False) -> torch.Tensor:
    """Global-average-pool a layer output to ``(N, C)``.

    ``(N, C)`` is returned as is; ``(N, C, *spatial)`` maps are averaged over the spatial dimensions;
    with ``channel_last`` (Swin stages: ``(N, H, W, C)``, token sequences ``(N, L, C)``) the dimensions
    between the batch and the last one are averaged.

    Example:
        >>> pool_features(torch.ones(2, 7, 7, 96), channel_last=True).shape
        torch.Size([2, 96])
    """
    if isinstance(output, tuple | list):
        output = output[0]
    if output.ndim < 2:
        raise DataError(f"cannot pool a layer output of shape {tuple(output.shape)}; want (N, C, ...)")
    if output.ndim == 2:
        return output
    dims = tuple(range(1, output.ndim - 1)) if channel_last else tuple(range(2, output.ndim))
    return output.mean(dim=dims)


def _channel_last(model: nn.Module, module_name: str) -> bool:
    # torchvision Swin keeps (N, H, W, C) from the patch embedding until its `permute` before pooling.
    return isinstance(model, tvm.SwinTransformer) and module_name.split(".")[0] in ("features", "norm")


def resolve_layers(model: nn.Module, layers: list[str]) -> list[tuple[str, str]]:
    """``(requested name, module name)`` pairs, Keras DenseNet-121 aliases resolved, in the model's layer order.

    Raises:
        ConfigError: a name is not a module of ``model`` nor an alias (close names are suggested).
    """
    if not layers:
        raise ConfigError("no candidate layers given; pass module names such as 'features.denseblock3'")
    modules = [name for name, _ in model.named_modules() if name]
    order = {name: index for index, name in enumerate(modules)}
    pairs = []
    for layer in dict.fromkeys(layers):
        name = KERAS_DENSENET121_ALIASES.get(layer, layer)
        if name not in order:
            close = difflib.get_close_matches(layer, modules + list(KERAS_DENSENET121_ALIASES), n=5, cutoff=0.5)
            raise ConfigError(f"probe layer {layer!r} not found in {type(model).__name__}; "
                              f"did you mean: {', '.join(close) or '(no close name)'}?")
        pairs.append((layer, name))
    return sorted(pairs, key=lambda pair: order[pair[1]])


@torch.no_grad()
def _collect(model: nn.Module, names: list[str], loader: DataLoader, device: torch.device | str,
             max_batches: int | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Pooled features of every layer in ``names`` and the labels, one forward pass per batch."""
    captured: dict[str, list[torch.Tensor]] = {name: [] for name in names}

    def hook_for(name: str) -> Any:
        channel_last = _channel_last(model, name)

        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            # Pool at once: a later in-place op (DenseNet's ReLU after norm5) would change a stored reference.
            captured[name].append(pool_features(output, channel_last).float().cpu())

        return hook

    handles = [model.get_submodule(name).register_forward_hook(hook_for(name)) for name in names]
    labels = []
    try:
        for index, batch in enumerate(loader):
            if max_batches is not None and index >= max_batches:
                break
            images = batch["image"]
            model(images.as_tensor().to(device) if isinstance(images, MetaTensor) else images.to(device))
            labels.append(torch.as_tensor(batch["label"]).float().cpu())
    finally:
        for handle in handles:
            handle.remove()
    if not labels:
        raise DataError("the probe's data loader yielded no batches")
    label_array = torch.cat(labels).numpy()
    label_array = label_array.reshape(len(label_array), -1)
    return {name: torch.cat(parts).numpy() for name, parts in captured.items()}, label_array


def _probe() -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


def _one_hot_class_indices(y_train: np.ndarray, y_val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Single-label class indices (one column holding 0..K-1, K > 2) as K one-vs-rest columns; others unchanged.

    A one-column label with values 0/1 is already the binary task's positive column (the mammography bundle's
    ``[1.0]``, a binary ``medical_image_classification`` datalist), so it is left as it is.
    """
    if y_train.shape[1] != 1 or np.isnan(y_train).any() or np.isnan(y_val).any():
        return y_train, y_val
    n_classes = int(max(y_train.max(), y_val.max())) + 1
    if n_classes <= 2:
        return y_train, y_val
    eye = np.eye(n_classes, dtype=np.float32)
    return eye[y_train[:, 0].astype(int)], eye[y_val[:, 0].astype(int)]


def _probe_auc(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> float:
    """Mean validation AUC over classes with both label values in train and validation (NaN labels masked).

    Each class gets its own probe (one-vs-rest), fitted on the rows where its label is known; its score is the
    probability of the class being present (``predict_proba[:, 1]``). Single-label class indices are one-hot first,
    so a multi-class task gets the macro one-vs-rest AUC, as the single-label bundle reports it. (scikit-learn's
    ``OneVsRestClassifier`` is not used: given one label column it returns ``[P(0), P(1)]``, and taking its first
    column scored a binary task by the negative class, inverting the AUC.)
    """
    y_train, y_val = _one_hot_class_indices(y_train, y_val)

    def scorable(y: np.ndarray, c: int) -> bool:
        return len(np.unique(y[~np.isnan(y[:, c]), c])) == 2

    classes = [c for c in range(y_train.shape[1]) if scorable(y_train, c) and scorable(y_val, c)]
    if not classes:
        return math.nan
    aucs = []
    for c in classes:
        fit_rows, val_rows = ~np.isnan(y_train[:, c]), ~np.isnan(y_val[:, c])
        probe = _probe().fit(x_train[fit_rows], y_train[fit_rows, c])
        aucs.append(roc_auc_score(y_val[val_rows, c], probe.predict_proba(x_val[val_rows])[:, 1]))
    return float(np.mean(aucs))


def probe_cutoff_layers(model: nn.Module, layers: list[str], train_loader: DataLoader, val_loader: DataLoader,
                        device: torch.device | str = "cpu", max_batches: int | None = None) -> list[dict[str, Any]]:
    """Score each candidate cut-off layer by a linear probe's validation mean AUC on its pooled features.

    The model runs in eval mode without gradients (its weights and BatchNorm statistics are untouched;
    its train/eval mode is restored). Per layer: global average pooling (:func:`pool_features`; Swin's
    channel-last maps handled), then ``StandardScaler`` + ``LogisticRegression`` one-vs-rest per class on
    the training features; AUC per class on validation, skipping classes with one label value in either
    split; the mean is reported (NaN when no class is scorable).

    Args:
        model: the network, with the weights to probe loaded.
        layers: module names or Keras DenseNet-121 names (:data:`KERAS_DENSENET121_ALIASES`).
        train_loader: batches ``{"image": (N, C, H, W), "label": (N, K)}``, deterministic preprocessing.
        val_loader: same for the validation split.
        device: where the forward passes run.
        max_batches: use at most this many batches of each loader.

    Returns:
        One row per layer in the model's layer order: ``layer`` (as requested), ``module`` (resolved name),
        ``feature_dim``, ``val_mean_auc`` and ``best`` (True for the highest AUC).

    Raises:
        ConfigError: an unknown layer name (close names suggested).

    Example:
        >>> rows = probe_cutoff_layers(net, ["features.denseblock3", "features.denseblock4"], tl, vl)  # doctest: +SKIP
    """
    inner = unwrap(model)
    pairs = resolve_layers(inner, layers)
    names = list(dict.fromkeys(name for _, name in pairs))
    was_training = inner.training
    inner.eval()
    try:
        train_x, train_y = _collect(inner, names, train_loader, device, max_batches)
        val_x, val_y = _collect(inner, names, val_loader, device, max_batches)
    finally:
        inner.train(was_training)
    rows = [{"layer": layer, "module": name, "feature_dim": int(train_x[name].shape[1]),
             "val_mean_auc": _probe_auc(train_x[name], train_y, val_x[name], val_y), "best": False}
            for layer, name in pairs]
    scored = [row for row in rows if not math.isnan(row["val_mean_auc"])]
    if scored:
        max(scored, key=lambda row: row["val_mean_auc"])["best"] = True
    _log_table(rows, len(train_y), len(val_y))
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """The probe results as a fixed-width text table, the best layer marked with ``*``."""
    width = max([len("layer"), *(len(row["layer"]) for row in rows)])
    lines = [f"{'layer':<{width}}  {'feature_dim':>11}  {'val_mean_auc':>12}"]
    for row in rows:
        mark = "  * best" if row["best"] else ""
        lines.append(f"{row['layer']:<{width}}  {row['feature_dim']:>11d}  {row['val_mean_auc']:>12.4f}{mark}")
    return "\n".join(lines)


def _log_table(rows: list[dict[str, Any]], n_train: int, n_val: int) -> None:
    logger.info("linear probe per cut-off layer (%d training, %d validation images):", n_train, n_val)
    for line in format_table(rows).splitlines():
        logger.info("%s", line)


def _parsed(parser: ConfigParser, key: str, config: Path) -> Any:
    """``parser``'s parsed ``key``; a medxfer error raised inside a config expression surfaces unwrapped."""
    if key not in parser:
        raise ConfigError(f"{config} has no {key!r}")
    try:
        return parser.get_parsed_content(key)
    except Exception as err:  # MONAI wraps errors raised by config expressions in RuntimeError
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, MedxferError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from err
        raise


def probe_bundle_cutoff(bundle_root: str | os.PathLike, dataset_dir: str | os.PathLike, layers: list[str],
                        max_batches: int | None = None, **overrides: Any) -> list[dict[str, Any]]:
    """Run :func:`probe_cutoff_layers` with a bundle's network, weights and data (its configs/train.json).

    The network is ``@network``; pretrained weights are loaded by the bundle's ``pretrained_report``
    expression (``common.networks.load_pretrained``) (so ``pretrained`` means what it means for training); both splits
    (``train#dataset#data``, ``validate#dataset#data``) are read with ``validate#preprocessing``, i.e.
    without augmentation, in batches of ``@val_batch_size`` on ``@device``.

    Args:
        bundle_root: the bundle folder.
        dataset_dir: the bundle's ``dataset_dir`` (holding datalist.json).
        layers: candidate layers (module names or Keras DenseNet-121 names).
        max_batches: use at most this many batches of each split.
        overrides: other top-level ids, e.g. ``pretrained="none"``, ``image_size=224``, ``num_workers=0``.

    Raises:
        ConfigError: missing config or key, unknown layer. DataError / WeightsError from the bundle's data
            and weight loading.

    Example:
        >>> probe_bundle_cutoff("bundles/chest_xray_classification", "data/cxr", ["features.denseblock3"],
        ...                     pretrained="none", image_size=64)  # doctest: +SKIP
    """
    config = Path(bundle_root) / "configs" / "train.json"
    if not config.is_file():
        raise ConfigError(f"bundle config not found: {config}")
    parser = ConfigParser()
    parser.read_config(str(config))
    parser.update({"bundle_root": str(bundle_root), "dataset_dir": str(dataset_dir), **overrides})
    network = _parsed(parser, "network", config)
    if "pretrained_report" not in parser.get():
        raise ConfigError(f"{config}: no 'pretrained_report' (the common.networks.load_pretrained expression)")
    _parsed(parser, "pretrained_report", config)
    transform = _parsed(parser, "validate#preprocessing", config)
    batch_size, workers = _parsed(parser, "val_batch_size", config), _parsed(parser, "num_workers", config)
    train_loader, val_loader = (
        DataLoader(Dataset(_parsed(parser, f"{split}#dataset#data", config), transform), batch_size=batch_size,
                   shuffle=False, num_workers=workers)
        for split in ("train", "validate")
    )
    return probe_cutoff_layers(network, layers, train_loader, val_loader, _parsed(parser, "device", config),
                               max_batches)
