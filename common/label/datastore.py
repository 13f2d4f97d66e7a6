"""The MONAI Label datastore of a medxfer server: labels are checked against the served bundles before they are saved.

Two kinds of ``final`` label, one per image (``PUT /datastore/label?image=<id>``):

* classification: a ``.json`` file ``{"model": "chest_xray_classification", "findings": ["Effusion"]}`` listing the
  PRESENT findings, spelled as the bundle's class names (``[]``: no finding). ``model`` may instead come in the
  request's params (``{"model": ...}``). Stored in class order; the label info holds ``model`` and ``findings``.
* segmentation: a mask image (``.png``, ``.nii`` or ``.nii.gz``) with the image's height and width and integer codes
  ``0..K`` (0 = not annotated, ignored by the loss; ``1..K`` the bundle's classes in order). NIfTI arrays are read
  as ITK, 3D Slicer and MONAI's ``LoadImage`` lay out a 2-D picture: first axis = column (x), second = row (y).
  Every mask is stored as an 8-bit PNG (the segmentation bundles read masks with PIL).

Anything else is answered ``400`` with one line naming the image, what is wrong and what is accepted.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import HTTPException
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.datastore import DefaultLabelTag
from PIL import Image

from common.label.bundles import CLASSIFICATION, SEGMENTATION, LabelBundle

__all__ = ["MASK_SUFFIXES", "MedxferDatastore"]

logger = logging.getLogger(__name__)

#: label file endings taken as segmentation masks (everything else but ``.json`` is refused)
MASK_SUFFIXES = (".png", ".nii", ".nii.gz")
_EXAMPLE = '{"model": "chest_xray_classification", "findings": ["Effusion"]}'
_FINAL = DefaultLabelTag.FINAL.value


def _refuse(text: str) -> HTTPException:
    """The 400 a client sees: one line."""
    return HTTPException(status_code=400, detail=" ".join(text.split()))


def _read_mask(file: str, where: str) -> np.ndarray:
    """The ``(H, W)`` array of a mask file (PNG as stored; NIfTI transposed from x, y to row, column)."""
    try:
        if file.lower().endswith(".png"):
            with Image.open(file) as picture:
                if picture.mode not in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L"):
                    raise _refuse(f"{where}: a mask must be a single-channel (grayscale or palette) PNG of class "
                                  f"codes; found mode {picture.mode}")
                return np.asarray(picture)
        import nibabel

        array = np.asanyarray(nibabel.load(file).dataobj)
    except HTTPException:
        raise
    except Exception as err:  # noqa: BLE001 - any reader failure is one unreadable-file answer
        raise _refuse(f"{where}: cannot read the mask file ({type(err).__name__}: {err})") from err
    while array.ndim > 2 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise _refuse(f"{where}: a mask must be 2-D; the NIfTI file holds shape {tuple(array.shape)}")
    return array.T


class MedxferDatastore(LocalDatastore):
    """A ``LocalDatastore`` whose labels fit the served bundles (see the module docstring for the formats).

    Args:
        studies: the studies folder (images at its top level, labels under ``labels/<tag>/``).
        bundles: the served bundles by name.
        local_datastore_kwargs: passed to ``LocalDatastore`` (``extensions``, ``auto_reload``, ``read_only`` ...).

    Example:
        >>> bundles = discover_bundles("bundles", "workspace")  # doctest: +SKIP
        >>> store = MedxferDatastore("studies", bundles, extensions=["*.png"])  # doctest: +SKIP
        >>> store.training_items(bundles["chest_xray_classification"])[0]  # doctest: +SKIP
        {'image': 'chest_0002.png', 'label': [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}
    """

    def __init__(self, studies: str | os.PathLike, bundles: Mapping[str, LabelBundle],
                 **local_datastore_kwargs: Any) -> None:  # fmt: skip
        self.bundles = dict(bundles)
        self.studies = Path(studies).resolve()
        super().__init__(str(studies), **local_datastore_kwargs)

    # -- saving ---------------------------------------------------------------------------------------------------
    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        """Check the label file against the served bundles, then store it (a canonical JSON or an 8-bit PNG).

        Raises:
            HTTPException: 400 with one line for a label that does not fit (see the module docstring); 404 when
                there is no image ``image_id`` (MONAI Label's own datastore answers 500).
        """
        if not self.get_image_uri(image_id):
            raise HTTPException(status_code=404, detail=f"no image {image_id!r} in the datastore; upload it first "
                                                        "(PUT /datastore/image?image=<id>)")
        info = dict(label_info or {})
        where = f"label for image {image_id!r}"
        name = str(label_filename).lower()
        previous = self.get_label_uri(image_id, label_tag)
        with tempfile.TemporaryDirectory(prefix="medxfer-label-") as tmp:
            if name.endswith(".json"):
                bundle, findings = self._check_classification(image_id, label_filename, info.get("model"), where)
                info.update(model=bundle.name, findings=findings)
                file = Path(tmp) / "label.json"  # not the image id: dots in it would read as extensions
                file.write_text(json.dumps({"model": bundle.name, "findings": findings}) + "\n", encoding="utf-8")
            elif name.endswith(MASK_SUFFIXES):
                bundle, mask = self._check_mask(image_id, label_filename, info.get("model"), where)
                if info.get("model") is not None:
                    info["model"] = bundle.name
                info["label_names"] = {n: code for code, n in enumerate(bundle.class_names(), 1)}
                file = Path(tmp) / "label.png"
                Image.fromarray(mask).save(file)
            else:
                raise _refuse(f"{where}: unsupported file {Path(label_filename).name!r}; give a .json label "
                              f"(classification, e.g. {_EXAMPLE}) or a mask image ({', '.join(MASK_SUFFIXES)})")
            label_id = super().save_label(image_id, str(file), label_tag, info)
        if previous and previous != self.get_label_uri(image_id, label_tag):
            Path(previous).unlink(missing_ok=True)  # the replaced label had another file type
        return label_id

    def _bundle_of(self, image_id: str, model: Any, kind: str, where: str) -> LabelBundle:
        """The served bundle ``model`` of ``kind``, which the image must not have been added for another of."""
        served = sorted(n for n, b in self.bundles.items() if b.kind == kind)
        other = SEGMENTATION if kind == CLASSIFICATION else CLASSIFICATION
        if not isinstance(model, str) or not model:
            raise _refuse(f"{where}: no model named; give \"model\" (in the label or the params), one of: "
                          f"{', '.join(served) or f'(no {kind} model is served)'}")
        bundle = self.bundles.get(model)
        if bundle is None:
            raise _refuse(f"{where}: unknown model {model!r}; {kind} models served: {', '.join(served) or 'none'}")
        intended = self.image_model(image_id)
        if intended in self.bundles and self.bundles[intended].kind != kind:
            raise _refuse(f"{where}: the image was added for {intended} ({other}), not for a {kind} label")
        if bundle.kind != kind:
            accepted = f"a mask image ({', '.join(MASK_SUFFIXES)})" if other == SEGMENTATION else f"a .json {_EXAMPLE}"
            raise _refuse(f"{where}: {model} is a {other} model: its labels are {accepted}")
        if intended in self.bundles and kind == CLASSIFICATION and intended != model:
            raise _refuse(f"{where}: the image was added for {intended}, but the label names {model}")
        return bundle

    def _check_classification(self, image_id: str, file: str, params_model: Any,
                              where: str) -> tuple[LabelBundle, list[str]]:  # fmt: skip
        content = self._read_json_label(file, where)
        model = content.get("model")
        if model is not None and params_model is not None and model != params_model:
            raise _refuse(f"{where}: the label names model {model!r} but the params name {params_model!r}")
        bundle = self._bundle_of(image_id, model if model is not None else params_model, CLASSIFICATION, where)
        return bundle, self._check_findings(bundle, content.get("findings"), where)

    @staticmethod
    def _read_json_label(file: str | os.PathLike, where: str) -> dict[str, Any]:
        try:
            content = json.loads(Path(file).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise _refuse(f"{where}: not valid JSON ({err}); expected {_EXAMPLE}") from err
        if not isinstance(content, dict):
            raise _refuse(f"{where}: a JSON {type(content).__name__}, expected an object like {_EXAMPLE}")
        unknown = sorted(set(content) - {"model", "findings"})
        if unknown:
            raise _refuse(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; expected only \"model\" and "
                          f"\"findings\", e.g. {_EXAMPLE}")
        return content

    @staticmethod
    def _check_findings(bundle: LabelBundle, findings: Any, where: str) -> list[str]:
        """``findings`` in the bundle's class order (400 for anything but a list of distinct class names)."""
        names = bundle.class_names()
        if not isinstance(findings, list) or not all(isinstance(f, str) for f in findings):
            raise _refuse(f"{where}: \"findings\" must be a list of the present findings' names ([] for no finding); "
                          f"found {json.dumps(findings)}")
        unknown = [f for f in findings if f not in names]
        if unknown:
            close = difflib.get_close_matches(unknown[0], names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise _refuse(f"{where}: unknown finding(s) {', '.join(map(repr, unknown))} for {bundle.name}; {hint}"
                          f"valid findings: {', '.join(names)}")
        twice = sorted({f for f in findings if findings.count(f) > 1})
        if twice:
            raise _refuse(f"{where}: finding(s) listed more than once: {', '.join(twice)}")
        return [n for n in names if n in findings]

    def _check_mask(self, image_id: str, file: str, params_model: Any, where: str) -> tuple[LabelBundle, np.ndarray]:
        bundle = self._segmentation_bundle(image_id, params_model, where)
        mask = _read_mask(file, where)
        try:
            with Image.open(self.get_image_uri(image_id)) as picture:
                height, width = picture.height, picture.width
        except Exception as err:  # noqa: BLE001 - DICOM, damaged file: the segmentation bundles read images with PIL
            raise _refuse(f"{where}: cannot read the image's size ({type(err).__name__}: {err}); segmentation "
                          f"images are PNG or JPEG") from err
        if mask.shape != (height, width):
            nifti = not file.lower().endswith(".png") and mask.T.shape == (height, width)
            hint = " (NIfTI is read with x = column, y = row)" if nifti else ""
            raise _refuse(f"{where}: the mask is {mask.shape[0]}x{mask.shape[1]} (height x width) but the image is "
                          f"{height}x{width}{hint}")
        names = bundle.class_names()
        allowed = f"0..{len(names)} (0 = not annotated, " + ", ".join(f"{c} = {n}" for c, n in enumerate(names, 1))
        if not np.issubdtype(mask.dtype, np.integer) and not np.issubdtype(mask.dtype, np.bool_):
            bad = mask[~np.isfinite(mask) | (mask != np.round(mask))]
            if bad.size:
                raise _refuse(f"{where}: mask values must be whole class codes {allowed}); found {float(bad.flat[0])}")
        codes = np.unique(mask.astype(np.int64))
        outside = [int(c) for c in codes if c < 0 or c > len(names)]
        if outside:
            raise _refuse(f"{where}: mask codes {outside[:5]} are outside {allowed})")
        if codes.max() == 0:
            raise _refuse(f"{where}: the mask annotates no pixel (all 0 = not annotated); codes are {allowed})")
        return bundle, mask.astype(np.uint8)

    def _segmentation_bundle(self, image_id: str, params_model: Any, where: str) -> LabelBundle:
        """The bundle whose classes the mask codes: the params' model, the image's, or the one all served share."""
        if params_model is not None:
            return self._bundle_of(image_id, params_model, SEGMENTATION, where)
        intended = self.image_model(image_id)
        if intended in self.bundles:
            return self._bundle_of(image_id, intended, SEGMENTATION, where)
        served = [b for _, b in sorted(self.bundles.items()) if b.kind == SEGMENTATION]
        if not served:
            raise _refuse(f"{where}: no segmentation model is served, so masks cannot be saved")
        if any(b.class_names() != served[0].class_names() for b in served[1:]):
            raise _refuse(f"{where}: the served segmentation models code different classes; name one in the params "
                          f"{{\"model\": ...}}: {', '.join(b.name for b in served)}")
        return served[0]

    # -- reading --------------------------------------------------------------------------------------------------
    def image_model(self, image_id: str) -> str | None:
        """The bundle an image was added for (its image info ``"model"``, set with params at upload), or ``None``."""
        model = self.get_image_info(image_id).get("model")
        return model if isinstance(model, str) and model else None

    def candidates(self, bundle: LabelBundle) -> list[str]:
        """Image ids an active-learning strategy may propose for ``bundle``, sorted.

        Images without any ``final`` label (one saved for another bundle would be replaced by a new one) whose
        intended model is unset, ``bundle`` itself, or, for a segmentation bundle, another segmentation bundle.
        """
        def fits(model: str | None) -> bool:
            if model is None or model == bundle.name:
                return True
            other = self.bundles.get(model)
            return bundle.kind == SEGMENTATION and other is not None and other.kind == SEGMENTATION

        return sorted(i for i in self.get_unlabeled_images() if fits(self.image_model(i)))

    def training_items(self, bundle: LabelBundle) -> list[dict[str, Any]]:
        """The ``final``-labelled items of ``bundle``, paths relative to :attr:`studies`, sorted by image id.

        Classification: ``{"image": "x.png", "label": [0/1 per class name]}`` for JSON labels naming ``bundle``;
        segmentation: ``{"image": "x.png", "label": "labels/final/x.png"}`` for every PNG mask.

        Raises:
            HTTPException: 400 for a JSON label of ``bundle`` whose findings no longer fit its class names.
        """
        items = []
        names = bundle.class_names() if bundle.kind == CLASSIFICATION else []
        for image_id in sorted(self.get_labeled_images()):
            label = self.get_label_uri(image_id, _FINAL)
            image = os.path.relpath(self.get_image_uri(image_id), self.studies)
            where = f"label {label}"
            if bundle.kind == CLASSIFICATION and label.lower().endswith(".json"):
                content = self._read_json_label(label, where)
                if content.get("model") == bundle.name:
                    present = self._check_findings(bundle, content.get("findings"), where)
                    items.append({"image": image, "label": [int(n in present) for n in names]})
            elif bundle.kind == SEGMENTATION and label.lower().endswith(".png"):
                items.append({"image": image, "label": os.path.relpath(label, self.studies)})
            elif bundle.kind == SEGMENTATION and label.lower().endswith(MASK_SUFFIXES):
                logger.warning("%s is not a PNG mask (saved outside the server?): not used for training", label)
        return items
