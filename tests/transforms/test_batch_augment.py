"""BatchAugment (the in-batch, on-device path) against the DataLoader path: same parameter distributions, drawn per
sample; exact agreement when the draw is fixed; augment_device selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose, RandAffined, RandFlipd
from scipy.stats import binomtest, ks_2samp

from common.engines import PlainTensorBatch
from common.errors import ConfigError
from common.transforms import ToImageNetInputd
from common.transforms.batch_augment import BatchAugment, augment_in_batch

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class RecordAngle:
    """Callable placed after a RandAffined: records the rotation it applied (0 when it did not fire)."""

    def __init__(self, affine: RandAffined) -> None:
        self.affine, self.angles = affine, []

    def __call__(self, item: dict) -> dict:
        fired = self.affine._do_transform
        self.angles.append(float(self.affine.rand_affine.rand_affine_grid.rotate_params[0]) if fired else 0.0)
        return item


def _affine(seed: int) -> tuple[list, RecordAngle]:
    affine = RandAffined(keys="image", prob=0.5, rotate_range=[np.deg2rad(10.0)], padding_mode="zeros")
    affine.set_random_state(seed)
    record = RecordAngle(affine)
    return [affine, record], record


def _cpu_path(transforms: list, images: torch.Tensor) -> torch.Tensor:
    """What the DataLoader workers do: per item, augmentation then normalisation."""
    pipeline = Compose([*transforms, ToImageNetInputd(keys="image", mean=MEAN, std=STD)])
    return torch.stack([torch.as_tensor(pipeline({"image": image})["image"]) for image in images])


def _normalised(images: torch.Tensor) -> torch.Tensor:
    return _cpu_path([], images)


def test_flip_rate_is_binomial_per_sample_and_matches_the_cpu_path() -> None:
    n_batches, batch = 40, 50
    x = torch.arange(4.0).reshape(1, 1, 1, 4).repeat(batch, 1, 1, 1)
    augment = BatchAugment([RandFlipd(keys="image", prob=0.5, spatial_axis=1)], seed=1)
    per_batch = [sum(bool(torch.equal(o, x[0].flip(-1))) for o in augment(x, None)[0]) for _ in range(n_batches)]
    assert all(0 < k < batch for k in per_batch)  # drawn per sample, not once per batch
    n = n_batches * batch
    assert binomtest(sum(per_batch), n, 0.5).pvalue > 1e-3
    cpu = RandFlipd(keys="image", prob=0.5, spatial_axis=1)
    cpu.set_random_state(2)
    cpu_flips = sum(bool(torch.equal(torch.as_tensor(cpu({"image": x[0]})["image"]), x[0].flip(-1))) for _ in range(n))
    # two binomial(n, 0.5) counts: their difference has sd sqrt(n / 2); 4 sd apart happens once in ~16,000
    assert abs(sum(per_batch) - cpu_flips) < 4 * np.sqrt(n / 2)


def test_rotation_angles_have_the_cpu_path_distribution() -> None:
    # Seeds are set on each pipeline after it is built, and the CPU pipeline is built once: MONAI's Compose reseeds
    # its transforms from the process-wide seed when one was set (monai.utils.set_determinism by an earlier test), so
    # a Compose rebuilt per batch would replay the same 64 draws 20 times and the test would depend on test order.
    images = torch.rand(64, 1, 8, 8)
    batch_list, batch_record = _affine(seed=3)
    augment = BatchAugment(batch_list, mean=MEAN, std=STD, seed=3)
    for _ in range(20):
        augment(_normalised(images), None)
    cpu_list, cpu_record = _affine(seed=4)
    cpu = Compose([*cpu_list, ToImageNetInputd(keys="image", mean=MEAN, std=STD)])
    cpu.set_random_state(seed=4)
    for _ in range(20):
        for image in images:
            cpu({"image": image})
    batch_angles, cpu_angles = np.array(batch_record.angles), np.array(cpu_record.angles)
    assert len(batch_angles) == len(cpu_angles) == 20 * 64
    assert np.abs(batch_angles).max() <= np.deg2rad(10.0)
    assert ks_2samp(batch_angles, cpu_angles).pvalue > 1e-3
    assert binomtest(int((batch_angles != 0).sum()), len(batch_angles), 0.5).pvalue > 1e-3


@pytest.mark.parametrize("transform", [
    RandFlipd(keys="image", prob=1.0, spatial_axis=1),
    RandAffined(keys="image", prob=1.0, rotate_range=[(0.3, 0.3)], translate_range=[(2, 2), (-1, -1)],
                padding_mode="zeros"),
], ids=["flip", "affine-zero-padding"])
def test_fixed_draw_equals_the_cpu_path_after_normalisation(transform: object) -> None:
    images = torch.rand(4, 1, 12, 12)
    expected = _cpu_path([transform], images)
    got, _ = BatchAugment([transform], mean=MEAN, std=STD)(_normalised(images), None)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_segmentation_label_moves_with_the_image() -> None:
    image = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(8, 1, 1, 1)
    label = image.clone().long()
    out, out_label = BatchAugment([RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=0)], seed=5)(image, label)
    assert out_label.dtype == torch.long
    torch.testing.assert_close(out.long(), out_label)


def test_empty_list_is_identity_and_prepare_batch_runs_it_on_device_tensors() -> None:
    x = torch.rand(2, 3, 4, 4)
    assert BatchAugment([])(x, None)[0] is x
    flip = BatchAugment([RandFlipd(keys="image", prob=1.0, spatial_axis=1)])
    image, label = PlainTensorBatch(channels_last=True, augment=flip)({"image": x, "label": torch.ones(2, 3)}, "cpu")
    torch.testing.assert_close(image, x.flip(-1))
    assert image.is_contiguous(memory_format=torch.channels_last) and label.shape == (2, 3)


@pytest.mark.parametrize(("setting", "device", "expected"), [
    ("auto", "cpu", False), ("auto", "cuda:0", True), ("cpu", "cuda:0", False), ("gpu", "cpu", True),
], ids=["auto-cpu", "auto-cuda", "cpu", "gpu-on-cpu-tests"])
def test_augment_device_selection(setting: str, device: str, expected: bool) -> None:
    assert augment_in_batch(setting, device) is expected


def test_bad_augment_device_and_half_normalisation_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"augment_device='tpu' is not valid: choose from \['auto', 'cpu', 'gpu'\]"):
        augment_in_batch("tpu", "cpu")
    with pytest.raises(ConfigError, match="needs both mean and std"):
        BatchAugment([], mean=MEAN)
