"""Dataset adapters (native layouts -> datalists), patient-wise splits and synthetic data generators."""

from __future__ import annotations

from common.data.bcss import (
    BCSS_DEFAULT_CLASS_MAP,
    BCSS_GTRUTH_CODES,
    build_code_lookup,
    load_bcss_codes,
    load_bcss_datalist,
    read_gtruth_codes,
    summarise_bcss_datalist,
    validate_bcss_masks,
)
from common.data.cbis_ddsm import (
    CBIS_DDSM_CSV_FILES,
    PATHOLOGY_LABELS,
    find_full_mammogram,
    load_cbis_ddsm_datalist,
    read_case_description,
)
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
from common.data.embedded import EMBEDDED_DATASETS, make_embedded_dataset
from common.data.general_medical import (
    GENERAL_TARGETS,
    build_general_datalist,
    make_general_medical_dataset,
    read_class_names,
    sampling_weights,
    write_class_names,
)
from common.data.general_medical_spec import KNOWN_CLASS_SETS, SOURCE_KINDS, SourceSpec, read_sources
from common.data.inbreast import BIRADS_VALUES, load_inbreast_datalist, read_inbreast_csv
from common.data.splits import check_nonempty_splits, check_patient_disjoint, group_by_split, patient_split
from common.data.synthetic_cxr import SyntheticCase, generate_chestxray14, render_chest, sample_cases
from common.data.synthetic_cxr_signs import FINDING_SIGNS
from common.data.synthetic_histology import generate_bcss
from common.data.synthetic_mammo import generate_cbis_ddsm, generate_inbreast
from common.data.synthetic_mammo_render import MammoFinding, render_mammogram

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
    "CBIS_DDSM_CSV_FILES",
    "PATHOLOGY_LABELS",
    "read_case_description",
    "find_full_mammogram",
    "load_cbis_ddsm_datalist",
    "BIRADS_VALUES",
    "read_inbreast_csv",
    "load_inbreast_datalist",
    "MammoFinding",
    "render_mammogram",
    "generate_cbis_ddsm",
    "generate_inbreast",
    "BCSS_GTRUTH_CODES",
    "BCSS_DEFAULT_CLASS_MAP",
    "read_gtruth_codes",
    "load_bcss_codes",
    "build_code_lookup",
    "validate_bcss_masks",
    "load_bcss_datalist",
    "summarise_bcss_datalist",
    "generate_bcss",
    "EMBEDDED_DATASETS",
    "make_embedded_dataset",
    "GENERAL_TARGETS",
    "KNOWN_CLASS_SETS",
    "SOURCE_KINDS",
    "SourceSpec",
    "build_general_datalist",
    "make_general_medical_dataset",
    "read_class_names",
    "read_sources",
    "sampling_weights",
    "write_class_names",
]
