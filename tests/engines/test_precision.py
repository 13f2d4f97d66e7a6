"""precision / channels_last keys -> MONAI's amp, amp_kwargs, loss scaling and memory format."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from common.engines.precision import (
    PrecisionHandler,
    autocast_enabled,
    autocast_kwargs,
    memory_format,
    resolve_precision,
    use_channels_last,
)
from common.errors import ConfigError


@pytest.mark.parametrize(("precision", "bf16_ok", "expected"), [
    ("auto", True, "bf16"), ("auto", False, "fp16"), ("bf16", True, "bf16"), ("fp16", True, "fp16"),
    ("fp32", True, "fp32"),
], ids=["auto-ampere", "auto-older-gpu", "bf16", "fp16", "fp32"])
def test_cuda_resolution(monkeypatch: pytest.MonkeyPatch, precision: str, bf16_ok: bool, expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_ok)
    assert resolve_precision(precision, "cuda:0") == expected
    assert autocast_enabled(precision, "cuda:0") == (expected != "fp32")
    assert autocast_kwargs(precision, "cuda:0") == ({"dtype": {"bf16": torch.bfloat16, "fp16": torch.float16}[expected]}
                                                    if expected != "fp32" else {})


def test_cpu_auto_is_fp32_without_autocast() -> None:
    assert resolve_precision("auto", "cpu") == "fp32"
    assert autocast_enabled("auto", torch.device("cpu")) is False
    assert autocast_kwargs("auto", "cpu") == {}


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_on_cpu_is_refused(precision: str) -> None:
    with pytest.raises(ConfigError, match=f"precision='{precision}' needs a CUDA device"):
        resolve_precision(precision, "cpu")


@pytest.mark.parametrize("bad", ["fp8", "BF16", "", True], ids=["fp8", "upper", "empty", "bool"])
def test_unknown_precision_names_key_and_choices(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"precision=.* is not valid: choose from \['auto', 'bf16', 'fp16', 'fp32'\]"):
        resolve_precision(bad, "cpu")  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "device", "expected"), [
    ("auto", "cpu", False), ("auto", "cuda:0", True), (True, "cpu", True), (False, "cuda:0", False),
], ids=["auto-cpu", "auto-cuda", "on", "off"])
def test_channels_last(value: object, device: str, expected: bool) -> None:
    assert use_channels_last(value, device) is expected
    assert memory_format(value, device) == (torch.channels_last if expected else torch.contiguous_format)


def test_bad_channels_last_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"channels_last='yes' is not valid: choose from \[True, False, 'auto'\]"):
        use_channels_last("yes", "cpu")


def _started(handler: PrecisionHandler, scaler: object) -> SimpleNamespace:
    engine = SimpleNamespace(scaler=scaler)
    handler.set_scaler(engine)  # type: ignore[arg-type]
    return engine


def test_bf16_swaps_in_a_disabled_scaler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    engine = _started(PrecisionHandler("bf16", "cuda:0"), SimpleNamespace(is_enabled=lambda: True))
    assert isinstance(engine.scaler, torch.amp.GradScaler) and not engine.scaler.is_enabled()
    loss = torch.tensor(2.0)
    assert engine.scaler.scale(loss) is loss  # no scaling: a plain backward


@pytest.mark.parametrize(("precision", "device"), [("fp16", "cuda:0"), ("fp32", "cpu")])
def test_fp16_and_fp32_keep_monai_scaler(precision: str, device: str) -> None:
    kept = SimpleNamespace(is_enabled=lambda: True)  # MONAI's GradScaler (fp16 on CUDA) stands for itself
    assert _started(PrecisionHandler(precision, device), kept).scaler is kept
