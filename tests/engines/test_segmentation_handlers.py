"""Segmentation handlers on a real ignite Engine fed with decollated items, as a MONAI evaluator produces."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor
from PIL import Image

from common.engines import MeanDice, SegmentationMaskWriter, SegmentationReportHandler
from common.engines import segmentation as segmentation_module
from common.errors import ConfigError, DataError
from common.metrics import compute_segmentation_metrics

NAMES = ["tumor", "stroma", "necrosis"]
# Three 3x4 images; column 3 is outside the annotation in each. Predictions are given as one-hot-ish scores.
TARGETS = [
    np.array([[1, 1, 2, 0], [1, 2, 2, 0], [3, 3, 2, 0]]),
    np.array([[2, 2, 2, 0], [2, 1, 1, 0], [2, 1, 1, 0]]),
    np.array([[3, 3, 3, 0], [3, 3, 1, 0], [2, 2, 1, 0]]),
]
PREDS = [
    np.array([[1, 1, 1, 3], [1, 2, 2, 3], [3, 2, 2, 3]]),
    np.array([[2, 2, 2, 1], [2, 2, 1, 1], [2, 1, 1, 1]]),
    np.array([[3, 3, 1, 2], [3, 3, 1, 2], [2, 2, 1, 2]]),
]
MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.1]


def _scores(labels: np.ndarray) -> torch.Tensor:
    """Class scores (K, H, W) whose argmax + 1 is ``labels``: softmax of 4 * one-hot."""
    onehot = torch.nn.functional.one_hot(torch.from_numpy(labels) - 1, len(NAMES)).permute(2, 0, 1).float()
    return torch.softmax(4 * onehot, dim=0)


def _image(index: int) -> torch.Tensor:
    """A deterministic [0, 1] RGB image (3, 3, 4)."""
    return torch.linspace(0, 1, 36).reshape(3, 3, 4).roll(index, dims=2)


def _engine(
    files: list[str] | None = None, batch: int = 2, normalise: bool = False, meta: dict | None = None
) -> Engine:
    files = files or [f"/data/rois/case_{i}.png" for i in range(len(PREDS))]

    def step(engine: Engine, start: int) -> list[dict]:
        items = []
        for i in range(start, min(start + batch, len(PREDS))):
            image = _image(i)
            if normalise:
                image = (image - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
            items.append({
                "pred": _scores(PREDS[i]),
                "label": MetaTensor(torch.from_numpy(TARGETS[i])[None].float()),
                "image": MetaTensor(image, meta={"filename_or_obj": files[i], **(meta or {})}),
            })
        return items

    return Engine(step)


STARTS = [0, 2]


def test_report_handler_matches_metrics_on_all_images(tmp_path: Path) -> None:
    handler = SegmentationReportHandler(tmp_path / "eval", NAMES, n_overlays=2, title="Val")
    engine = _engine()
    handler.attach(engine)
    engine.run(STARTS)
    engine.run(STARTS)  # a second run starts afresh
    expected = compute_segmentation_metrics(PREDS, TARGETS, NAMES)
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved == handler.metrics == json.loads(json.dumps(expected))
    assert saved["n_images"] == 3
    assert sorted(p.name for p in (tmp_path / "eval" / "overlays").iterdir()) == ["case_0.png", "case_1.png"]
    assert (tmp_path / "eval" / "report.md").read_text().startswith("# Val\n")


def test_report_handler_keeps_only_the_first_overlays(tmp_path: Path) -> None:
    handler = SegmentationReportHandler(tmp_path / "eval", NAMES, n_overlays=1, reverse_indexing=True)
    engine = _engine()
    handler.attach(engine)
    engine.run(STARTS)
    (name, rgb, truth, pred), = handler.overlays
    assert name == "case_0"
    np.testing.assert_array_equal(truth, TARGETS[0].T)
    np.testing.assert_array_equal(pred, PREDS[0].T)
    assert rgb.shape == (4, 3, 3)


@pytest.mark.parametrize("normalise", [True, False], ids=["undo-mean-std", "min-max"])
def test_report_handler_recovers_the_image_for_pictures(tmp_path: Path, normalise: bool) -> None:
    stats = {"mean": MEAN, "std": STD} if normalise else {}
    handler = SegmentationReportHandler(tmp_path / "eval", NAMES, n_overlays=1, **stats)
    engine = _engine(normalise=normalise)
    handler.attach(engine)
    engine.run(STARTS)
    expected = np.round(_image(0).numpy().transpose(1, 2, 0) * 255).astype(np.uint8)  # already spans 0..1
    np.testing.assert_allclose(handler.overlays[0][1].astype(int), expected.astype(int), atol=1)



def test_report_handler_without_plots_keeps_no_overlays_and_writes_no_png(tmp_path: Path) -> None:
    handlers = {plots: SegmentationReportHandler(tmp_path / str(plots), NAMES, n_overlays=2, plots=plots)
                for plots in (True, False)}
    for handler in handlers.values():
        engine = _engine()
        handler.attach(engine)
        engine.run(STARTS)
    assert len(handlers[True].overlays) == 2 and handlers[False].overlays == []  # nothing collected to draw
    assert sorted(p.name for p in (tmp_path / "False").iterdir()) == ["metrics.json", "report.md"]
    assert (tmp_path / "False" / "metrics.json").read_bytes() == (tmp_path / "True" / "metrics.json").read_bytes()
    assert handlers[False].metrics == handlers[True].metrics

def test_report_handler_needs_both_mean_and_std(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="give both mean and std"):
        SegmentationReportHandler(tmp_path, NAMES, mean=MEAN)


def _mean_dice(items: list[dict]) -> tuple[list, list]:
    return [i["pred"] for i in items], [i["label"] for i in items]


def test_mean_dice_equals_mean_of_defined_class_dice() -> None:
    metric = MeanDice(num_classes=3, output_transform=_mean_dice)
    engine = _engine()
    metric.attach(engine, "mean_dice")
    engine.run(STARTS)
    expected = compute_segmentation_metrics(PREDS, TARGETS, NAMES)["mean_dice"]
    assert engine.state.metrics["mean_dice"] == pytest.approx(expected, rel=1e-12)


def test_mean_dice_accepts_batched_tensors() -> None:
    metric = MeanDice(num_classes=3)
    metric.update((torch.stack([_scores(p) for p in PREDS]), torch.from_numpy(np.stack(TARGETS))[:, None]))
    assert metric.compute() == pytest.approx(compute_segmentation_metrics(PREDS, TARGETS, NAMES)["mean_dice"])


def test_mean_dice_sums_confusion_matrices_over_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Rank 0 saw image 0; the all_reduce stands in for rank 1, which saw images 1 and 2.
    other = MeanDice(num_classes=3)
    other.update(([_scores(p) for p in PREDS[1:]], [torch.from_numpy(t)[None] for t in TARGETS[1:]]))
    monkeypatch.setattr(segmentation_module.idist, "all_reduce", lambda t: t + torch.from_numpy(other._confusion))
    metric = MeanDice(num_classes=3)
    metric.update(([_scores(PREDS[0])], [torch.from_numpy(TARGETS[0])[None]]))
    assert metric.compute() == pytest.approx(compute_segmentation_metrics(PREDS, TARGETS, NAMES)["mean_dice"])


def test_mean_dice_refuses_a_run_without_annotated_pixels() -> None:
    metric = MeanDice(num_classes=3)
    metric.update(([_scores(PREDS[0])], [torch.zeros(1, 3, 4)]))
    with pytest.raises(DataError, match="no annotated pixel"):
        metric.compute()


def test_mask_writer_writes_pngs_named_after_inputs_and_classes_once(tmp_path: Path) -> None:
    writer = SegmentationMaskWriter(tmp_path / "masks", NAMES)
    engine = _engine(meta={"width": 4, "height": 3})
    writer.attach(engine)
    engine.run(STARTS)
    assert json.loads((tmp_path / "masks" / "classes.json").read_text()) == {"1": "tumor", "2": "stroma",
                                                                             "3": "necrosis"}
    (tmp_path / "masks" / "classes.json").unlink()
    engine.run(STARTS)
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["case_0.png", "case_1.png", "case_2.png"]
    for i, pred in enumerate(PREDS):
        with Image.open(tmp_path / "masks" / f"case_{i}.png") as png:
            assert png.mode == "L"
            np.testing.assert_array_equal(np.asarray(png), pred)


def test_mask_writer_transposes_for_reverse_indexing_and_checks_the_size(tmp_path: Path) -> None:
    writer = SegmentationMaskWriter(tmp_path / "masks", NAMES, reverse_indexing=True)
    engine = _engine(meta={"width": 4, "height": 3})
    writer.attach(engine)
    with pytest.raises(DataError, match=r"would be 3x4 \(WxH\) but the input is 4x3; check reverse_indexing"):
        engine.run(STARTS)
    assert not (tmp_path / "masks" / "case_0.png").exists()


def test_mask_writer_writes_nifti_with_the_input_affine(tmp_path: Path) -> None:
    affine = torch.tensor([[0.5, 0, 0, 10], [0, 0.5, 0, -3], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float64)
    files = [f"/data/vol_{i}.nii.gz" for i in range(3)]
    writer = SegmentationMaskWriter(tmp_path / "masks", NAMES)
    engine = _engine(files, meta={"affine": affine})
    writer.attach(engine)
    engine.run(STARTS)
    saved = nib.load(tmp_path / "masks" / "vol_2.nii.gz")
    np.testing.assert_array_equal(saved.affine, affine.numpy())
    assert saved.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(saved.dataobj), PREDS[2])
    assert sorted(p.name for p in (tmp_path / "masks").iterdir())[0] == "classes.json"


def test_mask_writer_keeps_subfolders_with_relative_to(tmp_path: Path) -> None:
    files = ["/data/a/x.png", "/data/b/x.png", "/data/y.png"]
    writer = SegmentationMaskWriter(tmp_path / "masks", NAMES, relative_to="/data")
    engine = _engine(files)
    writer.attach(engine)
    engine.run(STARTS)
    assert [p.relative_to(tmp_path / "masks").as_posix() for p in writer.written] == ["a/x.png", "b/x.png", "y.png"]


def test_mask_writer_refuses_two_inputs_with_one_output_name(tmp_path: Path) -> None:
    writer = SegmentationMaskWriter(tmp_path / "masks", NAMES)
    engine = _engine(["/data/a/x.png", "/data/b/x.png", "/data/y.png"])
    writer.attach(engine)
    with pytest.raises(DataError, match="same output file .*x.png; set relative_to"):
        engine.run(STARTS)


def test_mask_writer_refuses_more_than_255_classes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="found 256"):
        SegmentationMaskWriter(tmp_path, [f"c{i}" for i in range(256)])


def test_handlers_need_decollated_output(tmp_path: Path) -> None:
    writer = SegmentationMaskWriter(tmp_path / "masks", NAMES)
    engine = Engine(lambda engine, batch: {"pred": torch.zeros(1, 3, 2, 2)})
    writer.attach(engine)
    with pytest.raises(DataError, match="needs decollated output"):
        engine.run([0])
