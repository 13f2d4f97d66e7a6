"""Strategies against the baseline across cases: the strategy study's headline table, computed from the results.

A *case* is one (bundle, arch, stage1, stage2, training mode) group of a metric, labelled by its bundle's modality:
in the modality study (``configs/grids/d_modalities.yaml``, one task per modality) a case is one (modality,
architecture).
In each case every strategy is compared with the baseline (``ft``) over the seeds both ran
(:func:`common.experiments.stats.paired_comparison`: mean paired difference, its 95% Student's t interval, the
two-sided paired t-test). The strategy *beats* the baseline in a case when the difference is significant
(p < ``alpha``, i.e. the interval excludes 0) in the metric's better direction; it *loses* when significant the
other way. A case is *judged* only from ``min_pairs`` paired seeds on (the leaderboard's rule for showing a
p-value) and when the t-test is defined; the share of cases a strategy beats the baseline in is counted over the
judged cases. No correction for multiple comparisons is applied.

Files: ``strategy_cases.csv`` (one row per case and strategy) and ``strategy_shares.csv`` (one row per metric and
strategy), next to ``leaderboard.md``, whose section "Strategies vs <baseline> across cases" shows both.

Example:
    >>> cases = strategy_cases(summarise(rows))  # doctest: +SKIP
    >>> [(s.strategy, s.better, s.judged) for s in strategy_shares(cases)]  # doctest: +SKIP
    [('lp_ft', 9, 15), ...]
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from common.experiments.stats import MIN_PAIRS_REPORTED, ConfigSummary, lower_is_better
from common.metrics.formatting import NA

__all__ = ["BETTER", "WORSE", "NO_DIFFERENCE", "NOT_JUDGED", "StrategyCase", "StrategyShare", "format_strategy_section",
           "strategy_cases", "strategy_cases_csv", "strategy_shares", "strategy_shares_csv"]

BETTER, WORSE, NO_DIFFERENCE, NOT_JUDGED = "better", "worse", "no difference", "not judged"
_MARK = {BETTER: " ▲", WORSE: " ▼", NO_DIFFERENCE: "", NOT_JUDGED: ""}


@dataclass(frozen=True)
class StrategyCase:
    """One strategy against the baseline in one case (``verdict``: better / worse / no difference / not judged)."""

    metric: str
    modality: str
    bundle: str
    arch: str
    stage1: str
    stage2: str
    strategy: str
    baseline: str
    n_pairs: int
    mean_diff: float | None
    ci_low: float | None
    ci_high: float | None
    p_ttest: float | None
    verdict: str
    training: str = "local"


@dataclass(frozen=True)
class StrategyShare:
    """How often one strategy beat (or lost to) the baseline over the cases of a metric.

    ``share_better`` = ``better / judged`` (``None`` with no judged case); ``mean_diff`` is the mean over cases of
    the per-case mean difference (cases with a difference), ``by_arch`` / ``by_modality`` map a name to
    ``(better, judged)`` over that architecture's / modality's cases.
    """

    metric: str
    strategy: str
    baseline: str
    cases: int
    judged: int
    better: int
    worse: int
    share_better: float | None
    share_worse: float | None
    mean_diff: float | None
    by_arch: dict[str, tuple[int, int]]
    by_modality: dict[str, tuple[int, int]]


def _verdict(s: ConfigSummary, alpha: float, min_pairs: int) -> str:
    if s.n_pairs is None or s.n_pairs < min_pairs or s.p_ttest is None or s.mean_diff is None:
        return NOT_JUDGED
    if s.p_ttest >= alpha or s.mean_diff == 0:
        return NO_DIFFERENCE
    return BETTER if (s.mean_diff < 0) == lower_is_better(s.metric) else WORSE


def strategy_cases(summaries: Sequence[ConfigSummary], alpha: float = 0.05,
                   min_pairs: int = MIN_PAIRS_REPORTED) -> list[StrategyCase]:  # fmt: skip
    """Every configuration compared with its baseline, as a :class:`StrategyCase`, in the summaries' order.

    Args:
        summaries: output of :func:`common.experiments.stats.summarise` (comparisons already made).
        alpha: significance level of the two-sided paired t-test.
        min_pairs: fewest paired seeds a case is judged from.
    """
    return [StrategyCase(s.metric, s.modality or s.bundle, s.bundle, s.arch, s.stage1, s.stage2, s.strategy,
                         s.baseline, s.n_pairs or 0, s.mean_diff, s.diff_ci_low, s.diff_ci_high, s.p_ttest,
                         _verdict(s, alpha, min_pairs), s.training)
            for s in summaries if s.baseline is not None]


def _tally(cases: Sequence[StrategyCase], key: str) -> dict[str, tuple[int, int]]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for case in cases:
        entry = counts[getattr(case, key)]
        entry[0] += case.verdict == BETTER
        entry[1] += case.verdict != NOT_JUDGED
    return {name: (better, judged) for name, (better, judged) in sorted(counts.items())}


def strategy_shares(cases: Sequence[StrategyCase]) -> list[StrategyShare]:
    """Per (metric, strategy): cases, judged cases, wins, losses and shares; sorted by metric, share better (high
    first), losses (few first), mean difference (high first), name."""
    groups: dict[tuple[str, str], list[StrategyCase]] = defaultdict(list)
    for case in cases:
        groups[case.metric, case.strategy].append(case)
    shares = []
    for (metric, strategy), group in groups.items():
        judged = sum(c.verdict != NOT_JUDGED for c in group)
        better = sum(c.verdict == BETTER for c in group)
        worse = sum(c.verdict == WORSE for c in group)
        diffs = [c.mean_diff for c in group if c.mean_diff is not None]
        shares.append(StrategyShare(
            metric, strategy, group[0].baseline, len(group), judged, better, worse,
            better / judged if judged else None, worse / judged if judged else None,
            sum(diffs) / len(diffs) if diffs else None, _tally(group, "arch"), _tally(group, "modality")))
    return sorted(shares, key=lambda s: (s.metric, -(s.share_better or 0.0), s.worse, -(s.mean_diff or 0.0),
                                         s.strategy))


def _num(value: float | None, sign: bool = True) -> str:
    return NA if value is None else f"{value:{'+' if sign else ''}.4f}"


def _ratio(counts: tuple[int, int]) -> str:
    return f"{counts[0]}/{counts[1]}" if counts[1] else NA


def _case_label(case: StrategyCase, show_task: bool, show_stages: bool, show_training: bool) -> list[str]:
    return [case.modality, *([case.bundle] if show_task else []), case.arch,
            *([case.stage1, case.stage2] if show_stages else []), *([case.training] if show_training else [])]


def _cases_table(cases: Sequence[StrategyCase], strategies: list[str]) -> list[str]:
    show_task = any(c.bundle != c.modality for c in cases)
    show_stages = len({(c.stage1, c.stage2) for c in cases}) > 1
    show_training = {c.training for c in cases} != {"local"}
    head = ["Modality", *(["Task"] if show_task else []), "Arch", *(["Stage 1", "Stage 2"] if show_stages else []),
            *(["Training"] if show_training else []), *strategies]
    rows: dict[tuple, dict[str, StrategyCase]] = defaultdict(dict)
    for case in cases:
        rows[(case.modality, case.bundle, case.arch, case.stage1, case.stage2, case.training)][case.strategy] = case
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for _, by_strategy in sorted(rows.items()):
        first = next(iter(by_strategy.values()))
        cells = []
        for strategy in strategies:
            case = by_strategy.get(strategy)
            if case is None:
                cells.append("")
                continue
            ci = "" if case.ci_low is None else f" [{_num(case.ci_low)}, {_num(case.ci_high)}]"
            cells.append(f"{_num(case.mean_diff)}{ci}{_MARK[case.verdict]}")
        lines.append("| " + " | ".join([*_case_label(first, show_task, show_stages, show_training), *cells]) + " |")
    return lines


def _shares_table(shares: Sequence[StrategyShare]) -> list[str]:
    archs = sorted({a for s in shares for a in s.by_arch})
    modalities = sorted({m for s in shares for m in s.by_modality})
    head = ["Strategy", "Cases", "Judged", "Better", "Worse", "Share better", "Mean Δ", *archs, *modalities]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "|".join("---:" for _ in head[1:]) + "|"]
    for s in shares:
        share = NA if s.share_better is None else f"{100 * s.share_better:.0f}%"
        lines.append("| " + " | ".join([s.strategy, str(s.cases), str(s.judged), str(s.better), str(s.worse), share,
                                        _num(s.mean_diff), *(_ratio(s.by_arch.get(a, (0, 0))) for a in archs),
                                        *(_ratio(s.by_modality.get(m, (0, 0))) for m in modalities)]) + " |")
    return lines


def format_strategy_section(cases: Sequence[StrategyCase], alpha: float = 0.05,
                            min_pairs: int = MIN_PAIRS_REPORTED) -> list[str]:  # fmt: skip
    """Markdown lines of the section "Strategies vs <baseline> across cases" (empty without comparisons)."""
    if not cases:
        return []
    baseline = cases[0].baseline
    lines = [f"## Strategies vs {baseline} across cases", ""]
    for metric in dict.fromkeys(c.metric for c in cases):
        mine = [c for c in cases if c.metric == metric]
        shares = strategy_shares(mine)
        strategies = [s.strategy for s in shares]
        lines += [f"### {metric}: share of cases each strategy beats {baseline} in", "",
                  *_shares_table(shares), "",
                  f"### {metric}: Δ vs {baseline} [95% CI] per case", "", *_cases_table(mine, strategies), ""]
    mode = " and training mode" if {c.training for c in cases} != {"local"} else ""
    lines += [
        f"- A case is one bundle (task), architecture, stage-1 and stage-2 source{mode}, labelled by its modality. "
        f"Δ: mean over seeds of (strategy − {baseline}), paired by seed; [95% CI]: Student's t interval of that mean. "
        f"▲ / ▼: better / worse than {baseline}, two-sided paired t-test p < {alpha:g} (the interval excludes 0), "
        f"in the metric's direction.",
        f"- Judged: cases with at least {min_pairs} paired seeds and a defined t-test; share better = better / "
        f"judged; the architecture and modality columns give better / judged of their cases. Mean Δ: mean of the "
        f"cases' Δ. No correction for multiple comparisons. Also in strategy_shares.csv and strategy_cases.csv.",
        "",
    ]
    return lines


def _csv(rows: list[dict[str, object]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row[k] is None else (repr(row[k]) if isinstance(row[k], float) else row[k])
                         for k in columns})
    return buffer.getvalue()


def strategy_cases_csv(cases: Sequence[StrategyCase]) -> str:
    """``strategy_cases.csv``: the :class:`StrategyCase` fields, one row per case and strategy (empty = n/a)."""
    return _csv([asdict(c) for c in cases], list(StrategyCase.__dataclass_fields__))


def strategy_shares_csv(shares: Sequence[StrategyShare]) -> str:
    """``strategy_shares.csv``: one row per metric and strategy; ``by_arch`` / ``by_modality`` as
    ``name=better/judged`` joined by ``;``."""
    columns = list(StrategyShare.__dataclass_fields__)
    rows = [{**asdict(s), "by_arch": ";".join(f"{k}={v[0]}/{v[1]}" for k, v in s.by_arch.items()),
             "by_modality": ";".join(f"{k}={v[0]}/{v[1]}" for k, v in s.by_modality.items())} for s in shares]
    return _csv(rows, columns)
