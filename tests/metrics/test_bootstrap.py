"""Cluster bootstrap: patients resampled whole; its intervals cover the truth where the image bootstrap's do not."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from common.errors import DataError
from common.metrics.bootstrap import resample_counts, resampling_unit
from common.metrics.classification import bootstrap_auc_ci, compute_classification_metrics


def test_a_patient_brings_all_its_images_together() -> None:
    codes, n_groups = resampling_unit(["b", "a", "b", "c", "a", "b"], 6)
    assert n_groups == 3
    counts = resample_counts(np.random.default_rng(0), 500, 6, codes, n_groups)
    assert counts.shape == (500, 6)
    for members in ([1, 4], [0, 2, 5], [3]):  # a, b, c
        assert (counts[:, members] == counts[:, members[:1]]).all()
    drawn = counts[:, [1, 0, 3]]  # one image per patient: how often each patient was drawn
    assert (drawn.sum(axis=1) == 3).all()  # three patients drawn per resample, with replacement
    assert 0.25 < (drawn == 0).mean() < 0.35  # P(patient not drawn) = (2/3)^3 = 0.296


def test_missing_or_misaligned_patient_ids_are_refused() -> None:
    with pytest.raises(DataError, match="2 patient ids for 3 images"):
        resampling_unit(["a", "b"], 3)
    with pytest.raises(DataError, match="image 1 has no patient id"):
        resampling_unit(["a", "", "b"], 3)


def test_image_resampling_is_unchanged_without_patient_ids() -> None:
    """Same seed, no groups: the draws of the earlier image bootstrap, recomputed here independently."""
    n, size = 7, 5
    ours = resample_counts(np.random.default_rng(3), size, n)
    rng = np.random.default_rng(3)
    rows = rng.integers(0, n, size=(size, n))
    expected = np.stack([np.bincount(r, minlength=n) for r in rows])
    assert np.array_equal(ours, expected)


def test_cluster_bootstrap_covers_the_truth_on_clustered_data() -> None:
    """40 patients x 5 images, disease and a score shift shared within a patient (a strong cluster effect).

    True AUC of a positive and a negative image from the population: Phi(d / sqrt(2 su^2 + 2 se^2)). Over 150
    simulated test sets the patient bootstrap's 95% interval covers it about 90% of the time; the image
    bootstrap's, which treats the 200 images as independent, about 57%.
    """
    patients, per_patient, d, su, se = 40, 5, 1.0, 1.0, 0.5
    truth = norm.cdf(d / np.sqrt(2 * su**2 + 2 * se**2))
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(patients), per_patient).astype(str)
    covered = {"image": 0, "patient": 0}
    n_sets = 150
    for k in range(n_sets):
        shift = np.repeat(rng.normal(0, su, patients), per_patient)
        label = np.repeat(rng.random(patients) < 0.5, per_patient)
        prob = 1 / (1 + np.exp(-(label * d + shift + rng.normal(0, se, patients * per_patient))))
        y = label[:, None].astype(float)
        for unit, by in (("image", None), ("patient", groups)):
            ci = bootstrap_auc_ci(y, prob[:, None], n_boot=300, seed=k, groups=by)
            covered[unit] += ci["mean_auc_ci_low"] <= truth <= ci["mean_auc_ci_high"]
    assert covered["patient"] / n_sets >= 0.85
    assert covered["image"] / n_sets <= 0.75


def test_metrics_say_which_unit_was_resampled() -> None:
    y = [[0], [1], [0], [1], [1], [0]]
    p = [[0.1], [0.8], [0.3], [0.6], [0.9], [0.4]]
    by_patient = compute_classification_metrics(y, p, ["Mass"], n_boot=50, patient_ids=list("aabbcc"))
    assert by_patient["bootstrap"] == {"unit": "patient", "n_units": 3, "n_resamples": 50}
    by_image = compute_classification_metrics(y, p, ["Mass"], n_boot=50)
    assert by_image["bootstrap"] == {"unit": "image", "n_units": 6, "n_resamples": 50}
