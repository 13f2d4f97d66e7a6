"""MedxferDatastore: labels checked against the served bundles (400 + one line), candidates, training items."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("monailabel", reason="MONAI Label is not installed (requirements-label.txt)")

from fastapi import HTTPException  # noqa: E402
from PIL import Image  # noqa: E402

from common.label.bundles import LabelBundle, discover_bundles  # noqa: E402
from common.label.datastore import MedxferDatastore  # noqa: E402
from tests.label.conftest import refused  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CHEST = "chest_xray_classification"
MAMMO = "breast_mammo_classification"
UNET = "breast_histology_segmentation_unet"
SWIN = "breast_histology_segmentation_swin_unetr"
HISTO_HW = (24, 32)  # not square: a transposed mask is caught


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LabelBundle]:
    return discover_bundles(REPO / "bundles", tmp_path_factory.mktemp("workspace"))


def write_png(file: Path, array: np.ndarray) -> str:
    Image.fromarray(array).save(file)
    return str(file)


def make_studies(folder: Path, bundles: dict[str, LabelBundle]) -> MedxferDatastore:
    """chest_0..3 (chest), histo_0..2 (UNet), free_0 (no model): tiny PNGs added with their image info."""
    source = folder.parent / f"{folder.name}_source"
    source.mkdir()
    store = MedxferDatastore(folder, bundles, extensions=["*.png"], auto_reload=False)
    rng = np.random.default_rng(0)
    images = {f"chest_{i}": (CHEST, (32, 32)) for i in range(4)}
    images.update({f"histo_{i}": (UNET, (*HISTO_HW, 3)) for i in range(3)})
    images["free_0"] = (None, (32, 32))
    for image_id, (model, shape) in images.items():
        file = write_png(source / f"{image_id}.png", rng.integers(0, 255, shape, dtype=np.uint8))
        store.add_image(image_id, file, {"model": model} if model else {})
    return store


@pytest.fixture()
def store(tmp_path: Path, bundles: dict[str, LabelBundle]) -> MedxferDatastore:
    return make_studies(tmp_path / "studies", bundles)


def label_json(tmp_path: Path, content: object, name: str = "label.json") -> str:
    file = tmp_path / name
    file.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(file)


def mask(codes: tuple[int, ...] = (0, 1, 2, 5), shape: tuple[int, int] = HISTO_HW) -> np.ndarray:
    return np.resize(np.array(codes, dtype=np.uint8), shape)


# -- classification labels ------------------------------------------------------------------------------------------
def test_classification_label_is_stored_in_class_order_with_info(store: MedxferDatastore, tmp_path: Path) -> None:
    file = label_json(tmp_path, {"model": CHEST, "findings": ["Mass", "Effusion"]})
    assert store.save_label("chest_0", file, "final", {}) == "chest_0"
    info = store.get_label_info("chest_0", "final")
    assert (info["model"], info["findings"]) == (CHEST, ["Effusion", "Mass"])
    stored = json.loads(Path(store.get_label_uri("chest_0", "final")).read_text())
    assert stored == {"model": CHEST, "findings": ["Effusion", "Mass"]}


def test_classification_model_may_come_in_the_params(store: MedxferDatastore, tmp_path: Path) -> None:
    store.save_label("chest_1", label_json(tmp_path, {"findings": []}), "final", {"model": CHEST})
    assert store.get_label_info("chest_1", "final")["findings"] == []


@pytest.mark.parametrize(
    ("content", "params", "message"),
    [
        ("{not json", {}, "not valid JSON"),
        ([CHEST, ["Effusion"]], {}, "a JSON list, expected an object like"),
        ({"findings": ["Effusion"]}, {}, f"no model named; .*one of: {MAMMO}, {CHEST}, medical_general_pretraining"),
        ({"model": "chest", "findings": []}, {}, f"unknown model 'chest'; classification models served: {MAMMO}"),
        ({"model": UNET, "findings": []}, {}, f"{UNET} is a segmentation model: its labels are a mask image"),
        ({"model": CHEST, "findings": ["Efusion"]}, {},
         "unknown finding\\(s\\) 'Efusion' for chest.*did you mean 'Effusion'\\? valid findings: Atelectasis, "),
        ({"model": CHEST, "findings": ["Mass", "Mass"]}, {}, "listed more than once: Mass"),
        ({"model": CHEST, "findings": "Mass"}, {}, "must be a list of the present findings' names"),
        ({"model": CHEST, "finding": ["Mass"]}, {}, "unknown key\\(s\\) 'finding'"),
        ({"model": CHEST, "findings": []}, {"model": MAMMO}, "names model 'chest_xray_classification' but the params"),
        ({"model": MAMMO, "findings": []}, {}, f"the image was added for {CHEST}, but the label names {MAMMO}"),
    ],
    ids=["not-json", "not-object", "no-model", "unknown-model", "segmentation-model", "unknown-finding",
         "duplicate", "findings-not-list", "unknown-key", "params-disagree", "other-image-model"],
)
def test_classification_label_refusals(store: MedxferDatastore, tmp_path: Path, content: object, params: dict,
                                       message: str) -> None:
    detail = refused(store.save_label, "chest_2", label_json(tmp_path, content), "final", params)
    assert detail.startswith("label for image 'chest_2': ")
    assert re.search(message, detail), detail
    assert store.get_label_uri("chest_2", "final") == ""  # nothing saved


# -- segmentation masks ---------------------------------------------------------------------------------------------
def test_png_mask_is_stored_as_8bit_png_with_label_names(store: MedxferDatastore, tmp_path: Path) -> None:
    store.save_label("histo_0", write_png(tmp_path / "m.png", mask().astype(np.uint16) * 1), "final", {})
    stored = np.asarray(Image.open(store.get_label_uri("histo_0", "final")))
    assert stored.dtype == np.uint8 and np.array_equal(stored, mask())
    assert store.get_label_info("histo_0", "final")["label_names"] == {
        "tumor": 1, "stroma": 2, "inflammatory": 3, "necrosis": 4, "other": 5}


def test_nifti_mask_is_read_x_y_and_stored_as_png(store: MedxferDatastore, tmp_path: Path) -> None:
    nibabel = pytest.importorskip("nibabel")
    file = tmp_path / "m.nii.gz"
    nibabel.save(nibabel.Nifti1Image(mask().T[..., None].astype(np.float32), np.eye(4)), file)
    store.save_label("histo_1", str(file), "final", {"model": SWIN})
    assert store.get_label_uri("histo_1", "final").endswith("labels/final/histo_1.png")
    assert np.array_equal(np.asarray(Image.open(store.get_label_uri("histo_1", "final"))), mask())
    assert store.get_label_info("histo_1", "final")["model"] == SWIN


def _nifti(tmp_path: Path, array: np.ndarray) -> str:
    nibabel = pytest.importorskip("nibabel")
    nibabel.save(nibabel.Nifti1Image(array, np.eye(4)), tmp_path / "m.nii")
    return str(tmp_path / "m.nii")


@pytest.mark.parametrize(
    ("make", "image", "params", "message"),
    [
        (lambda t: write_png(t / "m.png", mask(shape=(32, 32))), "histo_0", {},
         "the mask is 32x32 \\(height x width\\) but the image is 24x32$"),
        (lambda t: _nifti(t, mask().astype(np.uint8)), "histo_0", {},
         "the mask is 32x24 .* image is 24x32 \\(NIfTI is read with x = column, y = row\\)"),
        (lambda t: write_png(t / "m.png", mask((0, 1, 6, 9))), "histo_0", {},
         "mask codes \\[6, 9\\] are outside 0..5 \\(0 = not annotated, 1 = tumor, 2 = stroma, 3 = inflammatory, "
         "4 = necrosis, 5 = other\\)"),
        (lambda t: _nifti(t, mask().T.astype(np.float32) / 2), "histo_0", {},
         "mask values must be whole class codes 0..5 .*found 0.5"),
        (lambda t: write_png(t / "m.png", np.zeros(HISTO_HW, np.uint8)), "histo_0", {}, "annotates no pixel"),
        (lambda t: write_png(t / "m.png", np.zeros((*HISTO_HW, 3), np.uint8)), "histo_0", {},
         "single-channel .* found mode RGB"),
        (lambda t: label_json(t, "\x89PNG garbage", "m.png"), "histo_0", {}, "cannot read the mask file"),
        (lambda t: label_json(t, "1 2 3", "m.txt"), "histo_0", {}, "unsupported file 'm.txt'; give a .json label"),
        (lambda t: write_png(t / "m.png", mask(shape=(32, 32))), "chest_0", {},
         f"the image was added for {CHEST} \\(classification\\), not for a segmentation label"),
        (lambda t: write_png(t / "m.png", mask()), "histo_0", {"model": CHEST}, f"{CHEST} is a classification model"),
    ],
    ids=["wrong-shape", "nifti-transposed", "out-of-range", "non-integer", "all-zero", "rgb", "unreadable",
         "unsupported-type", "classification-image", "classification-model"],
)
def test_mask_refusals(store: MedxferDatastore, tmp_path: Path, make: object, image: str, params: dict,
                       message: str) -> None:
    detail = refused(store.save_label, image, make(tmp_path), "final", params)  # type: ignore[operator]
    assert re.search(message, detail), detail
    assert store.get_label_uri(image, "final") == ""


def test_a_new_label_of_another_type_replaces_the_old_file(store: MedxferDatastore, tmp_path: Path) -> None:
    store.save_label("free_0", label_json(tmp_path, {"model": CHEST, "findings": []}), "final", {})
    old = Path(store.get_label_uri("free_0", "final"))
    store.save_label("free_0", write_png(tmp_path / "m.png", mask(shape=(32, 32))), "final", {})
    assert not old.exists() and store.get_label_uri("free_0", "final").endswith(".png")


# -- reading --------------------------------------------------------------------------------------------------------
def test_image_model(store: MedxferDatastore) -> None:
    assert (store.image_model("chest_0"), store.image_model("histo_0"), store.image_model("free_0")) == (
        CHEST, UNET, None)


def test_candidates(store: MedxferDatastore, bundles: dict[str, LabelBundle], tmp_path: Path) -> None:
    store.save_label("chest_0", label_json(tmp_path, {"model": CHEST, "findings": []}), "final", {})
    store.save_label("histo_0", write_png(tmp_path / "m.png", mask()), "final", {})
    assert store.candidates(bundles[CHEST]) == ["chest_1", "chest_2", "chest_3", "free_0"]
    assert store.candidates(bundles[MAMMO]) == ["free_0"]
    assert store.candidates(bundles[UNET]) == ["free_0", "histo_1", "histo_2"]
    assert store.candidates(bundles[SWIN]) == ["free_0", "histo_1", "histo_2"]  # UNet images serve Swin UNETR too


def test_training_items(store: MedxferDatastore, bundles: dict[str, LabelBundle], tmp_path: Path) -> None:
    store.save_label("chest_1", label_json(tmp_path, {"model": CHEST, "findings": ["Hernia", "Atelectasis"]}),
                     "final", {})
    store.save_label("chest_0", label_json(tmp_path, {"model": CHEST, "findings": []}), "final", {})
    store.save_label("free_0", label_json(tmp_path, {"model": MAMMO, "findings": ["malignant"]}), "final", {})
    store.save_label("histo_2", write_png(tmp_path / "m.png", mask()), "final", {})
    assert store.training_items(bundles[CHEST]) == [
        {"image": "chest_0.png", "label": [0] * 14},
        {"image": "chest_1.png", "label": [1] + [0] * 12 + [1]},
    ]
    assert store.training_items(bundles[MAMMO]) == [{"image": "free_0.png", "label": [1]}]
    assert store.training_items(bundles[UNET]) == [{"image": "histo_2.png", "label": "labels/final/histo_2.png"}]
    assert (store.studies / "labels" / "final" / "histo_2.png").is_file()


def test_image_ids_with_dots_keep_their_label_name(store: MedxferDatastore, tmp_path: Path) -> None:
    file = write_png(tmp_path / "scan.png", np.zeros((32, 32), np.uint8))
    store.add_image("1.2.840.5", file, {"model": CHEST})
    store.save_label("1.2.840.5", label_json(tmp_path, {"model": CHEST, "findings": ["Mass"]}), "final", {})
    assert store.get_label_uri("1.2.840.5", "final").endswith("labels/final/1.2.840.5.json")


def test_mask_for_an_unreadable_image_is_refused(store: MedxferDatastore, tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")
    store.add_image("broken", str(broken), {})
    detail = refused(store.save_label, "broken", write_png(tmp_path / "m.png", mask()), "final", {})
    assert "cannot read the image's size" in detail and "segmentation images are PNG or JPEG" in detail


def test_label_for_an_unknown_image_is_404(store: MedxferDatastore, tmp_path: Path) -> None:
    file = label_json(tmp_path, {"model": CHEST, "findings": []})
    with pytest.raises(HTTPException) as caught:
        store.save_label("no_such_image", file, "final", {})
    assert caught.value.status_code == 404 and "no_such_image" in caught.value.detail
