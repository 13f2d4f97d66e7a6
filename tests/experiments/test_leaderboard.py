"""Tests of common.experiments.leaderboard and leaderboard_plots: files, Markdown, CSV and the ROC selection."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from common.errors import DataError
from common.experiments import leaderboard
from common.experiments.leaderboard import format_board_table, format_leaderboard, leaderboard_csv, write_leaderboard
from common.experiments.leaderboard_plots import RocCurve, micro_roc
from common.experiments.stats import summarise
from common.metrics import save_predictions

PNG = b"\x89PNG\r\n\x1a\n"
NAN = np.nan


def row(cell: str, strategy: str, seed: int, value: float, **overrides: str) -> dict[str, str]:
    base = {"cell": cell, "bundle": "chest", "arch": "densenet121", "stage1": "imagenet", "stage2": "none",
            "strategy": strategy, "seed": str(seed), "metric": "mean_auc", "value": str(value), "seconds": "60",
            "eval_dir": f"cells/{cell}/eval", "val_metric": ""}
    return {**base, **overrides}


# Same grid as test_stats: lp_ft beats ft by 0.03 on average (p = 0.0351), lp is 0.10 below on every seed.
ROWS = [
    row("c0", "ft", 0, 0.70), row("c1", "ft", 1, 0.72), row("c2", "ft", 2, 0.74, seconds="150"),
    row("c3", "lp_ft", 0, 0.73), row("c4", "lp_ft", 1, 0.74), row("c5", "lp_ft", 2, 0.78),
    row("c6", "lp", 0, 0.60), row("c7", "lp", 1, 0.62), row("c8", "lp", 2, 0.64),
    row("c9", "lp_ft", 0, 0.75, stage2="medical", seconds="7200"),
]
# Labels with a NaN; probabilities scaled per run so each run has its own micro AUC.
Y_TRUE = np.array([[0, 1], [1, 0], [0, NAN], [1, 1]])


def _predict(out: Path, cell: str, good: float) -> None:
    """predictions.npz where ``good`` (0..1) moves the positives' scores above the negatives'."""
    y_prob = np.array([[0.5, 0.4 + good], [0.3 + good, 0.6], [0.45, 0.99], [0.35 + good, 0.55]])
    folder = out / "cells" / cell / "eval"
    folder.mkdir(parents=True)
    save_predictions(folder / "predictions.npz", Y_TRUE, y_prob, ["Atelectasis", "Effusion"])


def test_micro_roc_by_hand() -> None:
    # Known pairs: positives 0.4, 0.8; negatives 0.1, 0.5, 0.2 (the NaN-labelled 0.99 is left out): 5 of 6 pairs
    # ordered (only 0.4 < 0.5 is not).
    fpr, tpr, auc = micro_roc(np.array([[0, 1], [1, 0], [NAN, 0]]), np.array([[0.1, 0.4], [0.8, 0.5], [0.99, 0.2]]))
    assert auc == pytest.approx(5 / 6)
    assert fpr[0] == 0 and tpr[-1] == 1 and fpr[-1] == 1


@pytest.mark.parametrize(
    "y_true", [np.array([[0, 0], [0, NAN]]), np.array([[NAN, NAN]]), np.array([[0, 0.5], [1, 0]])],
    ids=["one-value", "no-known", "not-binary"],
)
def test_micro_roc_refuses_undefined(y_true: np.ndarray) -> None:
    with pytest.raises(DataError, match="needs known labels 0 and 1"):
        micro_roc(y_true, np.full(y_true.shape, 0.5))


def test_board_table_rows() -> None:
    lines = format_board_table(summarise(ROWS)).splitlines()
    assert lines[0] == ("| Rank | Arch | Stage 1 | Stage 2 | Strategy | n | Mean ± SD | 95% CI | Δ vs ft | Pairs "
                        "| p (paired t) | Mean time |")
    assert lines[2] == "| 1 | densenet121 | imagenet | medical | lp_ft | 1 | 0.7500 | n/a | n/a (no ft) |  |  | 2.0 h |"
    # lp_ft: SD of 0.73, 0.74, 0.78 is sqrt(0.0014 / 2) = 0.0265; CI half-width 4.3027 * 0.0265 / sqrt(3) = 0.0657.
    assert lines[3] == ("| 1 | densenet121 | imagenet | none | lp_ft | 3 | 0.7500 ± 0.0265 | [0.6843, 0.8157] "
                        "| +0.0300 | 3 | n/a (< 5 pairs) | 60 s |")  # 3 pairs: p (0.035) withheld
    assert lines[4] == ("| 3 | densenet121 | imagenet | none | ft | 3 | 0.7200 ± 0.0200 | [0.6703, 0.7697] "
                        "| baseline |  |  | 1.5 min |")
    assert lines[5].startswith("| 4 | densenet121 | imagenet | none | lp | 3 | 0.6200 ± 0.0200 |")
    assert lines[5].endswith("| -0.1000 | 3 | n/a (< 5 pairs) | 60 s |")


def test_wilcoxon_column_only_with_six_pairs() -> None:
    rows = [row(f"f{s}", "ft", s, 0.5) for s in range(6)] + [row(f"l{s}", "lp", s, 0.6 + s / 100) for s in range(6)]
    lines = format_board_table(summarise(rows)).splitlines()
    assert "| p (Wilcoxon) |" in lines[0]
    # Differences 0.10 .. 0.15: mean 0.125, SD 0.01 * sqrt(3.5); Wilcoxon: all 6 positive, p = 2 / 64.
    p_t = 2 * stats.t.sf(0.125 / (0.01 * math.sqrt(3.5) / math.sqrt(6)), 5)
    assert lines[2].endswith(f"| +0.1250 | 6 | {p_t:.1e} | 0.031 | 60 s |")


def test_markdown_notes() -> None:
    text = format_leaderboard(summarise(ROWS), "Grid", roc_lines=["ROC here"])
    assert text.startswith("# Grid\n\n10 finished runs of 4 configurations on 1 bundle(s) (chest). Baseline strategy")
    assert "## chest · mean_auc" in text and "**No correction for multiple comparisons**" in text
    assert "two-sided paired Student's t-test, shown from 5 paired seeds on" in text
    assert "and Wilcoxon signed-rank test" not in text  # no configuration has the 6 pairs it needs: not named
    assert "- n/a (< 5 pairs): with fewer paired seeds a p-value is not meaningful" in text
    assert "higher is better;" in text and "clipped" not in text
    assert "- n/a: with fewer than 2 seeds" in text and "- n/a (no ft):" in text
    assert "chest · mean_auc · densenet121 / imagenet / none / lp: every paired difference is -0.1" in text
    assert text.endswith("![Mean and 95% CI per configuration](leaderboard.png)\n\nROC here\n")


def test_markdown_without_single_seed_has_no_na_note() -> None:
    text = format_leaderboard(summarise(ROWS[:6]), "Grid")
    assert "- n/a: with fewer" not in text and "no ft" not in text


def test_csv_matches_summaries() -> None:
    summaries = summarise(ROWS)
    parsed = list(csv.DictReader(io.StringIO(leaderboard_csv(summaries))))
    assert [r["strategy"] for r in parsed] == ["lp_ft", "lp_ft", "ft", "lp"]
    lp_ft = parsed[1]
    assert (lp_ft["rank"], lp_ft["seeds"], lp_ft["baseline"], lp_ft["n_pairs"]) == ("1", "0;1;2", "ft", "3")
    assert float(lp_ft["p_ttest"]) == summaries[1].p_ttest and float(lp_ft["mean"]) == summaries[1].mean
    assert parsed[0]["std"] == "" and parsed[0]["p_ttest"] == "" and parsed[2]["mean_diff"] == ""
    assert "zero variance" in parsed[3]["note"]


def test_write_leaderboard_files_and_roc_of_median_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # lp_ft seeds score 0.73/0.74/0.78: the median run is seed 1 (c4). ft's median is seed 1 (c1).
    for cell, good in (("c3", 0.0), ("c4", 0.3), ("c5", 0.0), ("c1", 0.1), ("c9", 0.2)):
        _predict(tmp_path, cell, good)
    drawn: dict = {}
    real = leaderboard.plot_roc_best

    def spy(curves: dict, path: Path, title: str) -> Path:
        drawn.update(curves)
        return real(curves, path, title)

    monkeypatch.setattr(leaderboard, "plot_roc_best", spy)
    out = write_leaderboard(ROWS, tmp_path, title="Grid", top_k_roc=3)
    assert out == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cells", "leaderboard.csv", "leaderboard.md", "leaderboard.png", "roc_best.png", "strategy_cases.csv",
        "strategy_shares.csv"
    ]
    for png in ("leaderboard.png", "roc_best.png"):
        assert (tmp_path / png).read_bytes()[:8] == PNG
    curves: list[RocCurve] = drawn["chest", "mean_auc"]
    assert [c.label for c in curves] == [
        "1. densenet121 / imagenet / medical / lp_ft, seed 0",
        "1. densenet121 / imagenet / none / lp_ft, seed 1",
        "3. densenet121 / imagenet / none / ft, seed 1",
    ]
    y_prob = np.load(tmp_path / "cells/c4/eval/predictions.npz")["y_prob"]
    assert curves[1].auc == micro_roc(Y_TRUE, y_prob)[2]
    text = (tmp_path / "leaderboard.md").read_text()
    assert "![Micro-averaged ROC of the top 3 configurations (median-seed run)](roc_best.png)" in text
    assert "skipped" not in text and "no `predictions.npz`" not in text


def test_roc_notes_missing_and_bad_files(tmp_path: Path) -> None:
    _predict(tmp_path, "c9", 0.2)
    bad = tmp_path / "cells" / "c1" / "eval"
    bad.mkdir(parents=True)
    (bad / "predictions.npz").write_text("not a zip")
    write_leaderboard(ROWS, tmp_path, top_k_roc=3)
    text = (tmp_path / "leaderboard.md").read_text()
    assert "- chest · densenet121 / imagenet / none / lp_ft (c4): no `predictions.npz` in its eval folder." in text
    assert "- chest · densenet121 / imagenet / none / ft: no curve (cannot read predictions" in text


def test_roc_skipped_without_predictions(tmp_path: Path) -> None:
    (tmp_path / "roc_best.png").write_bytes(b"stale")
    rows = [{**r, "bundle": "histology", "metric": "mean_dice"} for r in ROWS[:3]]
    write_leaderboard(rows, tmp_path, top_k_roc=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["leaderboard.csv", "leaderboard.md", "leaderboard.png"]
    text = (tmp_path / "leaderboard.md").read_text()
    assert ("ROC figure skipped: no run among the top 2 configurations of any bundle has `predictions.npz` in its "
            "eval folder (only classification evaluation writes it).") in text


def test_write_leaderboard_refuses_no_rows(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no finished runs"):
        write_leaderboard([], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_p_values_from_five_pairs_are_shown() -> None:
    ft, lp_values = [0.50, 0.55, 0.52, 0.58, 0.54], [0.51, 0.60, 0.50, 0.66, 0.62]
    rows = [row(f"f{s}", "ft", s, v) for s, v in enumerate(ft)] + [row(f"l{s}", "lp", s, v)
                                                                   for s, v in enumerate(lp_values)]
    lp = next(s for s in summarise(rows) if s.strategy == "lp")
    expected = stats.ttest_rel(lp_values, ft).pvalue
    assert 0.001 < expected < 1
    assert format_board_table(summarise(rows)).splitlines()[2].endswith(f"| {lp.n_pairs} | {expected:.3f} | 60 s |")


def test_lower_is_better_metrics_rank_ascending() -> None:
    rows = [row("a", "ft", 0, 12.0, metric="mean_hd95"), row("b", "lp", 0, 3.0, metric="mean_hd95"),
            row("c", "lp_ft", 0, 7.5, metric="mean_hd95")]
    ranked = {s.strategy: s.rank for s in summarise(rows)}
    assert ranked == {"lp": 1, "lp_ft": 2, "ft": 3}
    text = format_leaderboard(summarise(rows), "Grid")
    assert "higher is better, lower for mean_hd95" in text


def test_a_bounded_metric_interval_is_clipped_and_flagged() -> None:
    # two seeds: mean 0.555, SD 0.431 -> t(0.975, 1) * SD / sqrt 2 = 3.87: the raw interval leaves [0, 1]
    rows = [row("a", "ft", 0, 0.25), row("b", "ft", 1, 0.86)]
    summary = summarise(rows)[0]
    mean, sd = 0.555, math.sqrt(((0.25 - 0.555) ** 2 + (0.86 - 0.555) ** 2) / 1)
    half = stats.t.ppf(0.975, 1) * sd / math.sqrt(2)
    assert mean - half < 0 and mean + half > 1
    assert (summary.ci_low, summary.ci_high, summary.ci_clipped) == (0.0, 1.0, True)
    assert "| [0.0000, 1.0000]* |" in format_board_table([summary])
    assert "- *: the t interval left the metric's range and is clipped (mean_auc to [0, 1])" in format_leaderboard(
        [summary], "Grid")
