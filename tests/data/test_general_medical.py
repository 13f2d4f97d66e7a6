"""build_general_datalist: class union, unknown labels, test splits left out, mask presence, balanced weights."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from common.data import CHESTXRAY14_FINDINGS, build_general_datalist, read_class_names
from common.data.bcss_codes import BCSS_DEFAULT_CLASS_MAP, BCSS_GTRUTH_CODES, build_code_lookup
from common.data.datalist import load_datalist
from common.errors import DataError
from common.synthetic import make_embedded_dataset, make_general_medical_dataset
from common.synthetic.general_medical import write_synthetic_chestmnist
from common.transforms import MultiLabel

BUNDLE_INFERENCE = Path(__file__).resolve().parents[2] / "bundles" / "medical_general_pretraining" / "configs" / \
    "inference.json"  # fmt: skip


def write_folder_source(root: Path, counts: dict[str, int], rgb: bool = False) -> Path:
    """``root/<class>/<n>.png``: tiny grey (or RGB) images whose brightness depends on the class."""
    for index, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for n in range(count):
            pixels = np.full((8, 8, 3) if rgb else (8, 8), 40 * index + n, np.uint8)
            Image.fromarray(pixels).save(root / name / f"{n:03d}.png")
    return root


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny sources of every kind: ChestX-ray14 and BCSS datalists, a ChestMNIST npz, an unbalanced class folder."""
    root = tmp_path_factory.mktemp("sources")
    make_embedded_dataset("chestxray14", root / "cxr", {"n_patients": 10, "image_size": 32, "seed": 1},
                          {"val_fraction": 0.25, "seed": 0})  # fmt: skip
    make_embedded_dataset("bcss", root / "bcss", {"n_patients": 5, "tiles_per_patient": 2, "tile_size": 32, "seed": 0},
                          {"val_fraction": 0.2, "test_fraction": 0.2, "seed": 0})  # fmt: skip
    write_synthetic_chestmnist(root / "chestmnist.npz", 12, 28, seed=0)
    write_folder_source(root / "derm", {"benign": 12, "melanoma": 3, "nevus": 6}, rgb=True)
    return {"cxr": root / "cxr", "bcss": root / "bcss", "npz": root / "chestmnist.npz", "derm": root / "derm"}


def source_list(paths: dict[str, Path]) -> list[dict[str, Any]]:
    return [
        {"name": "cxr", "kind": "datalist", "path": str(paths["cxr"] / "datalist.json"), "modality": "xray",
         "class_names": "chestxray14"},
        {"name": "bcss", "kind": "datalist", "path": str(paths["bcss"] / "datalist.json"), "modality": "histology"},
        {"name": "chestmnist", "kind": "medmnist", "path": str(paths["npz"]), "modality": "xray",
         "class_names": list(CHESTXRAY14_FINDINGS)},
        {"name": "derm", "kind": "folder", "path": str(paths["derm"]), "modality": "dermoscopy"},
    ]  # fmt: skip


