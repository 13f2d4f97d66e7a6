"""A bundle pointed at a stale, foreign, incomplete or non-cache folder refuses with StaleCacheError naming what
changed (setting, library, file, datalist field, missing item); the prepare-cache command reports one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from common.cli import main
from common.data.cache import LoadPreparedd, load_stage
from common.data.cache_build import build_cache
from common.data.cache_read import INDEX_NAME
from common.errors import ConfigError, StaleCacheError
from common.synthetic import make_embedded_dataset
from tests.data.test_cache_build import BUNDLES, CHEST, bundle_stage, make_chest

MAMMO = "breast_mammo_classification"


@pytest.fixture
def chest(tmp_path: Path) -> Path:
    """A fresh dataset per test (tests touch its files) with its cache built at 16 px."""
    data = make_chest(tmp_path / "chest")
    build_cache(BUNDLES / CHEST, data / "datalist.json", tmp_path / "cache", overrides={"image_size": 16},
                splits=["training", "validation"], shard_size=4, progress=False)  # fmt: skip
    return data


@pytest.mark.parametrize(("override", "expected"), [
    ({"image_size": 24}, r"load_transforms\[3\] \(Resized\)\.resizer\.spatial_size: cache has \[16, 16\], bundle has "
                         r"\[24, 24\]"),
    ({"clahe_clip_limit": 3.0}, r"load_transforms\[2\] \(CLAHEd\)\.clahe\.clip_limit: cache has 2\.0, bundle has 3\.0"),
    ({"use_clahe": False}, r"load_transforms: cache has \[LoadRadiographd, MultiLabeld, CLAHEd, Resized\], bundle has "
                           r"\[LoadRadiographd, MultiLabeld, Resized\]"),
], ids=["image_size", "clahe_clip_limit", "use_clahe"])  # fmt: skip
def test_changed_setting_is_named(chest: Path, tmp_path: Path, override: dict, expected: str) -> None:
    transforms, items = bundle_stage(CHEST, chest, image_size=16, **override) if "image_size" not in override else \
        bundle_stage(CHEST, chest, **override)
    with pytest.raises(StaleCacheError, match=f"built by 'chest_xray_classification' with other preprocessing than "
                                              f"this bundle uses; 1 difference\\(s\\): {expected}; rebuild it"):
        load_stage(transforms, str(tmp_path / "cache"), items)


def test_library_version_change_is_named(chest: Path, tmp_path: Path) -> None:
    index = json.loads((tmp_path / "cache" / INDEX_NAME).read_text())
    index["preprocessing"]["versions"]["monai"] = "0.9.0"
    (tmp_path / "cache" / INDEX_NAME).write_text(json.dumps(index))
    transforms, items = bundle_stage(CHEST, chest, image_size=16)
    with pytest.raises(StaleCacheError, match=r"library monai: cache built with 0\.9\.0, installed is \d"):
        LoadPreparedd(tmp_path / "cache", transforms, items)


def test_touched_file_is_named(chest: Path, tmp_path: Path) -> None:
    transforms, items = bundle_stage(CHEST, chest, image_size=16)
    touched = items[0]["image"]
    stat = os.stat(touched)
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(StaleCacheError, match=f"is stale: 1 source file\\(s\\) changed since the build: {touched} "
                                              f"\\(modified: mtime_ns {stat.st_mtime_ns} -> "):
        LoadPreparedd(tmp_path / "cache", transforms, items)
    with pytest.raises(StaleCacheError, match=f"{touched} \\(modified"):  # also when read without the up-front check
        LoadPreparedd(tmp_path / "cache", transforms)(items[0])


def test_rewritten_file_names_its_size(chest: Path, tmp_path: Path) -> None:
    transforms, items = bundle_stage(CHEST, chest, image_size=16)
    with open(items[1]["image"], "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(StaleCacheError, match=f"{items[1]['image']} \\(size \\d+ -> \\d+ bytes\\)"):
        LoadPreparedd(tmp_path / "cache", transforms, items)


def test_changed_label_in_datalist_is_named(chest: Path, tmp_path: Path) -> None:
    transforms, items = bundle_stage(CHEST, chest, image_size=16)
    items[0] = {**items[0], "label": [1.0 - v for v in items[0]["label"]]}
    with pytest.raises(StaleCacheError, match=f"1 datalist field\\(s\\) changed: {items[0]['image']} field 'label'"):
        LoadPreparedd(tmp_path / "cache", transforms, items)


def test_item_outside_the_cached_splits_is_named(chest: Path, tmp_path: Path) -> None:
    transforms, items = bundle_stage(CHEST, chest, "test", image_size=16)
    with pytest.raises(StaleCacheError, match=f"datalist item\\(s\\) not in the cache: {items[0]['image']}"):
        LoadPreparedd(tmp_path / "cache", transforms, items)
    with pytest.raises(StaleCacheError, match=r"has no entry for .* \(built from splits \['training', 'validation'\]"):
        LoadPreparedd(tmp_path / "cache", transforms)(items[0])


def test_foreign_cache_is_refused(chest: Path, tmp_path: Path) -> None:
    mammo = tmp_path / "mammo"
    make_embedded_dataset("cbis-ddsm", mammo, {"n_patients": 4, "image_size": 64, "seed": 2},
                          {"val_fraction": 0.3, "seed": 0})  # fmt: skip
    build_cache(BUNDLES / MAMMO, mammo / "datalist.json", tmp_path / "mammo_cache", splits=["validation"],
                overrides={"image_size": 16}, progress=False)  # fmt: skip
    transforms, items = bundle_stage(CHEST, chest, image_size=16)
    with pytest.raises(StaleCacheError, match=r"built by 'breast_mammo_classification' .* load_transforms: cache has "
                                              r"\[LoadRadiographd, MultiLabeld, ArtifactMaskd, ForegroundCropd"):
        LoadPreparedd(tmp_path / "mammo_cache", transforms, items)


def test_not_a_cache_and_incomplete_cache_are_refused(chest: Path, tmp_path: Path) -> None:
    transforms, _ = bundle_stage(CHEST, chest, image_size=16)
    with pytest.raises(StaleCacheError, match="it is not a prepared-image cache \\(no cache.json\\)"):
        LoadPreparedd(chest, transforms)
    (tmp_path / "cache" / INDEX_NAME).unlink()
    with pytest.raises(StaleCacheError, match="its build did not finish: rerun python -m common prepare-cache"):
        LoadPreparedd(tmp_path / "cache", transforms)


def test_null_cache_dir_keeps_the_transforms_and_a_bad_one_is_refused(chest: Path) -> None:
    transforms, _ = bundle_stage(CHEST, chest, image_size=16)
    assert load_stage(transforms, None) == transforms
    with pytest.raises(ConfigError, match=r"setting cache_dir=3 \(int\) is not valid: expected null or the folder"):
        load_stage(transforms, 3)


def test_command_builds_and_reports_errors_in_one_line(chest: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    argv = ["prepare-cache", "--bundle", str(BUNDLES / CHEST), "--datalist", str(chest / "datalist.json"),
            "--set", "image_size=16", "--splits", "validation", "--num-workers", "0", "--no-progress"]  # fmt: skip
    assert main([*argv, "--output", str(tmp_path / "cli_cache")]) == 0
    assert "item(s) {'validation': " in capsys.readouterr().out
    assert main([*argv, "--output", str(chest)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: --output {chest} is a non-empty folder that is not a "
                                               f"prepared-image cache; choose an empty or new folder")  # fmt: skip
