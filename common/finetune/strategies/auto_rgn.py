"""Auto-RGN (Lee et al., ICLR 2023): per-tensor learning rates from relative gradient norms."""

from __future__ import annotations

import copy
import itertools
import logging
import math
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader, IterableDataset

from common.errors import ConfigError
from common.finetune.base import FinetuneStrategy, set_group_lrs, unwrap
from common.finetune.freezing import hold_batchnorm_statistics, set_parameters_trainable
from common.networks.layer_groups import group_parameters

__all__ = ["AutoRGN", "measurement_batches", "relative_gradient_norms", "VARIANTS", "HEAD_MODES"]

logger = logging.getLogger(__name__)

VARIANTS = ("reference", "mean_gradient")
HEAD_MODES = ("base_lr", "rgn")
# Epoch e's measurement batches are drawn with a generator seeded ``seed * _SEED_STRIDE + e``.
_SEED_STRIDE = 100_003


def _bn_parameter_names(model: nn.Module) -> set[str]:
    return {f"{m}.{p}" for m, mod in model.named_modules() if isinstance(mod, _BatchNorm)
            for p, _ in mod.named_parameters(recurse=False)}


def _randomizables(obj: Any, found: list[Any], seen: set[int]) -> list[Any]:
    """Every object with a numpy ``RandomState`` ``R`` under ``obj`` (MONAI transforms and their inner twins)."""
    if id(obj) in seen or isinstance(obj, (str, bytes, int, float, torch.Tensor, np.ndarray)):
        return found
    seen.add(id(obj))
    if isinstance(getattr(obj, "R", None), np.random.RandomState):
        found.append(obj)
    children = obj if isinstance(obj, (list, tuple)) else vars(obj).values() if hasattr(obj, "__dict__") else ()
    for child in children:
        _randomizables(child, found, seen)
    return found


class _RandomStateGuard:
    """Restore python, numpy, torch (CPU and CUDA) and the dataset transforms' random states on exit.

    Loading batches in the main process advances MONAI's random transforms and a loss or network may draw from
    torch; none of that may leak into the training that follows, so a run paired by seed sees the same data.
    """

    def __init__(self, dataset: Any) -> None:
        self._transforms = _randomizables(getattr(dataset, "transform", None), [], set())

    def __enter__(self) -> _RandomStateGuard:
        # The legacy global numpy state is what MONAI and user code may draw from, so that is what is saved.
        self._states = (random.getstate(), np.random.get_state(), torch.get_rng_state(),  # noqa: NPY002
                        torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
                        [t.R.get_state() for t in self._transforms])
        return self

    def __exit__(self, *exc: object) -> None:
        py, npy, cpu, cuda, transforms = self._states
        random.setstate(py)
        np.random.set_state(npy)  # noqa: NPY002
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        for t, state in zip(self._transforms, transforms, strict=True):
            t.R.set_state(state)


def measurement_batches(loader: Any, n_batches: int, generator: torch.Generator) -> Iterator[Any]:
    """The first ``n_batches`` minibatches of a private pass over ``loader``'s dataset, drawn with ``generator``.

    The pass uses a copy of the loader's sampler (so a weighted or distributed sampler draws as in training) whose
    ``generator``, where it has one (``RandomSampler``, ``WeightedRandomSampler``), is replaced by ``generator``;
    the training loader itself is never iterated, so its sampler and the global RNG it draws from are untouched.
    An iterable that is not a ``DataLoader`` (a list of batches in tests) yields its first ``n_batches``.

    Raises:
        ConfigError: the loader has no ``batch_size`` (a custom batch sampler) or an iterable-style dataset.
    """
    if not isinstance(loader, DataLoader):
        return itertools.islice(iter(loader), n_batches)
    if loader.batch_size is None or isinstance(loader.dataset, IterableDataset):
        raise ConfigError(f"AutoRGN measures on minibatches of a map-style dataset with a batch_size; got "
                          f"batch_size={loader.batch_size}, dataset {type(loader.dataset).__name__}")
    sampler = copy.copy(loader.sampler)
    if hasattr(sampler, "generator"):
        sampler.generator = generator
    private = DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler, drop_last=loader.drop_last,
                         num_workers=min(loader.num_workers, n_batches), collate_fn=loader.collate_fn,
                         worker_init_fn=loader.worker_init_fn, pin_memory=loader.pin_memory, generator=generator)
    return itertools.islice(iter(private), n_batches)


