"""A live medxfer MONAI Label server, started by the test on a free port, used through HTTP only.

Offline, CPU, tiny settings: the five bundles are listed, images are uploaded and labelled, the chest and UNet
bundles train one epoch each in MONAI Label's own training subprocess, predictions follow the new weights, and
active learning proposes an unlabelled image. The server log must hold no traceback.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from common.label.server import LiveServer, running_server
from common.label.studies import make_studies

CHEST = "chest_xray_classification"
UNET = "breast_histology_segmentation_unet"
MAMMO = "breast_mammo_classification"
FIVE = {CHEST, MAMMO, UNET, "breast_histology_segmentation_swin_unetr", "medical_general_pretraining"}
SINGLE_LABEL = "medical_image_classification"
CHEST_TRAIN = {"max_epochs": 1, "pretrained": "none", "image_size": 32, "batch_size": 4}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("label_server")
    make_studies(root / "studies", n_per_bundle={CHEST: 8, MAMMO: 2, UNET: 3}, labelled_fraction=0.0,
                 tile_size=96, seed=1)
    with running_server(root / "studies", workspace=root / "workspace", log=root / "server.log") as live:
        yield live


def _post(server: LiveServer, path: str, **kwargs: object) -> httpx.Response:
    return httpx.post(server.url + path, timeout=300, **kwargs)  # type: ignore[arg-type]


def _save_json_label(server: LiveServer, image: str, label: dict) -> httpx.Response:
    files = {"label": (f"{image}.json", json.dumps(label).encode(), "application/json")}
    return httpx.put(f"{server.url}/datastore/label", params={"image": image, "tag": "final"}, files=files,
                     timeout=60)


def _save_mask(server: LiveServer, image: str, mask: np.ndarray) -> httpx.Response:
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8)).save(buffer, format="PNG")
    files = {"label": (f"{image}.png", buffer.getvalue(), "image/png")}
    return httpx.put(f"{server.url}/datastore/label", params={"image": image, "tag": "final"}, files=files,
                     timeout=60)


def _train(server: LiveServer, model: str, params: dict) -> dict:
    """POST /train/<model> (MONAI Label's background subprocess) and wait until it is done."""
    started = _post(server, f"/train/{model}", json=params)
    assert started.status_code == 200, started.text
    task_id = started.json()["id"]
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        status = httpx.get(f"{server.url}/train/", params={"all": True}, timeout=30).json()
        task = next(t for t in status if t["id"] == task_id)
        if task["status"] in ("DONE", "ERROR"):
            assert task["status"] == "DONE", "\n".join(task.get("details", []))
            return task
        time.sleep(1)
    raise AssertionError(f"training of {model} did not finish in time")


def _infer_json(server: LiveServer, model: str, image: str) -> httpx.Response:
    return _post(server, f"/infer/{model}", params={"image": image, "output": "json"})


def test_info_lists_the_bundles_with_their_labels(server: LiveServer) -> None:
    """Every bundle is a model; the single-label one has no trainer (the label store writes multi-label findings)."""
    info = httpx.get(server.url + "/info/", timeout=30).json()
    assert set(info["models"]) == FIVE | {SINGLE_LABEL} and set(info["trainers"]) == FIVE
    assert info["models"][CHEST]["labels"][11:13] == ["Fibrosis", "Pleural_Thickening"]
    assert info["models"][UNET]["labels"] == {"tumor": 1, "stroma": 2, "inflammatory": 3, "necrosis": 4, "other": 5}
    assert info["models"][MAMMO]["type"] == "classification" and info["models"][UNET]["type"] == "segmentation"
    assert not any(model["trained"] for model in info["models"].values())
    assert {"uncertainty", "random"} <= set(info["strategies"])


def test_upload_then_infer_on_an_untrained_bundle_is_409(server: LiveServer, tmp_path: Path) -> None:
    image = tmp_path / "upload.png"
    Image.fromarray(np.full((40, 60), 128, dtype=np.uint8)).save(image)
    with open(image, "rb") as handle:
        added = httpx.put(f"{server.url}/datastore/image", params={"image": "chest_upload"},
                          data={"params": json.dumps({"model": CHEST})}, files={"file": ("upload.png", handle)},
                          timeout=60)
    assert added.status_code == 200, added.text
    for model, image in [(MAMMO, "mammo_0001"), ("medical_general_pretraining", "chest_upload"),
                         ("breast_histology_segmentation_swin_unetr", "histo_0001")]:
        answer = _infer_json(server, model, image)
        assert answer.status_code == 409, (model, answer.text)
        assert "no trained model yet" in answer.json()["detail"] and "\n" not in answer.json()["detail"]


def test_labels_are_checked_against_the_bundle(server: LiveServer) -> None:
    wrong = _save_json_label(server, "chest_0001", {"model": CHEST, "findings": ["Pleural thickening"]})
    assert wrong.status_code == 400
    assert "Pleural thickening" in wrong.text and "Pleural_Thickening" in wrong.text  # the valid names are listed
    bad_mask = _save_mask(server, "histo_0001", np.ones((10, 10)))
    assert bad_mask.status_code == 400 and "10x10" in bad_mask.text and "96x96" in bad_mask.text
    too_few = _post(server, f"/train/{CHEST}", json=CHEST_TRAIN)
    assert too_few.status_code == 400 and "at least" in too_few.json()["detail"]


def test_chest_trains_serves_new_weights_and_ranks(server: LiveServer) -> None:
    for index, findings in enumerate([["Effusion"], [], ["Effusion", "Mass"], [], ["Mass"]], start=1):
        saved = _save_json_label(server, f"chest_{index:04d}", {"model": CHEST, "findings": findings})
        assert saved.status_code == 200, saved.text
    _train(server, CHEST, CHEST_TRAIN)
    first = _infer_json(server, CHEST, "chest_0007")
    assert first.status_code == 200, first.text
    result = first.json()
    assert len(result["classes"]) == 14 and result["classes"][2]["name"] == "Effusion"
    assert result["positive"] == [c["name"] for c in result["classes"] if c["probability"] >= c["threshold"]]

    ranked = _post(server, "/activelearning/uncertainty", json={"model": CHEST})
    assert ranked.status_code == 200, ranked.text
    assert ranked.json()["id"] in {"chest_0006", "chest_0007", "chest_0008", "chest_upload"}  # unlabelled ones
    assert ranked.json()["model_version"] == result["model_version"]

    _train(server, CHEST, {**CHEST_TRAIN, "pretrained": "current", "learning_rate": 0.01})
    second = _infer_json(server, CHEST, "chest_0007").json()
    assert second["model_version"] != result["model_version"]
    before = np.array([c["probability"] for c in result["classes"]])
    after = np.array([c["probability"] for c in second["classes"]])
    assert not np.allclose(before, after, atol=1e-6)


def test_unet_trains_on_masks_and_answers_a_mask_of_the_tile_shape(server: LiveServer) -> None:
    for index in (1, 2):
        image = f"histo_{index:04d}"
        tile = httpx.get(f"{server.url}/datastore/image", params={"image": image}, timeout=60)
        shape = np.asarray(Image.open(io.BytesIO(tile.content))).shape[:2]
        mask = (np.arange(shape[0] * shape[1]).reshape(shape) // 7) % 6  # codes 0..5, 0 = not annotated
        saved = _save_mask(server, image, mask)
        assert saved.status_code == 200, saved.text
    _train(server, UNET, {"max_epochs": 1, "pretrained": "none", "batch_size": 2})
    answer = _post(server, f"/infer/{UNET}", params={"image": "histo_0003", "output": "image"})
    assert answer.status_code == 200, answer.text
    mask = np.asarray(Image.open(io.BytesIO(answer.content)))
    assert mask.shape == shape and mask.dtype == np.uint8 and 1 <= mask.min() and mask.max() <= 5
    ranked = _post(server, "/activelearning/uncertainty", json={"model": UNET})
    assert ranked.status_code == 200 and ranked.json()["id"] == "histo_0003"


def test_server_log_has_no_traceback(server: LiveServer) -> None:
    log = server.log_text()
    assert "Application startup complete" in log
    assert "Traceback" not in log, log[log.find("Traceback") - 2000:log.find("Traceback") + 3000]
