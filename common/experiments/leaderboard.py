"""The grid's leaderboard: ``leaderboard.md`` / ``.csv`` ranking every configuration, and two figures.

Written into the run folder next to ``results.csv``; every file is replaced atomically, the Markdown last (it
names the figures). Statistics come from :mod:`common.experiments.stats`.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from common.errors import DataError
from common.experiments.leaderboard_plots import Board, RocCurve, micro_roc, plot_leaderboard, plot_roc_best
from common.experiments.leaderboard_strategies import (
    format_strategy_section,
    strategy_cases,
    strategy_cases_csv,
    strategy_shares,
    strategy_shares_csv,
)
from common.experiments.stats import (
    MIN_PAIRS_REPORTED,
    MIN_PAIRS_WILCOXON,
    ConfigSummary,
    lower_is_better,
    median_run,
    metric_range,
    summarise,
)
from common.io import atomic_write_text
from common.metrics.formatting import NA
from common.metrics.report import PREDICTIONS_FILE, load_predictions

__all__ = ["CSV_COLUMNS", "format_board_table", "format_leaderboard", "leaderboard_csv", "write_leaderboard"]

logger = logging.getLogger(__name__)

CSV_COLUMNS = ("bundle", "metric", "rank", "arch", "stage1", "stage2", "strategy", "n", "seeds", "mean", "std",
               "ci_low", "ci_high", "mean_seconds", "baseline", "n_pairs", "mean_diff", "p_ttest", "p_wilcoxon",
               "note", "diff_ci_low", "diff_ci_high", "modality", "training")


def _num(value: float | None, digits: int = 4, sign: bool = False) -> str:
    return NA if value is None else f"{value:{'+' if sign else ''}.{digits}f}"


def _p(value: float | None) -> str:
    if value is None:
        return NA
    return f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _comparison(summary: ConfigSummary, baseline: str) -> list[str]:
    """Δ, pairs, t p-value and Wilcoxon p-value cells."""
    if summary.strategy == baseline:
        return ["baseline", "", "", ""]
    if summary.baseline is None:
        return [f"{NA} (no {baseline})", "", "", ""]
    if summary.n_pairs is not None and 2 <= summary.n_pairs < MIN_PAIRS_REPORTED:
        withheld = f"{NA} (< {MIN_PAIRS_REPORTED} pairs)"
        return [_num(summary.mean_diff, sign=True), str(summary.n_pairs), withheld, _p(summary.p_wilcoxon)]
    return [_num(summary.mean_diff, sign=True), str(summary.n_pairs), _p(summary.p_ttest), _p(summary.p_wilcoxon)]


def format_board_table(summaries: Sequence[ConfigSummary], baseline: str = "ft") -> str:
    """Markdown table of one (bundle, metric), rows in the order given (rank order from :func:`summarise`).

    The Wilcoxon column appears only when some configuration has 6 or more seeds paired with the baseline; the
    Training column only when some configuration is not ``local`` (federated, pooled, one site alone).

    Example:
        >>> print(format_board_table(summarise(rows)))  # doctest: +SKIP
    """
    wilcoxon = any(s.p_wilcoxon is not None for s in summaries)
    training = _shows_training(summaries)
    head = ["Rank", "Arch", "Stage 1", "Stage 2", "Strategy", *(["Training"] if training else []), "n", "Mean ± SD",
            "95% CI", f"Δ vs {baseline}", "Pairs", "p (paired t)", *(["p (Wilcoxon)"] if wilcoxon else []),
            "Mean time"]
    align = ["---:", "---", "---", "---", "---", *(["---"] if training else []), "---:", "---:", "---:", "---:",
             "---:", "---:", *(["---:"] if wilcoxon else []), "---:"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for s in summaries:
        spread = _num(s.mean) if s.std is None else f"{_num(s.mean)} ± {_num(s.std)}"
        ci = NA if s.ci_low is None or s.ci_high is None else f"[{_num(s.ci_low)}, {_num(s.ci_high)}]"
        ci += "*" if s.ci_clipped else ""
        delta, pairs, p_t, p_w = _comparison(s, baseline)
        cells = [str(s.rank), *map(_cell, (s.arch, s.stage1, s.stage2, s.strategy)),
                 *([_cell(s.training)] if training else []), str(s.n), spread, ci, delta, pairs, p_t,
                 *([p_w] if wilcoxon else []), _duration(s.mean_seconds)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _shows_training(summaries: Iterable[ConfigSummary]) -> bool:
    """Whether the training mode is worth a column: some run was not trained ``local`` on one dataset."""
    return {s.training for s in summaries} != {"local"}


def _boards(summaries: Iterable[ConfigSummary]) -> dict[Board, list[ConfigSummary]]:
    boards: dict[Board, list[ConfigSummary]] = defaultdict(list)
    for summary in summaries:
        boards[summary.bundle, summary.metric].append(summary)
    return dict(boards)


def _direction(metrics: Iterable[str]) -> str:
    lower = sorted({m for m in metrics if lower_is_better(m)})
    if not lower:
        return "higher is better"
    return f"higher is better, lower for {', '.join(lower)}"


def _statistics_notes(summaries: Sequence[ConfigSummary], baseline: str) -> list[str]:
    wilcoxon = any(s.p_wilcoxon is not None for s in summaries)
    tests = "two-sided paired Student's t-test" + (" and Wilcoxon signed-rank test (from 6 pairs)" if wilcoxon else "")
    notes = [
        "- Mean ± SD over seeds (sample SD, n − 1); 95% CI = mean ± t(0.975, n − 1) · SD / √n (Student's t). "
        f"Rank within each bundle and metric by mean, {_direction(s.metric for s in summaries)}; equal means share "
        "the better rank.",
        f"- Δ vs {baseline}: mean over seeds of (configuration − {baseline}), each configuration paired by seed with "
        f"the `{baseline}` run of the same bundle, architecture, stage-1 and stage-2 source"
        f"{' and training mode (never across modes)' if _shows_training(summaries) else ''}. p: {tests}, shown from "
        f"{MIN_PAIRS_REPORTED} paired seeds on. **No correction for multiple comparisons**: with many "
        "configurations, some p < 0.05 are expected by chance alone.",
    ]
    if any(s.n_pairs is not None and 2 <= s.n_pairs < MIN_PAIRS_REPORTED for s in summaries):
        notes.append(f"- n/a (< {MIN_PAIRS_REPORTED} pairs): with fewer paired seeds a p-value is not meaningful "
                     f"(it swings with one run), so none is shown; run at least {MIN_PAIRS_REPORTED} seeds "
                     f"({MIN_PAIRS_WILCOXON} for the Wilcoxon test). The Δ column still shows the mean difference.")
    clipped = sorted({s.metric for s in summaries if s.ci_clipped})
    if clipped:
        ranges = ", ".join(f"{m} to [{metric_range(m)[0]:g}, {metric_range(m)[1]:g}]" for m in clipped)  # type: ignore[index]
        notes.append(f"- *: the t interval left the metric's range and is clipped ({ranges}); with few seeds the "
                     "t interval is wide and symmetric, which a bounded metric cannot be.")
    if any(s.n < 2 or (s.n_pairs is not None and s.n_pairs < 2) for s in summaries):
        notes.append("- n/a: with fewer than 2 seeds (or 2 paired seeds) there is no SD, CI or p-value; "
                     "run at least 2 seeds (6 for the Wilcoxon test).")
    if any(s.strategy != baseline and s.baseline is None for s in summaries):
        notes.append(f"- n/a (no {baseline}): the configuration's group has no `{baseline}` run to compare with.")
    for s in summaries:
        if s.comparison_note:
            notes.append(f"- {s.bundle} · {s.metric} · {_cell(s.label)}: {s.comparison_note}.")
    return notes


def format_leaderboard(
    summaries: Sequence[ConfigSummary], title: str, baseline: str = "ft", roc_lines: Sequence[str] = ()
) -> str:
    """The whole ``leaderboard.md``: one table per (bundle, metric), the strategies against the baseline across
    cases (:mod:`~common.experiments.leaderboard_strategies`), the statistics notes and the figures.

    Args:
        summaries: output of :func:`summarise`.
        title: top heading.
        baseline: the strategy the Δ and p-values refer to.
        roc_lines: the ROC section's lines (figure link, or why there is none), from :func:`write_leaderboard`.
    """
    n_runs = sum(s.n for s in summaries)
    bundles = sorted({s.bundle for s in summaries})
    lines = [f"# {title}", "", f"{n_runs} finished runs of {len(summaries)} configurations on {len(bundles)} "
             f"bundle(s) ({', '.join(bundles)}). Baseline strategy: `{baseline}`.", ""]
    for (bundle, metric), board in _boards(summaries).items():
        lines += [f"## {bundle} · {metric}", "", format_board_table(board, baseline), ""]
    lines += format_strategy_section(strategy_cases(summaries))
    lines += ["## Statistics", "", *_statistics_notes(summaries, baseline), "",
              "## Figures", "", "![Mean and 95% CI per configuration](leaderboard.png)", "", *roc_lines, ""]
    return "\n".join(lines)


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def leaderboard_csv(summaries: Sequence[ConfigSummary]) -> str:
    """The summary table as CSV text (:data:`CSV_COLUMNS`; empty cell = not available; seeds ``;``-separated)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in summaries:
        values = {**{column: getattr(s, column, None) for column in CSV_COLUMNS},
                  "seeds": ";".join(map(str, s.seeds)), "note": s.comparison_note}
        writer.writerow([_csv_value(values[column]) for column in CSV_COLUMNS])
    return buffer.getvalue()


