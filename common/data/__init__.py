"""Dataset adapters (native layouts -> datalists), patient-wise splits and synthetic data generators."""

from __future__ import annotations

from common.data.chestmnist import MEDMNIST_SPLITS, load_chestmnist_datalist, write_medmnist_split
from common.data.chestxray14 import (
    CHESTXRAY14_FINDINGS,
    NO_FINDING,
    ChestXray14Record,
    find_images,
    load_chestxray14_datalist,
    read_data_entry,
    read_image_list,
    summarise_datalist,
)
from common.data.splits import check_nonempty_splits, check_patient_disjoint, group_by_split, patient_split
from common.data.synthetic_cxr import SyntheticCase, generate_chestxray14, render_chest, sample_cases
from common.data.synthetic_cxr_signs import FINDING_SIGNS

__all__ = [
    "CHESTXRAY14_FINDINGS",
    "NO_FINDING",
    "ChestXray14Record",
    "read_data_entry",
    "find_images",
    "read_image_list",
    "load_chestxray14_datalist",
    "summarise_datalist",
    "MEDMNIST_SPLITS",
    "load_chestmnist_datalist",
    "write_medmnist_split",
    "patient_split",
    "group_by_split",
    "check_patient_disjoint",
    "check_nonempty_splits",
    "SyntheticCase",
    "render_chest",
    "sample_cases",
    "generate_chestxray14",
    "FINDING_SIGNS",
]
