"""Check a bundle's top-level settings (the scalars overrides change) before anything is built.

Every bundle config gathers its top-level settings in one ``settings`` dict (``{"image_size": "@image_size",
...}``), and its ``initialize`` starts with ``$common.bundle_settings.check_settings(@settings)``, so
``--image_size 0``, ``--epochs -1`` or ``--batch_size abc`` stop at once with one line naming the key, the value
and what is expected, instead of failing deep inside MONAI or ignite (or not at all). Known keys are checked by
:data:`RULES` (or, for names ending in ``_prob`` or ``_fraction``, as probabilities); a key without a rule is
refused, so a new setting cannot skip the check (a test asserts every bundle's settings pass).

The same dict is the training run's identity: :func:`common.engines.resume.run_fingerprint` hashes it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from common.errors import ConfigError

__all__ = ["RULES", "check_settings"]

Check = Callable[[Any], bool]


def _int(minimum: int) -> tuple[Check, str]:
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum), f"an integer >= {minimum}"


def _number(minimum: float, exclusive: bool = False, maximum: float = math.inf) -> tuple[Check, str]:
    def check(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return False
        return (v > minimum if exclusive else v >= minimum) and v <= maximum

    bound = f"> {minimum}" if exclusive else f">= {minimum}"
    return check, f"a number {bound}" + (f" and <= {maximum}" if math.isfinite(maximum) else "")


def _choice(*options: Any) -> tuple[Check, str]:
    return (lambda v: v in options and not (isinstance(v, bool) and not all(isinstance(o, bool) for o in options))), \
        f"one of {list(options)}"


def _text() -> tuple[Check, str]:
    return (lambda v: isinstance(v, str) and v.strip() != ""), "a non-empty string"


def _floats(length: int, positive: bool = False) -> tuple[Check, str]:
    def check(v: Any) -> bool:
        return isinstance(v, list | tuple) and len(v) == length and all(
            isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and (x > 0 or not positive)
            for x in v)

    return check, f"a list of {length} {'positive ' if positive else ''}numbers"


def _names() -> tuple[Check, str]:
    def check(v: Any) -> bool:
        return isinstance(v, list | tuple) and len(v) >= 1 and all(isinstance(x, str) and x for x in v) and \
            len(set(v)) == len(v)

    return check, "a non-empty list of distinct class names"


_BOOL = _choice(True, False)
_PROB = _number(0.0, maximum=1.0)

#: key -> (check, what is expected)
RULES: dict[str, tuple[Check, str]] = {
    "arch": _text(),
    "pretrained": (lambda v: isinstance(v, str), "a string: 'none', 'imagenet', a weights file or 'bundle:<path>'"),
    "dataset_dir": _text(),
    "datalist": (lambda v: isinstance(v, str), "a path string ('' in inference: every image under dataset_dir)"),
    "datalist_key": _text(),
    "default_class_names": _names(),
    "n_boot": _int(0),
    "n_overlays": _int(0),
    "class_names": _names(),
    "image_size": _int(8),
    "patch_size": _int(16),
    "feature_size": _int(12),
    "samples_per_image": _int(1),
    "epochs": _int(1),
    "batch_size": _int(1),
    "val_batch_size": _int(1),
    "sw_batch_size": _int(1),
    "num_workers": (lambda v: v == "auto" or _int(0)[0](v), "'auto' (CPUs - 1) or an integer >= 0"),
    "val_interval": _int(1),
    "seed": _int(0),
    "learning_rate": _number(0.0),  # 0 is legitimate: a run that only checks what was loaded
    "weight_decay": _number(0.0),
    "rotate_degrees": _number(0.0, maximum=180.0),
    "stain_sigma": _number(0.0),
    "stain_bias": _number(0.0),
    "sw_overlap": (lambda v: _PROB[0](v) and v < 1.0, "a number >= 0 and < 1"),
    "crop_margin": _number(0.0, maximum=0.5),
    "use_clahe": _BOOL,
    "check_images": _BOOL,
    "remove_pectoral": _BOOL,
    "allow_outside_dataset_dir": _BOOL,
    "clahe_clip_limit": _number(0.0, exclusive=True),
    "clahe_tile_grid_size": _int(1),
    "clahe_bit_depth": _choice(8, 16),
    "mask_threshold_method": _choice("otsu", "triangle"),
    "breast_orientation": _choice("left", "right"),
    "color": _choice("rgb", "grey"),
    "color_augmentation": _BOOL,
    "imagenet_mean": _floats(3),
    "imagenet_std": _floats(3, positive=True),
    "resume": _choice("auto", "never", "force"),
    "augment_device": _choice("auto", "cpu", "gpu"),
    "precision": _choice("auto", "bf16", "fp16", "fp32"),
    "channels_last": (lambda v: v == "auto" or isinstance(v, bool), "one of ['auto', True, False]"),
    "compile": _BOOL,
}


def _rule(key: str) -> tuple[Check, str] | None:
    if key in RULES:
        return RULES[key]
    if key.endswith("_prob") or key.endswith("_fraction"):
        return _PROB
    return None


def check_settings(settings: Mapping[str, Any]) -> Mapping[str, Any]:
    """Refuse a setting of the wrong type or range, naming the key, the value and what is expected.

    Returns:
        ``settings`` unchanged (so a config can use the call as a value).

    Example:
        >>> check_settings({"epochs": 0})
        Traceback (most recent call last):
        ...
        common.errors.ConfigError: setting epochs=0 (int) is not valid: expected an integer >= 1 ...
    """
    for key, value in settings.items():
        rule = _rule(key)
        if rule is None:
            raise ConfigError(f"setting {key!r} has no rule in common.bundle_settings.RULES; add one saying what "
                              f"values it takes")
        check, expected = rule
        if not check(value):
            raise ConfigError(f"setting {key}={value!r} ({type(value).__name__}) is not valid: expected {expected} "
                              f"(override it with --{key} VALUE)")
    return settings
