"""BundleTrainTask: request checks (400 + one line) before anything runs, the datalist split, tiny real trainings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("monailabel", reason="MONAI Label is not installed (requirements-label.txt)")

from PIL import Image  # noqa: E402

from common.errors import ConfigError  # noqa: E402
from common.label.bundles import LabelBundle, discover_bundles  # noqa: E402
from common.label.datastore import MedxferDatastore  # noqa: E402
from common.label.train import STATS_FILE, BundleTrainTask, split_items  # noqa: E402
from common.networks.checkpoint_card import file_sha256, read_card  # noqa: E402
from tests.label.conftest import refused  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CHEST = "chest_xray_classification"
UNET = "breast_histology_segmentation_unet"
SWIN = "breast_histology_segmentation_swin_unetr"
#: chest images 0..5 with these findings; split: validation = image 4 (every 5th) + image 1 (first with no Effusion)
CHEST_FINDINGS = [["Effusion"], [], ["Effusion", "Mass"], [], ["Effusion"], []]
CHEST_SETTINGS = {"val_batch_size": 8}
UNET_SETTINGS = {"patch_size": 64, "samples_per_image": 2, "val_batch_size": 1, "sw_batch_size": 2}
CHEST_TINY = {"max_epochs": 1, "pretrained": "none", "image_size": 32, "batch_size": 8}


def make_studies(folder: Path, bundles: dict[str, LabelBundle], n_chest: int = 6, n_masks: int = 2) -> MedxferDatastore:
    """``n_chest`` labelled 32 px radiographs (findings from CHEST_FINDINGS), one unlabelled, ``n_masks`` masked
    32 px H&E tiles (codes 0..5)."""
    source = folder.parent / f"{folder.name}_source"
    source.mkdir()
    store = MedxferDatastore(folder, bundles, extensions=["*.png"], auto_reload=False)
    rng = np.random.default_rng(0)
    for index in range(n_chest + 1):
        Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(source / f"chest_{index}.png")
        store.add_image(f"chest_{index}", str(source / f"chest_{index}.png"), {"model": CHEST})
        if index < n_chest:
            (source / "label.json").write_text(json.dumps({"model": CHEST, "findings": CHEST_FINDINGS[index % 6]}))
            store.save_label(f"chest_{index}", str(source / "label.json"), "final", {})
    for index in range(n_masks):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(source / f"histo_{index}.png")
        store.add_image(f"histo_{index}", str(source / f"histo_{index}.png"), {"model": UNET})
        Image.fromarray(np.resize(np.arange(6, dtype=np.uint8), (32, 32))).save(source / "mask.png")
        store.save_label(f"histo_{index}", str(source / "mask.png"), "final", {})
    return store


@pytest.fixture()
def fresh(tmp_path: Path) -> dict[str, LabelBundle]:
    """Untrained chest and UNet bundles in an empty workspace."""
    return discover_bundles(REPO / "bundles", tmp_path / "workspace", [CHEST, UNET])


# -- split ----------------------------------------------------------------------------------------------------------
def _items(labels: list[list[int]]) -> list[dict]:
    return [{"image": f"{i}.png", "label": label} for i, label in enumerate(labels)]


def test_split_every_kth_at_least_one_each() -> None:
    two = split_items([{"image": "a"}, {"image": "b"}], 0.2, classification=False)
    assert two == ([{"image": "a"}], [{"image": "b"}])
    train, val = split_items([{"image": str(i)} for i in range(10)], 0.2, classification=False)
    assert [x["image"] for x in val] == ["4", "9"] and len(train) == 8


def test_split_moves_training_items_until_validation_auc_is_defined() -> None:
    items = _items([[int("Effusion" in f)] for f in CHEST_FINDINGS])
    train, val = split_items(items, 0.2, classification=True)
    assert [x["image"] for x in val] == ["1.png", "4.png"]
    assert [x["image"] for x in train] == ["0.png", "2.png", "3.png", "5.png"]
    assert split_items(_items([[1], [0]]), 0.2, classification=True) == (_items([[1]]), _items([[1], [0]])[1:])


def test_constructor_refuses_bad_settings(fresh: dict[str, LabelBundle]) -> None:
    with pytest.raises(ConfigError, match="min_labels must be an integer >= 2"):
        BundleTrainTask(fresh[CHEST], min_labels=1)
    with pytest.raises(ConfigError, match="val_fraction must be between 0 and 1"):
        BundleTrainTask(fresh[CHEST], val_fraction=1.0)


def test_config_lists_params_with_defaults(fresh: dict[str, LabelBundle]) -> None:
    chest = BundleTrainTask(fresh[CHEST]).config()
    assert chest == {"max_epochs": 10, "strategy": chest["strategy"], "pretrained": "imagenet", "image_size": 224,
                     "batch_size": 16, "learning_rate": 0.0001, "num_workers": 0}
    assert chest["strategy"][0] == "ft" and {"lp", "lp_ft", "l2_sp"} <= set(chest["strategy"])
    assert "image_size" not in BundleTrainTask(fresh[UNET]).config()


# -- check ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "request_params", "message"),
    [
        (CHEST, {"epochs": 1}, "unknown training param\\(s\\) epochs for chest_xray_classification; valid: max_epochs, "
                               "strategy, pretrained, image_size, batch_size, learning_rate, num_workers$"),
        (UNET, {"image_size": 64}, "unknown training param\\(s\\) image_size"),
        (CHEST, {"strategy": "lpft"}, "unknown strategy 'lpft'; did you mean 'lp_ft'\\? choose from: ft, "),
        (CHEST, {"max_epochs": 0}, "max_epochs must be an integer >= 1, got 0$"),
        (CHEST, {"batch_size": 2.5}, "batch_size must be an integer >= 1, got 2.5$"),
        (CHEST, {"learning_rate": "fast"}, "learning_rate must be a number > 0.0, got 'fast'$"),
        (CHEST, {"pretrained": "current"}, "pretrained 'current': chest_xray_classification has no trained model"),
        (CHEST, {"pretrained": "/no/such/weights.pt"}, "weights file not found: /no/such/weights.pt$"),
        (CHEST, {"pretrained": "bundle:/no/such/bundle"}, "no trained model /no/such/bundle/models/model.pt$"),
        (UNET, {"pretrained": "imagenet"}, "arch 'unet' has no ImageNet weights"),
    ],
    ids=["unknown-key", "image-size-for-segmentation", "unknown-strategy", "epochs-zero", "batch-not-int",
         "lr-not-number", "current-untrained", "missing-file", "missing-bundle", "unet-imagenet"],
)
def test_check_refusals(fresh: dict[str, LabelBundle], tmp_path: Path, model: str, request_params: dict,
                        message: str) -> None:
    store = make_studies(tmp_path / "studies", fresh)
    detail = refused(BundleTrainTask(fresh[model]).check, request_params, store)
    assert re.search(message, detail), detail


def test_masks_must_mean_the_bundles_classes(fresh: dict[str, LabelBundle], tmp_path: Path) -> None:
    store = make_studies(tmp_path / "studies", fresh, n_chest=0)
    class_map = {"tumor": ["tumor"], "rest": ["necrosis_or_debris"]}  # BCSS code 2 (stroma) would become 0
    regrouped = BundleTrainTask(fresh[UNET], settings={"class_map": class_map})
    detail = refused(regrouped.check, {"pretrained": "none"}, store)
    assert "its class_map does not read mask code c as class c (it maps codes 0..2 to [0, 1, 0])" in detail, detail


def test_swin_unetr_has_no_imagenet_weights(tmp_path: Path) -> None:
    swin = discover_bundles(REPO / "bundles", tmp_path / "workspace", [SWIN])[SWIN]
    store = make_studies(tmp_path / "studies", {SWIN: swin}, n_chest=0)
    detail = refused(BundleTrainTask(swin).check, {"pretrained": "imagenet"}, store)
    assert detail.startswith("pretrained 'imagenet': arch 'swin_unetr' has no ImageNet weights"), detail


def test_missing_imagenet_file_is_named(fresh: dict[str, LabelBundle], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    store = make_studies(tmp_path / "studies", fresh)
    detail = refused(BundleTrainTask(fresh[CHEST]).check, {"pretrained": "imagenet"}, store)
    expected = tmp_path / "torch_home" / "hub" / "checkpoints" / "densenet121-a639ec97.pth"
    assert f"ImageNet weights for densenet121 not found: expected {expected}" in detail


def test_check_resolves_the_run(fresh: dict[str, LabelBundle], tmp_path: Path) -> None:
    store = make_studies(tmp_path / "studies", fresh)
    plan = BundleTrainTask(fresh[CHEST]).check({**CHEST_TINY, "strategy": "lp", "model": CHEST, "gpus": "all"}, store)
    assert plan["overlay"] == str(REPO / "configs" / "finetune" / "lp.json")
    assert plan["settings"] == {"resume": "never", "epochs": 1, "image_size": 32, "batch_size": 8,
                                "learning_rate": 0.0001, "num_workers": 0, "pretrained": "none"}
    assert [x["image"] for x in plan["validation"]] == ["chest_1.png", "chest_4.png"]
    assert BundleTrainTask(fresh[CHEST]).check({"pretrained": "none"}, store)["overlay"] is None


def test_too_few_labels_is_refused_before_anything_runs(fresh: dict[str, LabelBundle], tmp_path: Path) -> None:
    store = make_studies(tmp_path / "studies", fresh, n_chest=0, n_masks=1)
    task = BundleTrainTask(fresh[UNET], settings=UNET_SETTINGS)
    detail = refused(task, {"pretrained": "none"}, store)
    assert re.search(f"^{UNET} has 1 labelled image\\(s\\); training needs at least 2: label more with PUT "
                     "/datastore/label\\?image=<id>&tag=final \\(a mask image, codes 0..5, 0 = not annotated\\)$",
                     detail), detail
    assert refused(BundleTrainTask(fresh[CHEST]), {"pretrained": "none"}, store).startswith(f"{CHEST} has 0 labelled")
    assert sorted(p.name for p in fresh[UNET].root.iterdir()) == []  # no datalist, no models, no stats


def test_undefined_validation_auc_is_refused(fresh: dict[str, LabelBundle], tmp_path: Path) -> None:
    store = make_studies(tmp_path / "studies", fresh, n_chest=2)
    detail = refused(BundleTrainTask(fresh[CHEST]).check, {"pretrained": "none"}, store)
    assert "the 1 validation image(s) have no finding both present and absent" in detail


# -- training -------------------------------------------------------------------------------------------------------
def test_chest_trains_then_continues_from_current(fresh: dict[str, LabelBundle], tmp_path: Path) -> None:
    store = make_studies(tmp_path / "studies", fresh)
    bundle = fresh[CHEST]
    task = BundleTrainTask(bundle, settings=CHEST_SETTINGS)
    stats = task(CHEST_TINY, store)
    assert bundle.model_path.is_file() and (bundle.root / "models" / "model.json").is_file()
    assert {k: stats[k] for k in ("status", "epochs", "n_train", "n_val", "metric_name", "model_version")} == {
        "status": "done", "epochs": 1, "n_train": 4, "n_val": 2, "metric_name": "val_mean_auc",
        "model_version": bundle.version()}
    assert 0.0 <= stats["best_metric"] <= 1.0 and task.stats() == stats
    datalist = json.loads((bundle.root / "datalist.json").read_text())
    assert datalist["validation"] == [{"image": "chest_1.png", "label": [0] * 14, "weight": 1.0},
                                      {"image": "chest_4.png", "label": [0, 0, 1] + [0] * 11, "weight": 1.0}]
    assert task.config()["image_size"] == 32  # the trained model's size is the default now

    first = stats["model_version"]
    second = task({"max_epochs": 1, "pretrained": "current", "strategy": "lp", "batch_size": 8}, store)
    assert second["pretrained"] == str(bundle.model_path) and second["strategy"] == "lp"
    assert read_card(bundle.model_path)["preprocessing"]["image_size"] == 32  # carried over from the card
    previous = list((bundle.root / "models").glob("previous-*/model.pt"))
    assert len(previous) == 1 and file_sha256(previous[0]) == first != second["model_version"]


def test_unet_trains_one_epoch(fresh: dict[str, LabelBundle], tmp_path: Path) -> None:
    store = make_studies(tmp_path / "studies", fresh, n_chest=0)
    bundle = fresh[UNET]
    stats = BundleTrainTask(bundle, settings=UNET_SETTINGS)({"max_epochs": 1, "pretrained": "none",
                                                             "batch_size": 4}, store)
    assert bundle.model_path.is_file() and read_card(bundle.model_path)["preprocessing"]["patch_size"] == 64
    assert (stats["epochs"], stats["n_train"], stats["n_val"], stats["metric_name"]) == (1, 1, 1, "val_mean_dice")
    assert json.loads((bundle.root / STATS_FILE).read_text()) == stats
    assert json.loads((bundle.root / "datalist.json").read_text()) == {
        "training": [{"image": "histo_0.png", "label": "labels/final/histo_0.png"}],
        "validation": [{"image": "histo_1.png", "label": "labels/final/histo_1.png"}]}


def test_bundle_error_surfaces_as_one_line(fresh: dict[str, LabelBundle], tmp_path: Path) -> None:
    store = make_studies(tmp_path / "studies", fresh)
    (store.studies / "chest_3.png").write_bytes(b"")  # emptied after labelling: the bundle's image check finds it
    task = BundleTrainTask(fresh[CHEST], settings=CHEST_SETTINGS)
    detail = refused(task, CHEST_TINY, store)
    assert "chest_3.png" in detail and "empty" in detail, detail
    assert task.stats()["status"] == "failed" and task.stats()["error"] == detail


def test_a_failed_retrain_leaves_the_served_model(fresh: dict[str, LabelBundle], tmp_path: Path) -> None:
    store = make_studies(tmp_path / "studies", fresh)
    bundle = fresh[CHEST]
    task = BundleTrainTask(bundle, settings=CHEST_SETTINGS)
    served = task(CHEST_TINY, store)["model_version"]
    (store.studies / "chest_3.png").write_bytes(b"")  # the next run fails in the bundle's image check
    refused(task, {**CHEST_TINY, "pretrained": "current"}, store)
    assert bundle.version() == served and read_card(bundle.model_path)["sha256"] == served
    assert not list((bundle.root / "models").glob("previous-*"))  # nothing was published, nothing set aside
