"""Tiny two-site synthetic federation shared by the federated tests (32 px, ResNet-18 from scratch)."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.synthetic.sites import generate_sites

REPO = Path(__file__).resolve().parents[2]
CHEST_BUNDLE = REPO / "bundles" / "chest_xray_classification"
FINETUNE = REPO / "configs" / "finetune"
#: what makes the chest bundle run in seconds on a CPU
TINY = {"pretrained": "none", "arch": "resnet18", "image_size": 32, "batch_size": 8, "val_batch_size": 8,
        "num_workers": 0, "n_boot": 10}


@pytest.fixture(scope="session")
def fl_sites(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two synthetic hospitals, 12 patients each, 32 px; the manifest of :func:`generate_sites`."""
    return generate_sites(tmp_path_factory.mktemp("fl_sites"), n_patients=12, image_size=32, seed=0)


def site_argv(site_dir: Path, datalist: str, *, strategy: Path | None = None, local_epochs: int = 1,
              **overrides: object) -> list[str]:
    """The client script's arguments for one site of ``fl_sites`` with :data:`TINY` (+ ``overrides``)."""
    import json

    argv = ["--bundle", str(CHEST_BUNDLE), "--datalist", datalist, "--dataset-dir", str(Path(datalist).parent),
            "--site-dir", str(site_dir), "--local-epochs", str(local_epochs)]
    if strategy is not None:
        argv += ["--strategy", str(strategy)]
    for key, value in {**TINY, **overrides}.items():
        argv += ["--set", f"{key}={json.dumps(value)}"]
    return argv


@pytest.fixture(autouse=True)
def one_torch_thread() -> object:
    """One intra-op thread in this process: the sites are tiny, and on a shared 2-core runner two threads per
    process ran a local epoch ~6x slower than one (oversubscription). Restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
