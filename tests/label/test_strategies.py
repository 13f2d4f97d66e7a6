"""Active learning: the uncertainty formulas recomputed independently, ranking, caching per model version."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi import HTTPException
from monailabel.datastore.local import LocalDatastore
from scipy.stats import entropy

from common.label.bundles import Predictor, discover_bundles
from common.label.strategies import Random, Uncertainty, binary_entropy, uncertainty_score
from tests.label.conftest import BUNDLES, CHEST


def test_classification_score_is_mean_binary_entropy() -> None:
    p = np.array([0.5, 0.9, 0.01, 1.0])
    expected = np.mean([entropy([q, 1 - q]) for q in p])  # scipy: nats
    assert uncertainty_score(p, "classification") == pytest.approx(expected, abs=1e-9)
    assert binary_entropy(np.array([0.5]))[0] == pytest.approx(np.log(2))


def test_segmentation_score_is_mean_pixel_entropy() -> None:
    rng = np.random.default_rng(0)
    maps = rng.random((5, 4, 6))
    maps /= maps.sum(axis=0, keepdims=True)
    expected = np.mean([entropy(maps[:, y, x]) for y in range(4) for x in range(6)])
    assert uncertainty_score(maps, "segmentation") == pytest.approx(expected, abs=1e-9)


@pytest.fixture()
def studies(chest_dataset: Path, tmp_path: Path) -> LocalDatastore:
    folder = tmp_path / "studies"
    folder.mkdir()
    for index, image in enumerate(sorted(chest_dataset.rglob("*.png"))[:5]):
        shutil.copy(image, folder / f"chest_{index}.png")
    return LocalDatastore(str(folder), extensions=["*.png"], auto_reload=False)


def test_uncertainty_picks_the_highest_entropy_and_caches_per_version(trained_chest, studies) -> None:
    bundles = {CHEST: trained_chest}
    predictor = Predictor(trained_chest)
    strategy = Uncertainty(bundles, {CHEST: predictor})
    result = strategy({"model": CHEST}, studies)
    scores = {i: uncertainty_score(predictor.scores(studies.get_image_uri(i))[0], "classification")
              for i in studies.list_images()}
    assert result["id"] == max(scores, key=scores.get)
    assert result["score"] == pytest.approx(scores[result["id"]], abs=1e-6)
    cache = json.loads((trained_chest.root / "uncertainty.json").read_text())
    assert cache["model_version"] == trained_chest.version() and set(cache["scores"]) == set(scores)

    cache["scores"] = {i: (9.0 if i == "chest_0" else 0.0) for i in scores}  # a cached score is not recomputed
    (trained_chest.root / "uncertainty.json").write_text(json.dumps(cache))
    assert strategy({"model": CHEST}, studies)["id"] == "chest_0"
    cache["model_version"] = "an older model"  # another version: scored afresh
    (trained_chest.root / "uncertainty.json").write_text(json.dumps(cache))
    assert strategy({"model": CHEST}, studies)["id"] == max(scores, key=scores.get)


def test_strategies_need_a_served_model(trained_chest, studies, tmp_path: Path) -> None:
    fresh = discover_bundles(BUNDLES, tmp_path / "workspace")  # nothing trained there
    with pytest.raises(HTTPException) as caught:
        Random(fresh)({}, studies)
    assert caught.value.status_code == 400 and CHEST in caught.value.detail
    mammo = fresh["breast_mammo_classification"]
    with pytest.raises(HTTPException) as caught:
        Uncertainty({mammo.name: mammo}, {mammo.name: Predictor(mammo)})({}, studies)
    assert caught.value.status_code == 409
    assert Random({CHEST: trained_chest}, seed=0)({}, studies)["id"] in studies.list_images()
