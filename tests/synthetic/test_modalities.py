"""Synthetic dermoscopy, endoscopy and brain-MRI class-folder sets: layout, determinism, adapter round trip, signal."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from common.errors import ConfigError
from common.synthetic import (
    BRAIN_MRI_CLASSES,
    DERMOSCOPY_CLASSES,
    ENDOSCOPY_CLASSES,
    make_embedded_dataset,
    render_brain_mri,
    render_dermoscopy,
    render_endoscopy,
)
from common.synthetic.class_folders import write_class_folders

RENDERERS = {
    "dermoscopy": (render_dermoscopy, DERMOSCOPY_CLASSES, 3),
    "endoscopy": (render_endoscopy, ENDOSCOPY_CLASSES, 3),
    "brain-mri": (render_brain_mri, BRAIN_MRI_CLASSES, 2),
}


@pytest.mark.parametrize("layout", list(RENDERERS))
def test_renderer_is_seeded(layout: str) -> None:
    render, classes, channels = RENDERERS[layout]
    for cls in range(len(classes)):
        image = render(np.random.default_rng([0, cls]), cls, 40)
        assert image.dtype == np.uint8 and image.ndim == channels and image.shape[:2] == (40, 40)
        np.testing.assert_array_equal(image, render(np.random.default_rng([0, cls]), cls, 40))


@pytest.mark.parametrize("layout", list(RENDERERS))
def test_signal_is_learnable(layout: str) -> None:
    """A logistic regression on 16 px thumbnails of 32 px images beats chance by a clear margin (a CNN does better:
    the signs are shapes and textures at varying places, which a linear model on pixels sees only in part)."""
    render, classes, _ = RENDERERS[layout]
    n = len(classes)
    images = [render(np.random.default_rng([5, i]), i % n, 32) for i in range(240)]
    x = np.stack([cv2.resize(im, (16, 16), interpolation=cv2.INTER_AREA).ravel() / 255.0 for im in images])
    y = np.arange(240) % n
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=300))
    assert model.fit(x[:180], y[:180]).score(x[180:], y[180:]) > 1.0 / n + 0.15


@pytest.mark.parametrize("layout", list(RENDERERS))
def test_embedded_round_trip(tmp_path: Path, layout: str) -> None:
    _, classes, channels = RENDERERS[layout]
    datalist = make_embedded_dataset(layout, tmp_path, {"n_patients": 24, "image_size": 32, "seed": 1})
    assert datalist["classes"] == sorted(classes)
    for split in ("training", "validation", "test"):
        assert {item["label"] for item in datalist[split]} == set(range(len(classes)))
    item = datalist["training"][0]
    with Image.open(tmp_path / item["image"]) as image:
        assert image.mode == ("RGB" if channels == 3 else "L") and image.size == (32, 32)
    assert ("patient_id" in item) == (layout != "brain-mri")
    if layout == "brain-mri":
        assert all(item["image"].startswith("Testing/") for item in datalist["test"])
        assert Path(datalist["test"][0]["image"]).name.startswith("Te-")
    again = tmp_path.parent / f"{tmp_path.name}-again"
    assert make_embedded_dataset(layout, again, {"n_patients": 24, "image_size": 32, "seed": 1}) == datalist
    first, second = (sorted(p.relative_to(r) for p in r.rglob("*.jpg")) for r in (tmp_path, again))
    assert first == second
    assert all((tmp_path / p).read_bytes() == (again / p).read_bytes() for p in first)


def test_patients_have_several_images(tmp_path: Path) -> None:
    make_embedded_dataset("dermoscopy", tmp_path, {"n_patients": 12, "image_size": 16, "max_images_per_patient": 3})
    rows = (tmp_path / "patients.csv").read_text().splitlines()[1:]
    patients = [row.split(",")[1] for row in rows]
    assert len(set(patients)) == 12 and len(patients) > 12


@pytest.mark.parametrize(
    "kwargs, message",
    [({"classes": ["a"]}, "two distinct classes"), ({"n_patients": 1}, "n_patients must be"),
     ({"image_size": 8}, "image_size must be"), ({"suffix": ".gif"}, "suffix")],
    ids=["one-class", "few-patients", "small", "suffix"],
)  # fmt: skip
def test_writer_rejects_bad_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    render: Callable = lambda rng, cls, size: np.zeros((size, size), np.uint8)  # noqa: E731
    args = {"classes": ["a", "b"], "n_patients": 4, "image_size": 16} | kwargs
    suffix = args.pop("suffix", ".png")
    with pytest.raises(ConfigError, match=message):
        write_class_folders(tmp_path, render, args["classes"], args["n_patients"], 1, args["image_size"], 0,
                            suffix=suffix)  # fmt: skip
