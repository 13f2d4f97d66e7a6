"""Dataset adapters: public native layouts in, datalists out; patient-wise splits.

The synthetic generators that write those layouts live in :mod:`common.synthetic`."""

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
from common.data.class_folders import load_class_folders_datalist, read_patients_csv
from common.data.general_medical import (
    GENERAL_TARGETS,
    build_general_datalist,
    read_class_names,
    sampling_weights,
    write_class_names,
)
from common.data.general_medical_spec import KNOWN_CLASS_SETS, SOURCE_KINDS, SourceSpec, read_sources
from common.data.inbreast import BIRADS_VALUES, load_inbreast_datalist, read_inbreast_csv
from common.data.label_csv import load_label_csv_datalist
from common.data.medmnist import MEDMNIST_INFO, load_medmnist_datalist, load_medmnist_folder, parse_medmnist_name
from common.data.single_label import check_single_label_datalist, split_items, summarise_single_label
from common.data.splits import check_nonempty_splits, check_patient_disjoint, group_by_split, patient_split

__all__ = [
    "load_class_folders_datalist",
    "load_label_csv_datalist",
    "MEDMNIST_INFO",
    "load_medmnist_datalist",
    "load_medmnist_folder",
    "parse_medmnist_name",
    "read_patients_csv",
    "check_single_label_datalist",
    "split_items",
    "summarise_single_label",
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
    "CBIS_DDSM_CSV_FILES",
    "PATHOLOGY_LABELS",
    "read_case_description",
    "find_full_mammogram",
    "load_cbis_ddsm_datalist",
    "BIRADS_VALUES",
    "read_inbreast_csv",
    "load_inbreast_datalist",
    "BCSS_GTRUTH_CODES",
    "BCSS_DEFAULT_CLASS_MAP",
    "read_gtruth_codes",
    "load_bcss_codes",
    "build_code_lookup",
    "validate_bcss_masks",
    "load_bcss_datalist",
    "summarise_bcss_datalist",
    "GENERAL_TARGETS",
    "KNOWN_CLASS_SETS",
    "SOURCE_KINDS",
    "SourceSpec",
    "build_general_datalist",
    "read_class_names",
    "read_sources",
    "sampling_weights",
    "write_class_names",
]