def relative_gradient_norms(engine: Any, names: list[str], batches: Iterator[Any],
                            statistic: str = "mean_ratio") -> dict[str, float]:
    """Relative gradient norm per named parameter over ``batches``; the model is left exactly as it was.

    ``statistic="mean_ratio"`` (the reference): the mean over batches ``b`` of ``||g_ib|| / ||theta_i||``.
    ``statistic="ratio_of_mean"``: ``||mean_b g_ib|| / ||theta_i||``. A batch whose loss is not finite is not
    counted; under ``mean_ratio`` a tensor's non-finite gradient skips that tensor for that batch. A tensor with
    zero norm (or no counted batch) gives NaN. Buffers (BatchNorm statistics) are restored and gradients cleared.
    """
    if statistic not in ("mean_ratio", "ratio_of_mean"):
        raise ConfigError(f"unknown RGN statistic {statistic!r}; choose from: mean_ratio, ratio_of_mean")
    model, inner = engine.network, unwrap(engine.network)
    params = dict(inner.named_parameters())
    saved = {k: v.detach().clone() for k, v in inner.named_buffers()}
    sums = {n: torch.zeros_like(params[n]) for n in names} if statistic == "ratio_of_mean" else {}
    ratios: dict[str, list[float]] = {n: [] for n in names}
    weights = {n: float(params[n].detach().norm()) for n in names}
    used = 0
    for batch in batches:
        prepared = engine.prepare_batch(batch, engine.state.device, engine.non_blocking)
        inputs, targets, args, kwargs = (*prepared, (), {}) if len(prepared) == 2 else prepared
        model.train()  # held BatchNorm layers stay in eval mode through their hooks
        model.zero_grad(set_to_none=True)
        loss = engine.loss_function(engine.inferer(inputs, model, *args, **kwargs), targets).mean()
        if not torch.isfinite(loss):
            # A (zero) backward keeps DistributedDataParallel's gradient all-reduce in step across ranks.
            sum((p * 0.0).sum() for p in params.values() if p.requires_grad).backward()
            continue
        loss.backward()
        used += 1
        for n in names:
            grad = params[n].grad
            if grad is not None and not torch.isfinite(grad).all():
                continue
            if statistic == "ratio_of_mean":
                if grad is not None:
                    sums[n] += grad
            elif weights[n] > 0:
                ratios[n].append(float(grad.norm()) / weights[n] if grad is not None else 0.0)
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for key, buffer in inner.named_buffers():
            buffer.copy_(saved[key])
    if statistic == "ratio_of_mean":
        return {n: float((sums[n] / used).norm()) / weights[n] if weights[n] > 0 and used else float("nan")
                for n in names}
    return {n: sum(r) / len(r) if r else float("nan") for n, r in ratios.items()}


