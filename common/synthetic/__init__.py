"""Synthetic data generators: small datasets written in a public dataset's own native layout.

Each generator draws learnable, visible signs (it knows where it drew them: the chest generator writes NIH's
``BBox_List_2017.csv`` for its boxed findings) and writes the files exactly as the public release lays them out,
so that the real adapter in :mod:`common.data` reads them back. The demo, the tests and the benchmarks make their
data this way (:func:`make_embedded_dataset`); nothing here is needed to run a bundle on real data.
"""

from __future__ import annotations

from common.synthetic.brain_mri import BRAIN_MRI_CLASSES, generate_brain_mri, render_brain_mri
from common.synthetic.class_folders import write_class_folders
from common.synthetic.cxr import SyntheticCase, generate_chestxray14, render_chest, sample_cases
from common.synthetic.cxr_signs import FINDING_SIGNS
from common.synthetic.dermoscopy import DERMOSCOPY_CLASSES, generate_dermoscopy, render_dermoscopy
from common.synthetic.embedded import EMBEDDED_DATASETS, make_embedded_dataset
from common.synthetic.endoscopy import ENDOSCOPY_CLASSES, generate_endoscopy, render_endoscopy
from common.synthetic.general_medical import make_general_medical_dataset
from common.synthetic.histology import generate_bcss
from common.synthetic.mammo import generate_cbis_ddsm, generate_inbreast
from common.synthetic.mammo_render import MammoFinding, render_mammogram
from common.synthetic.medmnist import generate_medmnist, generate_pathmnist, render_tissue_patch

__all__ = [
    "BRAIN_MRI_CLASSES",
    "DERMOSCOPY_CLASSES",
    "ENDOSCOPY_CLASSES",
    "generate_brain_mri",
    "generate_dermoscopy",
    "generate_endoscopy",
    "render_brain_mri",
    "render_dermoscopy",
    "render_endoscopy",
    "write_class_folders",
    "generate_medmnist",
    "generate_pathmnist",
    "render_tissue_patch",
    "EMBEDDED_DATASETS",
    "FINDING_SIGNS",
    "MammoFinding",
    "SyntheticCase",
    "generate_bcss",
    "generate_cbis_ddsm",
    "generate_chestxray14",
    "generate_inbreast",
    "make_embedded_dataset",
    "make_general_medical_dataset",
    "render_chest",
    "render_mammogram",
    "sample_cases",
]
