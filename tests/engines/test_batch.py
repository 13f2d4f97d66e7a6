"""PlainTensorBatch: plain tensors into the network, meta kept in the batch for the handlers."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor, list_data_collate
from monai.engines import SupervisedEvaluator

from common.engines import PlainTensorBatch, PredictionCollector
from common.engines.batch import as_plain_tensor
from common.engines.collect import item_filename, item_meta
from common.errors import DataError


def _batch(n: int = 3, with_label: bool = True) -> dict:
    items = [{"image": MetaTensor(torch.full((1, 4, 4), float(i)), meta={"filename_or_obj": f"/d/img_{i}.png"}),
              "patient_id": f"p{i}", **({"label": torch.tensor([i % 2, 1.0])} if with_label else {})}
             for i in range(n)]
    return list_data_collate(items)


def test_image_and_label_are_plain_tensors_with_the_same_values() -> None:
    batch = _batch()
    image, label = PlainTensorBatch()(batch, "cpu")
    assert type(image) is torch.Tensor and type(label) is torch.Tensor
    torch.testing.assert_close(image, batch["image"].as_tensor())
    assert image.data_ptr() == batch["image"].data_ptr()  # no copy on the same device
    assert isinstance(batch["image"], MetaTensor)  # the batch itself keeps its meta


def test_unlabelled_batch_gives_none() -> None:
    assert PlainTensorBatch()(_batch(with_label=False), "cpu")[1] is None


@pytest.mark.parametrize(("channels_last", "ndim", "expected"), [
    (True, 4, True), (False, 4, False), (True, 5, False),
], ids=["channels_last", "contiguous", "3d-unchanged"])
def test_channels_last_only_for_4d_images(channels_last: bool, ndim: int, expected: bool) -> None:
    image = torch.randn(2, 3, *([8] * (ndim - 2)))
    out, _ = PlainTensorBatch(channels_last=channels_last)({"image": image}, "cpu")
    assert out.is_contiguous() != expected


def test_augment_runs_after_the_move() -> None:
    seen = []

    def augment(image: torch.Tensor, label: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        seen.append(type(image))
        return image.flip(-1), label

    image, _ = PlainTensorBatch(augment=augment)(_batch(), "cpu")
    assert seen == [torch.Tensor]
    torch.testing.assert_close(image, _batch()["image"].as_tensor().flip(-1))


def test_pair_and_tensor_inputs() -> None:
    x, y = torch.zeros(2, 1, 4, 4), torch.ones(2)
    assert PlainTensorBatch()((MetaTensor(x), y), "cpu")[0].shape == x.shape
    assert PlainTensorBatch()(MetaTensor(x), "cpu")[1] is None


def test_missing_image_key_is_a_data_error() -> None:
    with pytest.raises(DataError, match="batch has no 'img' key; found keys"):
        PlainTensorBatch(image_key="img")(_batch(), "cpu")


def test_as_plain_tensor_keeps_plain_tensors() -> None:
    x = torch.zeros(2)
    assert as_plain_tensor(x) is x


def test_evaluator_network_sees_plain_tensors_and_collector_keeps_names_and_patients() -> None:
    seen: list[type] = []

    class Net(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(type(x))
            return x.mean(dim=(2, 3)).repeat(1, 2)

    collector = PredictionCollector()
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=[_batch(3), _batch(2)],
                                    network=Net(), prepare_batch=PlainTensorBatch(), val_handlers=[collector],
                                    postprocessing=lambda x: x)
    evaluator.run()
    assert set(seen) == {torch.Tensor}
    assert collector.filenames == [f"/d/img_{i}.png" for i in (0, 1, 2, 0, 1)]
    assert collector.patient_ids == ["p0", "p1", "p2", "p0", "p1"]
    assert collector.y_prob.shape == (5, 2)


def test_engine_without_decollated_batch_reads_meta_from_items() -> None:
    collector = PredictionCollector()
    engine = Engine(lambda e, b: [{"pred": torch.zeros(2), "image": MetaTensor(torch.zeros(1),
                                                                                meta={"filename_or_obj": "a.png"})}])
    collector.attach(engine)
    engine.run([0], max_epochs=1)
    assert collector.filenames == ["a.png"]


def test_item_meta_falls_back_to_the_batch_entry() -> None:
    affine = torch.eye(4) * 2
    source = {"image": MetaTensor(torch.zeros(1, 2, 2), meta={"filename_or_obj": "/d/a.nii.gz", "affine": affine})}
    item = {"image": torch.zeros(1, 2, 2), "pred": torch.zeros(2, 2, 2)}  # what the network saw: no meta
    meta = item_meta(item, "image", source)
    assert meta["filename_or_obj"] == "/d/a.nii.gz" and torch.equal(torch.as_tensor(meta["affine"]), affine)
    assert item_meta(item, "image", None) == {}
    own = {"image": MetaTensor(torch.zeros(1), meta={"filename_or_obj": "own.png"})}
    assert item_filename(own, source=source) == "own.png"  # the item's own meta wins