class AutoRGN(FinetuneStrategy):
    """Auto-RGN: Lee, Chen, Tajwar, Kumar, Yao, Liang, Finn. "Surgical Fine-Tuning Improves Adaptation to
    Distribution Shifts", ICLR 2023 (section 5, Auto-RGN). Reference code: github.com/anniesch/surgical-finetuning,
    ``main.py`` (``get_lr_weights`` and the optimizer rebuilt each epoch under ``auto_tune == 'RGN'``).

    ``variant="reference"`` (default) follows the reference: every parameter tensor outside BatchNorm is its own
    optimizer group. At the start of each epoch, on ``n_batches`` random training minibatches, tensor ``i`` gets
    ``RGN_i = mean_b ||g_ib|| / ||theta_i||`` (the per-batch ratio averaged over the batches), and
    ``lr_i = RGN_i / max_j RGN_j * base_lr`` (times the scheduler's current factor); the optimizer's state is then
    cleared (the reference builds a fresh Adam each epoch). BatchNorm parameters are not trained (the reference's
    optimizer holds only the other tensors) and BatchNorm normalises with its running statistics, never updating
    them, in the measurement and in training (the reference's configs use ``train_mode: eval``). The reference
    picks BatchNorm by ``"bn"`` in the name; we pick BatchNorm layers by type. Its ``eval`` mode also turns dropout
    off; here dropout keeps the trainer's mode.

    The head: with ``head="base_lr"`` (default) the tensors of the model's head group are left out of the rule and
    out of the maximum and train at ``base_lr``. A newly initialised head has small weights and large gradients, so
    its RGN is typically far above the pretrained tensors' and, inside the maximum, would scale every pretrained
    tensor's lr down by that factor; a new head has to be learned from scratch, as in FT. The reference's head was
    pretrained on the same ten classes (CIFAR-10 -> CIFAR-10-C), so ``head="rgn"`` (head in the rule and the
    maximum) is the reference exactly, right when the head is pretrained on the target labels.

    The measurement, like the reference's ``islice(train_loader, 5)``, takes the first ``n_batches`` minibatches of
    a fresh pass over the training set, but a private one: a copy of the training sampler drawing with its own
    generator seeded ``seed * 100003 + epoch`` (the same batches after a resume). It restores every random state it
    may touch (python, numpy, torch, the dataset's transforms), so a run paired by seed with FT sees the same
    training data order and augmentations. Under DistributedDataParallel the gradients are averaged over ranks
    before they are measured, so every rank computes the same learning rates.

    ``variant="mean_gradient"`` is medxfer's earlier behaviour: ``RGN_i = ||mean_b g_ib|| / ||theta_i||``,
    BatchNorm parameters in one group trained at ``base_lr`` with batch statistics (restored after the
    measurement); with ``head="rgn"`` it is that behaviour exactly, except that it too measures on the private pass
    (the earlier code drew from the training loader and so changed the training data order). In both, a tensor whose
    RGN is not finite keeps its previous lr.

    Args:
        n_batches: minibatches used for the measurement (>= 1; the reference uses 5).
        variant: ``"reference"`` or ``"mean_gradient"``.
        head: ``"base_lr"`` or ``"rgn"``.
        seed: seeds the measurement's sampler (a bundle passes its run seed).
    """

    def __init__(self, n_batches: int = 5, variant: str = "reference", head: str = "base_lr", seed: int = 0) -> None:
        if int(n_batches) < 1:
            raise ConfigError(f"AutoRGN n_batches must be >= 1, got {n_batches}")
        if variant not in VARIANTS:
            raise ConfigError(f"unknown AutoRGN variant {variant!r}; choose from: {', '.join(VARIANTS)}")
        if head not in HEAD_MODES:
            raise ConfigError(f"unknown AutoRGN head {head!r}; choose from: {', '.join(HEAD_MODES)}")
        self.n_batches, self.variant, self.head, self.seed = int(n_batches), variant, head, int(seed)
        self._names: list[str] = []
        self._base_lr = 0.0
        self.last_lrs: dict[str, float] = {}

    def param_groups(self, model: nn.Module, base_lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        inner = unwrap(model)
        layer_groups = self.groups(model)
        self.set_trainable(model, layer_groups, True)
        bn = _bn_parameter_names(inner)
        if self.variant == "reference":
            set_parameters_trainable(inner, bn, False)
            hold_batchnorm_statistics(inner)
        head = {n for n, _ in group_parameters(inner, layer_groups[-1])} if self.head == "base_lr" else set()
        params = dict(inner.named_parameters())
        tensors = [n for n in params if n not in bn]
        self._names = [n for n in tensors if n not in head]
        self._base_lr = base_lr
        groups = [{"name": n, "params": [params[n]], "lr": base_lr, "weight_decay": weight_decay} for n in tensors]
        if bn and self.variant == "mean_gradient":
            groups.append({"name": "batchnorm", "params": [params[n] for n in params if n in bn], "lr": base_lr,
                           "weight_decay": weight_decay})
        logger.info("Auto-RGN (%s): %d tensors with their own lr, %d head tensors at the base lr, %d BatchNorm "
                    "tensors %s", self.variant, len(self._names), len(tensors) - len(self._names), len(bn),
                    "frozen (statistics held)" if self.variant == "reference" else "at the base lr")
        return groups

    def extra_state(self) -> dict[str, Any]:
        return {"last_lrs": dict(self.last_lrs)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.last_lrs = {str(k): float(v) for k, v in state.get("last_lrs", {}).items()}

    def on_epoch_start(self, engine: Any) -> None:
        generator = torch.Generator().manual_seed(self.seed * _SEED_STRIDE + int(engine.state.epoch))
        statistic = "mean_ratio" if self.variant == "reference" else "ratio_of_mean"
        with _RandomStateGuard(getattr(engine.data_loader, "dataset", None)):
            batches = measurement_batches(engine.data_loader, self.n_batches, generator)
            rgn = relative_gradient_norms(engine, self._names, batches, statistic)
        finite = {n: r for n, r in rgn.items() if math.isfinite(r)}
        top = max(finite.values(), default=0.0)
        if top <= 0:
            logger.warning("Auto-RGN: no finite, non-zero gradient measured; learning rates unchanged")
            return
        self.last_lrs = {n: r / top * self._base_lr for n, r in finite.items()}
        set_group_lrs(engine.optimizer, self.last_lrs, self.lr_scheduler)
        engine.optimizer.state.clear()
        ranked = sorted(finite, key=finite.get, reverse=True)
        logger.info("Auto-RGN epoch %d: largest RGN %s, smallest %s", engine.state.epoch, ranked[:3], ranked[-3:])
