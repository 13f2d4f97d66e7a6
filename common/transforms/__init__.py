"""Transforms the bundles' JSON configs reference (MONAI array + dictionary pairs)."""

from __future__ import annotations

from common.transforms.artifact_mask import ArtifactMask, ArtifactMaskd
from common.transforms.batch_augment import BatchAugment, augment_in_batch
from common.transforms.channels import ToImageNetInput, ToImageNetInputd
from common.transforms.clahe import CLAHE, CLAHEd
from common.transforms.crop_resize import AspectResize, AspectResized, ForegroundCrop, ForegroundCropd
from common.transforms.dicom_intensity import DicomIntensity, DicomIntensityd
from common.transforms.labels import MultiLabel, MultiLabeld
from common.transforms.labels_remap import RemapLabels, RemapLabelsd
from common.transforms.medical_image import LoadMedicalImage, LoadMedicalImaged, read_medical_image
from common.transforms.radiograph import LoadRadiograph, LoadRadiographd, read_radiograph
from common.transforms.stain import RandHEDJitter, RandHEDJitterd

__all__ = [
    "CLAHE",
    "CLAHEd",
    "ArtifactMask",
    "ArtifactMaskd",
    "AspectResize",
    "AspectResized",
    "BatchAugment",
    "DicomIntensity",
    "DicomIntensityd",
    "ForegroundCrop",
    "ForegroundCropd",
    "LoadMedicalImage",
    "LoadMedicalImaged",
    "LoadRadiograph",
    "LoadRadiographd",
    "MultiLabel",
    "MultiLabeld",
    "RandHEDJitter",
    "RandHEDJitterd",
    "RemapLabels",
    "RemapLabelsd",
    "ToImageNetInput",
    "ToImageNetInputd",
    "augment_in_batch",
    "read_medical_image",
    "read_radiograph",
]
