"""Tests of common.experiments.stats: every number checked against a hand computation on fixed rows."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from common.errors import DataError
from common.experiments.stats import (
    mean_std_ci,
    median_run,
    paired_comparison,
    parse_runs,
    rank_descending,
    summarise,
)

# Student's t quantile for 2 degrees of freedom has a closed form: t_p = (2p - 1) / sqrt(2p(1 - p)); 4.303 at 0.975.
T_975_2 = (2 * 0.975 - 1) / math.sqrt(2 * 0.975 * 0.025)


def row(cell: str, strategy: str, seed: int | str, value: float | str, **overrides: str) -> dict[str, str]:
    """A results.csv row as csv.DictReader gives it: every field a string."""
    base = {"cell": cell, "bundle": "chest", "arch": "densenet121", "stage1": "imagenet", "stage2": "none",
            "strategy": strategy, "seed": str(seed), "metric": "mean_auc", "value": str(value), "seconds": "60",
            "eval_dir": f"runs/{cell}/eval"}
    return {**base, **overrides}


# ft 0.70/0.72/0.74; lp_ft 0.73/0.74/0.78 (diffs 0.03/0.02/0.04); lp 0.10 below ft on every seed;
# one medical lp_ft run (no ft in its group) whose 0.75 ties lp_ft's mean.
ROWS = [
    row("c0", "ft", 0, 0.70), row("c1", "ft", 1, 0.72), row("c2", "ft", 2, 0.74, seconds="90"),
    row("c3", "lp_ft", 0, 0.73), row("c4", "lp_ft", 1, 0.74), row("c5", "lp_ft", 2, 0.78),
    row("c6", "lp", 0, 0.60), row("c7", "lp", 1, 0.62), row("c8", "lp", 2, 0.64),
    row("c9", "lp_ft", 0, 0.75, stage2="medical"),
]


def test_mean_std_ci_by_hand() -> None:
    mean, std, (low, high) = mean_std_ci([0.70, 0.72, 0.74])
    half = T_975_2 * 0.02 / math.sqrt(3)
    assert half == pytest.approx(0.0497, abs=5e-5)
    assert mean == pytest.approx(0.72, abs=1e-15) and std == pytest.approx(0.02, abs=1e-15)
    assert (low, high) == (pytest.approx(0.72 - half, rel=1e-9), pytest.approx(0.72 + half, rel=1e-9))


def test_mean_std_ci_single_value_has_no_spread() -> None:
    assert mean_std_ci([0.5]) == (0.5, None, None)


def test_mean_std_ci_refuses_empty() -> None:
    with pytest.raises(DataError, match="at least one value"):
        mean_std_ci([])


@pytest.mark.parametrize(
    ("means", "expected"),
    [([0.7, 0.8, 0.9], [3, 2, 1]), ([0.7, 0.8, 0.8, 0.6], [3, 1, 1, 4]), ([0.1 + 0.2, 0.3, 0.2], [1, 1, 3])],
    ids=["distinct", "tie-min", "float-noise-tie"],
)
def test_rank_descending(means: list[float], expected: list[int]) -> None:
    assert rank_descending(means) == expected


def test_paired_ttest_matches_formula() -> None:
    result = paired_comparison({0: 0.73, 1: 0.74, 2: 0.78}, {0: 0.70, 1: 0.72, 2: 0.74})
    # d = 0.03, 0.02, 0.04: mean 0.03, sd 0.01, t = 0.03 / (0.01 / sqrt(3)) = 5.196, two-sided p = 2 sf(t, 2).
    t = 0.03 / (0.01 / math.sqrt(3))
    assert result.n_pairs == 3 and result.mean_diff == pytest.approx(0.03, abs=1e-12)
    assert result.p_ttest == pytest.approx(2 * stats.t.sf(t, 2), rel=1e-9)
    assert result.p_ttest == pytest.approx(0.0351, abs=1e-4)
    assert result.p_wilcoxon is None and result.note == ""


@pytest.mark.parametrize(
    ("mine", "theirs", "p_ttest", "note"),
    [
        ([0.7, 0.7, 0.7], [0.7, 0.7, 0.7], 1.0, ""),
        ([0.8, 0.8, 0.8], [0.7, 0.7, 0.7], None, "every paired difference is +0.1: zero variance"),
        ([0.72, 0.74, 0.76], [0.70, 0.72, 0.74], None, "every paired difference is +0.02"),  # differs in last bit
    ],
    ids=["all-zero", "constant", "constant-float-noise"],
)
def test_paired_zero_variance(mine: list[float], theirs: list[float], p_ttest: float | None, note: str) -> None:
    result = paired_comparison(dict(enumerate(mine)), dict(enumerate(theirs)))
    assert result.p_ttest == p_ttest
    assert note in result.note and (note or result.note == "")


def test_paired_wilcoxon_exact_by_hand() -> None:
    diffs = [0.01, 0.02, 0.03, 0.04, 0.05, -0.06]
    result = paired_comparison({s: 0.5 + d for s, d in enumerate(diffs)}, dict.fromkeys(range(6), 0.5))
    # |d| ranks 1..6, W- = 6; 14 of the 64 sign patterns give a sum <= 6, so two-sided p = 2 * 14 / 64.
    assert result.p_wilcoxon == pytest.approx(2 * 14 / 64)
    all_positive = paired_comparison({s: 0.6 + d for s, d in enumerate(diffs)}, dict.fromkeys(range(6), 0.5))
    assert all_positive.p_wilcoxon == pytest.approx(2 / 64)


@pytest.mark.parametrize(
    ("n", "has_t", "has_wilcoxon"), [(1, False, False), (2, True, False), (5, True, False), (6, True, True)],
    ids=["1", "2", "5", "6"],
)
def test_paired_minimum_pairs(n: int, has_t: bool, has_wilcoxon: bool) -> None:
    result = paired_comparison({s: 0.7 + 0.01 * s * s for s in range(n)}, dict.fromkeys(range(n), 0.7))
    assert result.n_pairs == n and result.mean_diff is not None
    assert (result.p_ttest is not None) == has_t and (result.p_wilcoxon is not None) == has_wilcoxon


def test_paired_all_zero_six_pairs() -> None:
    result = paired_comparison(dict.fromkeys(range(6), 0.7), dict.fromkeys(range(6), 0.7))
    assert (result.mean_diff, result.p_ttest, result.p_wilcoxon) == (0.0, 1.0, 1.0)


def test_paired_matches_by_seed_and_names_unpaired() -> None:
    result = paired_comparison({0: 0.8, 2: 0.9, 5: 0.7}, {2: 0.6, 0: 0.7, 3: 0.7})
    assert result.n_pairs == 2 and result.mean_diff == pytest.approx((0.1 + 0.3) / 2)
    assert result.note == "seeds without a pair: 3, 5"
    none = paired_comparison({0: 0.8}, {1: 0.7})
    assert (none.n_pairs, none.mean_diff, none.p_ttest) == (0, None, None)
    assert none.note.startswith("no seed in common with the baseline")


def test_summarise_fixed_grid() -> None:
    summaries = summarise(ROWS)
    got = {(s.stage2, s.strategy): s for s in summaries}
    assert [(s.stage2, s.strategy, s.rank) for s in summaries] == [
        ("medical", "lp_ft", 1), ("none", "lp_ft", 1), ("none", "ft", 3), ("none", "lp", 4)
    ]
    ft = got["none", "ft"]
    assert (ft.n, ft.seeds, ft.mean_seconds) == (3, (0, 1, 2), 70.0)
    assert ft.mean == pytest.approx(0.72) and ft.std == pytest.approx(0.02)
    assert ft.ci_high - ft.mean == pytest.approx(T_975_2 * 0.02 / math.sqrt(3))
    assert (ft.baseline, ft.n_pairs, ft.mean_diff, ft.p_ttest) == (None, None, None, None)
    lp_ft = got["none", "lp_ft"]
    assert (lp_ft.baseline, lp_ft.n_pairs) == ("ft", 3) and lp_ft.mean_diff == pytest.approx(0.03)
    assert lp_ft.p_ttest == pytest.approx(2 * stats.t.sf(0.03 / (0.01 / math.sqrt(3)), 2))
    lp = got["none", "lp"]
    assert lp.mean_diff == pytest.approx(-0.10) and lp.p_ttest is None and "zero variance" in lp.comparison_note
    medical = got["medical", "lp_ft"]
    assert (medical.n, medical.std, medical.ci_low, medical.ci_high) == (1, None, None, None)
    assert (medical.baseline, medical.n_pairs, medical.mean_diff, medical.p_ttest) == (None, None, None, None)
    assert medical.label == "densenet121 / imagenet / medical / lp_ft"


def test_summarise_ranks_each_bundle_and_metric_apart() -> None:
    rows = [row("a", "ft", 0, 0.9), row("b", "ft", 0, 0.5, bundle="mammo"), row("c", "lp", 0, 0.6, bundle="mammo"),
            row("d", "ft", 0, 0.1, metric="rmse_neg", arch="resnet18")]
    ranks = {(s.bundle, s.metric, s.strategy): s.rank for s in summarise(rows)}
    assert ranks == {("chest", "mean_auc", "ft"): 1, ("chest", "rmse_neg", "ft"): 1, ("mammo", "mean_auc", "lp"): 1,
                     ("mammo", "mean_auc", "ft"): 2}


def test_summarise_other_baseline() -> None:
    by_strategy = {s.strategy: s for s in summarise(ROWS[:6], baseline="lp_ft")}
    assert by_strategy["lp_ft"].baseline is None
    assert by_strategy["ft"].baseline == "lp_ft" and by_strategy["ft"].mean_diff == pytest.approx(-0.03)


def test_parse_runs_types_and_extra_columns() -> None:
    (run,) = parse_runs([{**row("c0", "ft", "3.0", " 0.8 "), "status": "done"}])
    assert (run.seed, run.value, run.seconds, str(run.eval_dir)) == (3, 0.8, 60.0, "runs/c0/eval")


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([row("c0", "ft", 0, 0.7), row("c1", "ft", 0, 0.8)], r"'c0' and 'c1' are the same configuration and seed 0"),
        ([row("c0", "ft", 0, 0.7), row("c1", "ft", 0, 0.8, metric="f1")], r"'c0' and 'c1' are the same configuration"),
        ([row("c0", "ft", 0, 0.7), row("c0", "ft", 1, 0.8)], r"cell 'c0' appears twice \(rows 0 and 1\)"),
        ([row("c5", "ft", 0, "nan")], r"cell 'c5': value must be a finite number; found 'nan'"),
        ([row("c5", "ft", 0, "inf")], r"cell 'c5': value must be a finite number"),
        ([row("c5", "ft", 0, 0.7, seconds="-inf")], r"cell 'c5': seconds must be a finite number"),
        ([row("c5", "ft", 0, "")], r"cell 'c5': value must be float; found ''"),
        ([row("c5", "ft", "1.5", 0.7)], r"cell 'c5': seed must be int; found '1.5'"),
        ([{k: v for k, v in row("c5", "ft", 0, 0.7).items() if k != "metric"}], r"cell 'c5'\) lacks \['metric'\]"),
    ],
    ids=["duplicate-seed", "duplicate-seed-other-metric", "duplicate-cell", "nan", "inf", "seconds-inf", "empty",
         "fractional-seed", "missing"],
)
def test_bad_rows_raise(rows: list[dict], match: str) -> None:
    with pytest.raises(DataError, match=match):
        summarise(rows)


@pytest.mark.parametrize(
    ("values", "expected_seed"),
    [([0.7, 0.9, 0.8], 2), ([0.7, 0.9, 0.8, 0.6], 0), ([0.8, 0.8], 0), ([0.5], 0)],
    ids=["odd", "even-lower-middle", "tie-lower-seed", "single"],
)
def test_median_run(values: list[float], expected_seed: int) -> None:
    runs = parse_runs([row(f"c{s}", "ft", s, v) for s, v in enumerate(values)])
    assert median_run(runs).seed == expected_seed


@pytest.mark.parametrize(("metric", "lower", "bounds"), [
    ("mean_auc", False, (0.0, 1.0)), ("test_mean_dice", False, (0.0, 1.0)), ("mean_iou", False, (0.0, 1.0)),
    ("mean_hd95", True, (0.0, math.inf)), ("rmse", True, (0.0, math.inf)), ("val_loss", True, None),
    ("kappa", False, None),
])
def test_metric_direction_and_range(metric: str, lower: bool, bounds: tuple | None) -> None:
    from common.experiments.stats import lower_is_better, metric_range, rank_by

    assert lower_is_better(metric) is lower and metric_range(metric) == bounds
    assert rank_by([0.2, 0.9, 0.5], higher_is_better=not lower) == ([1, 3, 2] if lower else [3, 1, 2])
