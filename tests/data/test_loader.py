"""make_dataloader / resolve_num_workers: worker count from the CPUs, pinning only for CUDA."""

from __future__ import annotations

import os

import pytest
import torch

from common.data import loader as loader_module
from common.data.loader import MAX_AUTO_WORKERS, make_dataloader, resolve_num_workers
from common.errors import ConfigError


@pytest.mark.parametrize(("cpus", "local_world", "expected"), [
    (1, 1, 0), (2, 1, 1), (16, 1, 15), (64, 1, MAX_AUTO_WORKERS), (16, 4, 3), (2, 4, 0),
], ids=["one-cpu", "two", "sixteen", "capped", "four-ranks", "more-ranks-than-cpus"])
def test_auto_is_cpus_per_process_minus_one_capped(monkeypatch: pytest.MonkeyPatch, cpus: int, local_world: int,
                                                   expected: int) -> None:
    monkeypatch.setattr(loader_module, "available_cpus", lambda: cpus)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local_world))
    assert resolve_num_workers("auto") == expected


def test_available_cpus_follows_affinity() -> None:
    if hasattr(os, "sched_getaffinity"):
        assert loader_module.available_cpus() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("value", [0, 3])
def test_explicit_integers_are_kept(value: int) -> None:
    assert resolve_num_workers(value) == value


@pytest.mark.parametrize("bad", [-1, "four", 2.0, True], ids=["negative", "text", "float", "bool"])
def test_bad_num_workers_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"num_workers=.* is not valid: expected 'auto' or an integer >= 0"):
        resolve_num_workers(bad)  # type: ignore[arg-type]


def test_cpu_loader_without_workers_is_plain() -> None:
    loader = make_dataloader(list(range(10)), batch_size=4, num_workers=0, device="cpu")
    assert loader.num_workers == 0 and not loader.pin_memory and not loader.persistent_workers
    assert [b.tolist() for b in loader] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_workers_persist_and_prefetch() -> None:
    loader = make_dataloader(list(range(4)), batch_size=2, num_workers=1, device="cpu", prefetch_factor=3)
    assert loader.persistent_workers and loader.prefetch_factor == 3 and not loader.pin_memory


def test_cuda_device_pins_memory_and_kwargs_win() -> None:
    assert make_dataloader([1], batch_size=1, num_workers=0, device=torch.device("cuda:0")).pin_memory
    assert not make_dataloader([1], batch_size=1, num_workers=0, device="cuda:0", pin_memory=False).pin_memory
