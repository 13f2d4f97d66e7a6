"""run_bundle leaves no DataLoader worker processes behind (persistent workers, many runs in one process)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from common.bundle_runner import copy_bundle, run_bundle
from tests.bundles.conftest import CHEST_BUNDLE, chest_dataset, tiny_overrides  # noqa: F401 (session fixture)


def test_persistent_loader_workers_end_with_the_run(tmp_path: Path, chest_dataset: Path) -> None:  # noqa: F811
    root = copy_bundle(CHEST_BUNDLE, tmp_path / "chest")
    before = set(multiprocessing.active_children())
    settings = {**tiny_overrides(root, chest_dataset), "num_workers": 1}
    settings.pop("bundle_root")
    workflow = run_bundle(root, ["train.json"], "train", **settings)
    assert workflow.parser.get_parsed_content("train#dataloader").persistent_workers  # the case that leaked
    assert set(multiprocessing.active_children()) - before == set()