def _roc_curves(
    boards: Mapping[Board, Sequence[ConfigSummary]], top_k: int, root: Path
) -> tuple[dict[Board, list[RocCurve]], list[str]]:
    """Curves of the top ``top_k`` configurations per board (median-seed run each), and what was left out."""
    curves: dict[Board, list[RocCurve]] = {}
    missing: list[str] = []
    for board, summaries in boards.items():
        found: list[RocCurve] = []
        absent: list[str] = []
        for s in summaries[:top_k]:
            run = median_run(s.runs)
            file = (root / run.eval_dir) / PREDICTIONS_FILE
            if not file.is_file():
                absent.append(f"{s.label} ({run.cell})")
                continue
            try:
                fpr, tpr, auc = micro_roc(*load_predictions(file)[:2])
            except DataError as error:
                logger.warning("no ROC curve for %s: %s", run.cell, error)
                missing.append(f"- {board[0]} · {_cell(s.label)}: no curve ({error}).")
                continue
            found.append(RocCurve(f"{s.rank}. {s.label}, seed {run.seed}", fpr, tpr, auc))
        if found:
            curves[board] = found
            missing += [f"- {board[0]} · {_cell(label)}: no `{PREDICTIONS_FILE}` in its eval folder."
                        for label in absent]
    return curves, missing