@pytest.fixture(scope="module")
def built(sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("general") / "out"
    return build_general_datalist(source_list(sources), out, val_fraction=0.25, seed=0), out


def test_classes_are_the_union_with_same_findings_merged(built: tuple[dict[str, Any], Path]) -> None:
    datalist, _ = built
    expected = ([f"xray/{n}" for n in CHESTXRAY14_FINDINGS] + [f"histology/{n}" for n in BCSS_DEFAULT_CLASS_MAP]
                + ["dermoscopy/benign", "dermoscopy/melanoma", "dermoscopy/nevus"])  # fmt: skip
    assert datalist["class_names"] == expected
    assert read_class_names(built[1] / "datalist.json") == expected
    assert set(datalist) == {"training", "validation", "class_names", "modalities", "target", "val_fraction", "seed",
                             "sources", "sampling"}  # fmt: skip


def test_labels_are_unknown_outside_each_source(built: tuple[dict[str, Any], Path]) -> None:
    datalist, _ = built
    own = {"cxr": range(0, 14), "chestmnist": range(0, 14), "bcss": range(14, 19), "derm": range(19, 22)}
    for item in datalist["training"] + datalist["validation"]:
        known = [i for i, v in enumerate(item["label"]) if v is not None]
        assert set(known) <= set(own[item["source"]]), item
        assert item["source"] == "bcss" or set(known) == set(own[item["source"]])  # all-ignored tiles: all unknown
        assert {"image", "label", "source", "modality", "category", "weight", "patient_id"} == set(item)


def test_source_labels_are_copied_in_place(built: tuple[dict[str, Any], Path], sources: dict[str, Path]) -> None:
    datalist, out = built
    original = json.loads((sources["cxr"] / "datalist.json").read_text())
    by_image = {str((sources["cxr"] / it["image"]).resolve()): it["label"] for s in ("training", "validation")
                for it in original[s]}  # fmt: skip
    merged = [it for it in datalist["training"] + datalist["validation"] if it["source"] == "cxr"]
    assert len(merged) == len(by_image)
    for item in merged:
        assert item["label"][:14] == by_image[str((out / item["image"]).resolve())]


def test_test_splits_are_never_included(built: tuple[dict[str, Any], Path], sources: dict[str, Path]) -> None:
    datalist, out = built
    used = {str((out / it["image"]).resolve()) for s in ("training", "validation") for it in datalist[s]}
    summary = {s["name"]: s for s in datalist["sources"]}
    for name in ("cxr", "bcss"):
        test = json.loads((sources[name] / "datalist.json").read_text())["test"]
        assert test and not {str((sources[name] / it["image"]).resolve()) for it in test} & used
        assert summary[name]["test_excluded"] == len(test)
    assert "test" not in datalist
    assert not list((out / "chestmnist").glob("test_*"))  # the npz test arrays are never unpacked
    assert summary["chestmnist"]["test_excluded"] == len(np.load(sources["npz"])["test_labels"])


def test_bcss_labels_are_the_groups_present_in_each_mask(built: tuple[dict[str, Any], Path],
                                                         sources: dict[str, Path]) -> None:
    datalist, out = built
    lut = build_code_lookup(BCSS_GTRUTH_CODES)
    tiles = [it for it in datalist["training"] + datalist["validation"] if it["source"] == "bcss"]
    assert tiles
    for item in tiles:
        mask_path = (out / item["image"]).resolve().parents[1] / "masks" / Path(item["image"]).name
        groups = set(np.unique(lut[np.asarray(Image.open(mask_path))]).tolist()) - {0}
        expected = [1.0 if g in groups else 0.0 for g in range(1, 6)] if groups else [None] * 5
        assert item["label"][14:19] == expected


def test_paths_are_relative_to_the_output_and_load_back(built: tuple[dict[str, Any], Path]) -> None:
    datalist, out = built
    assert all(it["image"].startswith("../") for it in datalist["training"] if it["source"] != "chestmnist")
    assert all(it["image"].startswith("chestmnist/") for it in datalist["training"] if it["source"] == "chestmnist")
    # The sources lie beside the output folder, not in it: the bundle must allow paths outside dataset_dir.
    with pytest.raises(DataError, match=r"training\[0\] .* outside the dataset folder .*allow_outside_dataset_dir"):
        load_datalist(out / "datalist.json", "training", out, num_classes=len(datalist["class_names"]))
    items = load_datalist(out / "datalist.json", "training", out, num_classes=len(datalist["class_names"]),
                          allow_outside_dataset_dir=True)
    label = MultiLabel(len(datalist["class_names"]))(items[0]["label"])
    assert torch.isnan(label[14:]).all() and not torch.isnan(label[:14]).any()


def test_weights_give_every_source_and_category_equal_mass(built: tuple[dict[str, Any], Path]) -> None:
    datalist, _ = built
    for split in ("training", "validation"):
        items = datalist[split]
        by_source: dict[str, list[float]] = defaultdict(list)
        by_category: dict[tuple[str, str], list[float]] = defaultdict(list)
        for item in items:
            by_source[item["source"]].append(item["weight"])
            by_category[(item["source"], item["category"])].append(item["weight"])
        n_categories = Counter(source for source, _ in by_category)
        assert math.fsum(it["weight"] for it in items) == pytest.approx(1.0, rel=1e-12)
        for weights in by_source.values():
            assert math.fsum(weights) == pytest.approx(1 / len(by_source), rel=1e-12)
        for (source, _), weights in by_category.items():
            assert math.fsum(weights) == pytest.approx(1 / (len(by_source) * n_categories[source]), rel=1e-12)
            assert len(set(weights)) == 1  # equal inside a category
    report = {(r["source"], r["category"]): r for r in datalist["sampling"]}
    assert sum(r["items"] for r in report.values()) == len(datalist["training"])
    assert report[("derm", "melanoma")]["expected_share"] == pytest.approx(1 / 12)


def test_weighted_sampler_draws_sources_and_categories_equally(built: tuple[dict[str, Any], Path]) -> None:
    datalist, _ = built
    items = datalist["training"]
    sampler = torch.utils.data.WeightedRandomSampler([it["weight"] for it in items], 40_000, replacement=True,
                                                     generator=torch.Generator().manual_seed(0))  # fmt: skip
    drawn = [items[i] for i in sampler]
    shares = Counter(it["source"] for it in drawn)
    assert all(abs(count / len(drawn) - 0.25) < 0.01 for count in shares.values()), shares
    derm = Counter(it["category"] for it in drawn if it["source"] == "derm")  # 12 / 3 / 6 images on disk
    assert all(abs(count / sum(derm.values()) - 1 / 3) < 0.03 for count in derm.values()), derm


def test_categories_are_the_class_or_the_rarest_positive(built: tuple[dict[str, Any], Path]) -> None:
    datalist, _ = built
    items = datalist["training"] + datalist["validation"]
    names = datalist["class_names"]
    for item in (it for it in items if it["source"] == "derm"):
        assert item["category"] == names[item["label"].index(1.0)].split("/")[1]
    cxr = [it for it in items if it["source"] == "cxr"]
    positives = Counter(c for it in cxr for c, v in enumerate(it["label"]) if v == 1.0)
    for item in cxr:
        present = [c for c, v in enumerate(item["label"]) if v == 1.0]
        rarest = min(present, key=lambda c: (positives[c], c)) if present else None
        assert item["category"] == (names[rarest].split("/")[1] if present else "none")


def test_validation_is_drawn_seeded_for_sources_without_one(sources: dict[str, Path], tmp_path: Path) -> None:
    folder = [source_list(sources)[3]]
    first = build_general_datalist(folder, tmp_path / "a", val_fraction=0.25, seed=0)
    again = build_general_datalist(folder, tmp_path / "b", val_fraction=0.25, seed=0)
    other = build_general_datalist(folder, tmp_path / "c", val_fraction=0.25, seed=5)
    assert first["sources"][0]["validation_drawn"] and len(first["validation"]) == round(0.25 * 21)
    names = [[Path(it["image"]).as_posix().split("derm/")[1] for it in d["validation"]] for d in (first, again, other)]
    assert names[0] == names[1] and names[0] != names[2]


def test_modality_targets_are_appended_and_always_known(sources: dict[str, Path], tmp_path: Path) -> None:
    datalist = build_general_datalist(source_list(sources), tmp_path, val_fraction=0.25, target="modality+class")
    assert datalist["class_names"][-3:] == ["modality:xray", "modality:histology", "modality:dermoscopy"]
    for item in datalist["training"]:
        onehot = item["label"][-3:]
        assert onehot == [1.0 if m == item["modality"] else 0.0 for m in ("xray", "histology", "dermoscopy")]


def test_multiclass_medmnist_rgb_becomes_one_hot(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {f"{p}_images": rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8) for p, n in
              (("train", 9), ("val", 3), ("test", 3))}  # fmt: skip
    arrays |= {f"{p}_labels": np.arange(n).reshape(-1, 1) % 3 for p, n in (("train", 9), ("val", 3), ("test", 3))}
    np.savez(tmp_path / "blood.npz", **arrays)
    source = {"name": "blood", "kind": "medmnist", "path": str(tmp_path / "blood.npz"), "modality": "microscopy",
              "class_names": ["a", "b", "c"]}  # fmt: skip
    datalist = build_general_datalist([source], tmp_path / "out")
    assert [it["label"] for it in datalist["training"][:4]] == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0],
                                                                [1.0, 0.0, 0.0]]  # fmt: skip
    assert [it["category"] for it in datalist["training"][:3]] == ["a", "b", "c"]
    assert not datalist["sources"][0]["multi_label"]
    assert Image.open(tmp_path / "out" / datalist["training"][0]["image"]).mode == "RGB"


def test_embedded_dataset_gives_the_bundle_default_classes(tmp_path: Path) -> None:
    datalist_path = make_general_medical_dataset(tmp_path, seed=0, image_size=32, n_images=8)
    datalist = json.loads(datalist_path.read_text())
    assert datalist_path == tmp_path / "datalist.json" and (tmp_path / "sources.yaml").is_file()
    assert datalist["class_names"] == json.loads(BUNDLE_INFERENCE.read_text())["default_class_names"]
    assert {s["name"]: s["test_excluded"] > 0 for s in datalist["sources"]} == {
        "chestxray14": True, "bcss": True, "chestmnist": True, "mammography": False}  # fmt: skip
    assert any(it["image"].endswith(".dcm") for it in datalist["training"])
