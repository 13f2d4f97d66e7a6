"""Statistics over an experiment grid's finished runs: mean, SD and t interval per configuration, rank, paired tests.

A *configuration* is (bundle, arch, stage1, stage2, strategy, training); its runs differ only by seed. Each
configuration is compared with the *baseline* configuration (same bundle, arch, stage1, stage2 and training mode,
strategy ``baseline``) over the seeds both ran: paired Student's t-test (two-sided) from 2 pairs, Wilcoxon
signed-rank test from 6 pairs. No correction for multiple comparisons is applied; the leaderboard says so, and it
withholds p-values computed from fewer than :data:`MIN_PAIRS_REPORTED` pairs (with 2-4 seeds a p-value says next
to nothing).

Ranks follow each metric's direction (:func:`lower_is_better`: HD95, RMSE, losses, errors rank ascending), and a t
interval of a bounded metric (AUC, Dice, IoU, accuracy, F1 ... in [0, 1]) is clipped to the metric's range, with
``ci_clipped`` set so the report can flag it (two seeds give t(0.975, 1) = 12.7 times SD / sqrt 2: an AUC interval
of [0.097, 1.014] was printed before).

Every function here is pure: rows in, dataclasses out.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from common.errors import DataError

__all__ = [
    "REQUIRED_COLUMNS",
    "Run",
    "PairedComparison",
    "ConfigSummary",
    "parse_runs",
    "mean_std_ci",
    "paired_comparison",
    "rank_descending",
    "rank_by",
    "lower_is_better",
    "metric_range",
    "median_run",
    "summarise",
]

REQUIRED_COLUMNS = ("cell", "bundle", "arch", "stage1", "stage2", "strategy", "seed", "metric", "value", "seconds",
                  "eval_dir")
# Paired differences closer than this are one value: 0.74 - 0.72 and 0.72 - 0.70 differ in the last bit only.
_DIFF_DECIMALS = 12
MIN_PAIRS_TTEST = 2
MIN_PAIRS_WILCOXON = 6
#: below this many paired seeds the leaderboard shows no p-value (it says why instead)
MIN_PAIRS_REPORTED = 5
# Metric names by their parts (``test_mean_auc`` -> ``auc``): what is bounded to [0, 1], what ranks lower-first.
_UNIT_INTERVAL = ("auc", "dice", "iou", "accuracy", "f1", "precision", "recall", "sensitivity", "specificity",
                  "hit_rate", "pointing")
_LOWER_BETTER = ("hd95", "hausdorff", "rmse", "mse", "mae", "loss", "error", "seconds")
_NON_NEGATIVE = ("hd95", "hausdorff", "rmse", "mse", "mae", "seconds")


def _parts(metric: str) -> set[str]:
    parts = metric.lower().replace("-", "_").split("_")
    return set(parts) | {"_".join(parts[i:i + 2]) for i in range(len(parts) - 1)}


def lower_is_better(metric: str) -> bool:
    """Whether a smaller ``metric`` is better (HD95, RMSE, losses, errors, times); AUC, Dice, etc. are not.

    Example:
        >>> lower_is_better("mean_hd95"), lower_is_better("mean_auc")
        (True, False)
    """
    return bool(_parts(metric) & set(_LOWER_BETTER))


def metric_range(metric: str) -> tuple[float, float] | None:
    """The values ``metric`` can take: ``(0, 1)`` for AUC/Dice/IoU/accuracy-like, ``(0, inf)`` for distances and
    errors, ``None`` when unknown (no clipping).

    Example:
        >>> metric_range("mean_dice"), metric_range("mean_hd95"), metric_range("kappa")
        ((0.0, 1.0), (0.0, inf), None)
    """
    parts = _parts(metric)
    if parts & set(_UNIT_INTERVAL):
        return (0.0, 1.0)
    if parts & set(_NON_NEGATIVE):
        return (0.0, math.inf)
    return None


@dataclass(frozen=True)
class Run:
    """One finished run, i.e. one row of ``results.csv`` with typed values."""

    cell: str
    bundle: str
    arch: str
    stage1: str
    stage2: str
    strategy: str
    seed: int
    metric: str
    value: float
    seconds: float
    eval_dir: Path
    modality: str = ""
    training: str = "local"


@dataclass(frozen=True)
class PairedComparison:
    """A configuration against its baseline over the seeds both ran; ``difference = value - baseline value``.

    ``p_ttest`` is ``None`` below 2 pairs or when every difference is the same non-zero number (zero variance: the
    t statistic is undefined; ``note`` says so); it is 1.0 when every difference is 0. ``p_wilcoxon`` needs 6 pairs.
    ``diff_ci_low`` / ``diff_ci_high`` bound the 95% Student's t interval of the mean difference (from 2 pairs; a
    point when every difference is equal); it excludes 0 exactly when the two-sided paired t-test gives p < 0.05.
    """

    n_pairs: int
    mean_diff: float | None
    p_ttest: float | None
    p_wilcoxon: float | None
    note: str = ""
    diff_ci_low: float | None = None
    diff_ci_high: float | None = None


@dataclass(frozen=True)
class ConfigSummary:
    """Summary of one configuration's runs on one metric, as :func:`summarise` returns it.

    ``std`` is the sample SD (ddof=1), ``None`` for one run; ``ci_low`` / ``ci_high`` bound the 95% Student's t
    interval of the mean, ``None`` for one run, clipped to :func:`metric_range` (``ci_clipped`` then ``True``).
    ``rank`` is 1 for the best mean within (bundle, metric) in the metric's direction; equal means
    share the lowest rank. ``baseline`` names the strategy compared against, ``None`` for the baseline itself or
    when its group has no baseline configuration (then every comparison field is ``None`` too). ``diff_ci_low`` /
    ``diff_ci_high``: the 95% t interval of ``mean_diff`` (see :class:`PairedComparison`). ``modality`` labels the
    bundle (task) the runs belong to (results' ``modality`` column; the bundle name when absent). ``training`` is the
    runs' training mode (``local``, ``pooled``, ``federated``, ``local-<site>``): the baseline is always of the same
    mode, so a federated strategy is never paired with a local one.
    """

    bundle: str
    arch: str
    stage1: str
    stage2: str
    strategy: str
    metric: str
    runs: tuple[Run, ...] = field(repr=False)
    n: int
    mean: float
    std: float | None
    ci_low: float | None
    ci_high: float | None
    mean_seconds: float
    rank: int = 0
    baseline: str | None = None
    n_pairs: int | None = None
    mean_diff: float | None = None
    p_ttest: float | None = None
    p_wilcoxon: float | None = None
    comparison_note: str = ""
    ci_clipped: bool = False
    diff_ci_low: float | None = None
    diff_ci_high: float | None = None
    modality: str = ""
    training: str = "local"

    @property
    def configuration(self) -> tuple[str, str, str, str, str, str]:
        """(bundle, arch, stage1, stage2, strategy, training)."""
        return (self.bundle, self.arch, self.stage1, self.stage2, self.strategy, self.training)

    @property
    def label(self) -> str:
        """Short name within a bundle: ``arch / stage1 / stage2 / strategy`` (``/ training`` unless ``local``)."""
        mode = "" if self.training == "local" else f" / {self.training}"
        return f"{self.arch} / {self.stage1} / {self.stage2} / {self.strategy}{mode}"

    @property
    def seeds(self) -> tuple[int, ...]:
        """Seeds of the runs, ascending."""
        return tuple(run.seed for run in self.runs)


def _typed(row: Mapping[str, Any], index: int, key: str, kind: type) -> Any:
    cell = row.get("cell") or f"row {index}"
    raw = row[key]
    try:
        if kind is int:
            number = float(raw)
            if not number.is_integer():
                raise ValueError(raw)
            return int(number)
        value = float(raw)
    except (TypeError, ValueError) as error:
        raise DataError(f"results cell {cell!r}: {key} must be {kind.__name__}; found {raw!r}") from error
    if not math.isfinite(value):
        raise DataError(f"results cell {cell!r}: {key} must be a finite number; found {raw!r}")
    return value


def parse_runs(rows: Iterable[Mapping[str, Any]]) -> list[Run]:
    """Type-check ``results.csv`` rows (strings) into :class:`Run` objects.

    The optional ``modality`` column labels each row's bundle (task); empty or absent, the bundle name stands in.
    The optional ``training`` column is the run's training mode; empty or absent, ``local``.

    Raises:
        DataError: a column is missing, ``seed`` is not an integer, ``value`` / ``seconds`` are not finite, two
            rows share a cell id or a (configuration, seed), or one bundle has two modalities; the message names
            the cell(s).

    Example:
        >>> parse_runs([{"cell": "c0", "bundle": "chest", "arch": "densenet121", "stage1": "imagenet",
        ...              "stage2": "none", "strategy": "ft", "seed": "0", "metric": "mean_auc", "value": "0.8",
        ...              "seconds": "12.5", "eval_dir": "runs/c0/eval"}])[0].value
        0.8
    """
    runs: list[Run] = []
    cells: dict[str, int] = {}
    seen: dict[tuple, str] = {}
    modalities: dict[str, tuple[str, str]] = {}
    for index, row in enumerate(rows):
        missing = [key for key in REQUIRED_COLUMNS if key not in row]
        if missing:
            raise DataError(f"results row {index} (cell {row.get('cell')!r}) lacks {missing}; "
                            f"expected columns: {', '.join(REQUIRED_COLUMNS)}")
        cell = str(row["cell"]).strip()
        if cell in cells:
            raise DataError(f"results cell {cell!r} appears twice (rows {cells[cell]} and {index})")
        cells[cell] = index
        text = {key: str(row[key]).strip() for key in ("bundle", "arch", "stage1", "stage2", "strategy", "metric")}
        run = Run(cell=cell, bundle=text["bundle"], arch=text["arch"], stage1=text["stage1"], stage2=text["stage2"],
                  strategy=text["strategy"], seed=_typed(row, index, "seed", int), metric=text["metric"],
                  value=_typed(row, index, "value", float), seconds=_typed(row, index, "seconds", float),
                  eval_dir=Path(str(row["eval_dir"]).strip()),
                  modality=str(row.get("modality") or "").strip() or text["bundle"],
                  training=str(row.get("training") or "").strip() or "local")
        known = modalities.setdefault(run.bundle, (run.modality, run.cell))
        if known[0] != run.modality:
            raise DataError(f"results cells {known[1]!r} and {run.cell!r} give bundle {run.bundle!r} two modalities: "
                            f"{known[0]!r} and {run.modality!r}; a bundle (task) has one")
        key = (run.bundle, run.arch, run.stage1, run.stage2, run.strategy, run.training, run.seed)
        if key in seen:
            shown = key[:5] if run.training == "local" else key[:6]
            raise DataError(f"results cells {seen[key]!r} and {run.cell!r} are the same configuration and seed "
                            f"{run.seed}: {shown}; keep one row per seed")
        seen[key] = run.cell
        runs.append(run)
    return runs


def mean_std_ci(
    values: Sequence[float], confidence: float = 0.95
) -> tuple[float, float | None, tuple[float, float] | None]:
    """Mean, sample SD (ddof=1) and Student's t confidence interval ``(low, high)`` of the mean.

    SD and interval are ``None`` for a single value.

    Example:
        >>> mean, sd, (low, high) = mean_std_ci([0.70, 0.72, 0.74])  # half-width t(0.975, 2) * 0.02 / sqrt(3)
        >>> round(mean, 4), round(sd, 4), round(high - mean, 4)
        (0.72, 0.02, 0.0497)
    """
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise DataError("mean_std_ci needs at least one value; found none")
    mean = math.fsum(data) / data.size
    if data.size < 2:
        return mean, None, None
    std = float(np.std(data, ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, data.size - 1)) * std / math.sqrt(data.size)
    return mean, std, (mean - half, mean + half)


def paired_comparison(values: Mapping[int, float], baseline: Mapping[int, float]) -> PairedComparison:
    """Compare two configurations over the seeds both ran (``values[seed] - baseline[seed]``).

    Differences are rounded to 12 decimals first so float noise neither breaks ties nor fakes a tiny variance.

    Example:
        >>> paired_comparison({0: 0.75, 1: 0.80}, {0: 0.70, 1: 0.72, 2: 0.71}).n_pairs
        2
    """
    seeds = sorted(set(values) & set(baseline))
    unpaired = sorted(set(values) ^ set(baseline))
    notes = [f"seeds without a pair: {', '.join(map(str, unpaired))}"] if unpaired else []
    if not seeds:
        return PairedComparison(0, None, None, None, "; ".join(["no seed in common with the baseline", *notes]))
    mine = np.array([values[s] for s in seeds], dtype=float)
    theirs = np.array([baseline[s] for s in seeds], dtype=float)
    diffs = np.round(mine - theirs, _DIFF_DECIMALS)
    mean_diff = math.fsum(diffs) / diffs.size
    p_ttest = p_wilcoxon = None
    all_zero = bool(np.all(diffs == 0))
    interval = mean_std_ci(diffs.tolist())[2] if diffs.size >= MIN_PAIRS_TTEST else None
    if diffs.size >= MIN_PAIRS_TTEST:
        if all_zero:
            p_ttest = 1.0
        elif np.all(diffs == diffs[0]):
            notes.append(f"every paired difference is {diffs[0]:+g}: zero variance, t-test undefined")
        else:
            p_ttest = float(stats.ttest_rel(mine, theirs).pvalue)
    if diffs.size >= MIN_PAIRS_WILCOXON:
        p_wilcoxon = 1.0 if all_zero else float(stats.wilcoxon(diffs).pvalue)
    return PairedComparison(len(seeds), mean_diff, p_ttest, p_wilcoxon, "; ".join(notes),
                            None if interval is None else interval[0], None if interval is None else interval[1])


def rank_descending(means: Sequence[float]) -> list[int]:
    """Ranks, 1 = highest; equal means (to 1e-12) share the lowest rank ("min" method: 1, 1, 3).

    Example:
        >>> rank_descending([0.7, 0.8, 0.8])
        [3, 1, 1]
    """
    order = sorted(range(len(means)), key=lambda i: -means[i])
    ranks = [0] * len(means)
    for position, i in enumerate(order):
        previous = order[position - 1]
        tied = position > 0 and math.isclose(means[i], means[previous], rel_tol=1e-12, abs_tol=1e-12)
        ranks[i] = ranks[previous] if tied else position + 1
    return ranks


def rank_by(means: Sequence[float], higher_is_better: bool = True) -> list[int]:
    """Ranks, 1 = best in the given direction; ties share the better rank (see :func:`rank_descending`).

    Example:
        >>> rank_by([3.0, 1.0, 2.0], higher_is_better=False)
        [3, 1, 2]
    """
    return rank_descending(list(means) if higher_is_better else [-m for m in means])


def median_run(runs: Sequence[Run]) -> Run:
    """The run whose value is the median; for an even count the lower of the two middle ones (ties: lower seed).

    Example:
        >>> median_run(summary.runs).eval_dir  # doctest: +SKIP
    """
    if not runs:
        raise DataError("median_run needs at least one run; found none")
    ordered = sorted(runs, key=lambda run: (run.value, run.seed))
    return ordered[(len(ordered) - 1) // 2]


def _describe(runs: list[Run]) -> ConfigSummary:
    first = runs[0]
    mean, std, ci = mean_std_ci([run.value for run in runs])
    clipped = False
    bounds = metric_range(first.metric)
    if ci is not None and bounds is not None:
        low, high = max(ci[0], bounds[0]), min(ci[1], bounds[1])
        clipped = (low, high) != ci
        ci = (low, high)
    return ConfigSummary(
        bundle=first.bundle, arch=first.arch, stage1=first.stage1, stage2=first.stage2, strategy=first.strategy,
        metric=first.metric, runs=tuple(runs), n=len(runs), mean=mean, std=std,
        ci_low=None if ci is None else ci[0], ci_high=None if ci is None else ci[1],
        mean_seconds=math.fsum(run.seconds for run in runs) / len(runs), ci_clipped=clipped, modality=first.modality,
        training=first.training,
    )


def _with_comparison(summary: ConfigSummary, base: ConfigSummary | None, baseline: str) -> ConfigSummary:
    if base is None or summary.strategy == baseline:
        return summary
    result = paired_comparison({r.seed: r.value for r in summary.runs}, {r.seed: r.value for r in base.runs})
    return replace(summary, baseline=baseline, n_pairs=result.n_pairs, mean_diff=result.mean_diff,
                   p_ttest=result.p_ttest, p_wilcoxon=result.p_wilcoxon, comparison_note=result.note,
                   diff_ci_low=result.diff_ci_low, diff_ci_high=result.diff_ci_high)


def summarise(rows: Iterable[Mapping[str, Any]], baseline: str = "ft") -> list[ConfigSummary]:
    """One :class:`ConfigSummary` per (configuration, metric), sorted by bundle, metric and rank.

    Args:
        rows: ``results.csv`` rows (``csv.DictReader`` dicts; strings are converted), one per finished run, with
            the columns in :data:`REQUIRED_COLUMNS`. Extra columns are ignored.
        baseline: the strategy every other strategy of the same (bundle, arch, stage1, stage2, training) is compared
            with. Configurations of every training mode share one ranking per (bundle, metric).

    Raises:
        DataError: see :func:`parse_runs`.

    Example:
        >>> with open("results.csv", newline="") as handle:  # doctest: +SKIP
        ...     best = summarise(csv.DictReader(handle))[0]
    """
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for run in parse_runs(rows):
        groups[(run.bundle, run.metric, run.arch, run.stage1, run.stage2, run.strategy, run.training)].append(run)
    described = {key: _describe(sorted(runs, key=lambda r: r.seed)) for key, runs in groups.items()}
    by_board: dict[tuple[str, str], list[tuple]] = defaultdict(list)
    for key in described:
        by_board[key[:2]].append(key)
    summaries: list[ConfigSummary] = []
    for (_, metric), keys in by_board.items():
        ranks = rank_by([described[key].mean for key in keys], higher_is_better=not lower_is_better(metric))
        for key, rank in zip(keys, ranks, strict=True):
            base = described.get((*key[:5], baseline, key[6]))
            summaries.append(_with_comparison(replace(described[key], rank=rank), base, baseline))
    return sorted(summaries, key=lambda s: (s.bundle, s.metric, s.rank, s.arch, s.stage1, s.stage2, s.strategy,
                                            s.training))
