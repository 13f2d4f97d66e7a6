"""Random augmentation of a whole batch on the training device (the GPU path of issue 14), from the bundle's own
``augmentation`` list.

On the CPU path a bundle's ``augmentation`` (MONAI dictionary transforms: ``RandFlipd``, ``RandAffined``,
``RandGaussianSmoothd`` ...) runs in the DataLoader workers, before ``normalise_transforms``. On the batch path
(``augment_device``: ``"gpu"``, or ``"auto"`` with CUDA) the workers skip it and :class:`BatchAugment` runs the
*same transform objects* on the device tensors of each batch, called by
:class:`common.engines.batch.PlainTensorBatch` after the copy to the device:

1. the normalised batch is mapped back to the [0, 1] intensities the transforms were written for
   (``x * std + mean``, clamped to [0, 1] against rounding: zero padding stays black, gamma contrast and stain
   jitter see the same values as on the CPU; every bundle's images are in [0, 1] before normalisation);
2. each image (with its label, so segmentation masks flip and rotate with it) goes through the transforms, drawing
   its own parameters: per-sample, independent, from the same config keys (``flip_prob``, ``affine_prob``,
   ``rotate_degrees``, ``translate_fraction``, ``zoom_fraction`` ...) and the same classes as the CPU path, so the
   parameter distributions are the CPU path's by construction (``tests/transforms/test_batch_augment.py`` checks
   flip rates and rotation angles against the CPU path statistically);
3. the batch is normalised again.

MONAI's transforms run on CUDA tensors (flip, rot90, the affine's ``grid_sample``, Gaussian filters as
convolutions) and ``RandHEDJitterd`` has a torch branch for device tensors, so no image leaves the GPU; the loop
is per image (one parameter draw each), which costs kernel launches rather than bandwidth. Greyscale images
replicated to three channels (``ToImageNetInputd``) give the same result as augmenting the single channel,
since every listed transform treats channels alike.

Example:
    >>> import torch
    >>> from monai.transforms import RandFlipd
    >>> augment = BatchAugment([RandFlipd(keys="image", prob=1.0, spatial_axis=1)], seed=0)
    >>> x = torch.arange(4.0).reshape(1, 1, 1, 4)
    >>> augment(x, None)[0].flatten().tolist()
    [3.0, 2.0, 1.0, 0.0]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from common.errors import ConfigError

__all__ = ["AUGMENT_DEVICES", "BatchAugment", "augment_in_batch"]

logger = logging.getLogger(__name__)

#: Accepted values of the ``augment_device`` config key.
AUGMENT_DEVICES = ("auto", "cpu", "gpu")


def augment_in_batch(augment_device: str, device: torch.device | str) -> bool:
    """Whether augmentation runs in batch on ``device`` (True) or per item in the DataLoader workers (False).

    ``"auto"`` is in batch on a CUDA device; ``"gpu"`` is in batch on whatever device trains (on a CPU-only machine
    that exercises the batch path on CPU tensors, as the tests do); ``"cpu"`` keeps the workers' path.

    Raises:
        ConfigError: ``augment_device`` is not one of :data:`AUGMENT_DEVICES`.
    """
    if augment_device not in AUGMENT_DEVICES:
        raise ConfigError(f"setting augment_device={augment_device!r} is not valid: choose from "
                          f"{list(AUGMENT_DEVICES)} (override it with --augment_device VALUE)")  # fmt: skip
    if augment_device == "auto":
        return torch.device(device).type == "cuda"
    if augment_device == "gpu" and torch.device(device).type != "cuda":
        logger.warning("augment_device='gpu' on %s: augmenting in batch on the CPU", device)
    return augment_device == "gpu"


def _plain(value: torch.Tensor) -> torch.Tensor:
    return value.as_tensor() if isinstance(value, MetaTensor) else torch.as_tensor(value)


class BatchAugment:
    """Apply dictionary transforms to every image of a device batch, each image with its own random draw.

    Args:
        transforms: the bundle's ``augmentation`` list (MONAI dictionary transforms; an empty list is a no-op).
        image_key: key the transforms use for the image.
        label_key: key they use for the label (spatial labels are transformed with the image when listed in a
            transform's ``keys``; classification labels pass through).
        mean: per-channel mean the batch was normalised with (``None``: the batch is not normalised).
        std: per-channel standard deviation the batch was normalised with.
        seed: seed of the transforms' random state (the bundle's ``seed``).

    Raises:
        ConfigError: only one of ``mean`` / ``std`` given, or a zero ``std``.
    """

    def __init__(self, transforms: Sequence[Callable], image_key: str = "image", label_key: str = "label",
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 seed: int | None = 0) -> None:  # fmt: skip
        if (mean is None) != (std is None):
            raise ConfigError(f"BatchAugment needs both mean and std or neither; got mean={mean}, std={std}")
        if std is not None and any(float(s) == 0.0 for s in std):
            raise ConfigError(f"BatchAugment std must be non-zero; got {list(std)}")
        self.transforms = list(transforms)
        self.compose = Compose(self.transforms)
        if seed is not None:
            self.compose.set_random_state(seed=int(seed))
        self.image_key, self.label_key = image_key, label_key
        self.mean = None if mean is None else torch.tensor([float(m) for m in mean])
        self.std = None if std is None else torch.tensor([float(s) for s in std])

    def _scale(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.mean is None or self.std is None:
            return None
        shape = (1, -1) + (1,) * (image.ndim - 2)
        return (self.mean.to(image.device, image.dtype).view(shape), self.std.to(image.device, image.dtype).view(shape))

    def __call__(self, image: torch.Tensor, label: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Augment ``image`` ``(B, C, *spatial)`` (and ``label`` ``(B, ...)``) on their device."""
        if not self.transforms:
            return image, label
        scale = self._scale(image)
        # the CPU path's transforms see [0, 1] intensities; undoing the normalisation in float32 strays by ~1e-7
        raw = (image * scale[1] + scale[0]).clamp_(0.0, 1.0) if scale is not None else image
        images, labels = [], []
        for i in range(raw.shape[0]):
            item = {self.image_key: raw[i]}
            if label is not None:
                item[self.label_key] = label[i]
            out = self.compose(item)
            images.append(_plain(out[self.image_key]).to(image.dtype))
            if label is not None:
                labels.append(_plain(out[self.label_key]).to(label.dtype))
        result = torch.stack(images)
        if scale is not None:
            result = (result - scale[0]) / scale[1]
        return result, (torch.stack(labels) if label is not None else None)