def write_leaderboard(
    rows: Iterable[Mapping[str, Any]],
    output_dir: str | os.PathLike,
    title: str = "Experiment leaderboard",
    baseline: str = "ft",
    top_k_roc: int = 3,
) -> Path:
    """Write ``leaderboard.md``, ``leaderboard.csv``, ``leaderboard.png``, (classification) ``roc_best.png`` and,
    when some strategy has a baseline to compare with, ``strategy_cases.csv`` and ``strategy_shares.csv``.

    ``roc_best.png`` shows, per (bundle, metric), the micro-averaged ROC curve (every finding pooled, unknown labels
    left out) of the ``top_k_roc`` best configurations, each from its median-seed run's
    ``<eval_dir>/predictions.npz``. When no such file exists (segmentation bundles, older runs) the figure is
    skipped, a stale one removed, and the Markdown says so. A relative ``eval_dir`` is taken from ``output_dir``.

    Args:
        rows: ``results.csv`` rows, one per finished run (see :func:`~common.experiments.stats.summarise`).
        output_dir: folder to write into (created if needed); other files in it are left alone.
        title: heading of the Markdown and the figures.
        baseline: strategy the others are compared with.
        top_k_roc: configurations per bundle in the ROC figure.

    Returns:
        ``output_dir`` as a Path.

    Raises:
        DataError: no rows, or a bad row (see :func:`~common.experiments.stats.parse_runs`).

    Example:
        >>> with open("runs/grid/results.csv", newline="") as handle:  # doctest: +SKIP
        ...     write_leaderboard(list(csv.DictReader(handle)), "runs/grid", title="Chest grid")
    """
    out = Path(output_dir)
    summaries = summarise(rows, baseline=baseline)
    if not summaries:
        raise DataError(f"no finished runs to rank for {out}; results.csv has no rows")
    boards = _boards(summaries)
    plot_leaderboard(boards, out / "leaderboard.png", title, baseline)
    curves, roc_notes = _roc_curves(boards, top_k_roc, out)
    if curves:
        plot_roc_best(curves, out / "roc_best.png", title)
        roc_lines = [f"![Micro-averaged ROC of the top {top_k_roc} configurations (median-seed run)](roc_best.png)",
                     "", "Micro-averaged ROC: every (image, finding) pair with a known label pooled; each curve is "
                     "the configuration's median-seed run (lower middle run for an even count).", *roc_notes]
    else:
        (out / "roc_best.png").unlink(missing_ok=True)
        roc_lines = [f"ROC figure skipped: no run among the top {top_k_roc} configurations of any bundle has "
                     f"`{PREDICTIONS_FILE}` in its eval folder (only classification evaluation writes it).",
                     *roc_notes]
    atomic_write_text(out / "leaderboard.csv", leaderboard_csv(summaries))
    cases = strategy_cases(summaries)
    for name, text in (("strategy_cases.csv", strategy_cases_csv(cases)),
                       ("strategy_shares.csv", strategy_shares_csv(strategy_shares(cases)))):
        if cases:
            atomic_write_text(out / name, text)
        else:
            (out / name).unlink(missing_ok=True)
    atomic_write_text(out / "leaderboard.md", format_leaderboard(summaries, title, baseline, roc_lines))
    logger.info("leaderboard of %d configurations written to %s", len(summaries), out / "leaderboard.md")
    return out
