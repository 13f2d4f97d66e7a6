"""Vendoring: exact renaming of ``common`` to ``scripts``, the module closure, and a vendored bundle running where
medxfer's ``common`` cannot be imported, with the same predictions and metrics as the original."""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from common.bundle_runner import run_bundle
from common.sharing.errors import PackError
from common.sharing.vendor import (
    VENDOR_RECORD,
    module_closure,
    referenced_modules,
    rewrite_config_value,
    rewrite_source,
    vendor_into,
)
from tests.sharing.conftest import BUNDLES, CHEST, CHEST_TINY, REPO, fresh_copy

SOURCE_CASES = [
    ("import common.networks as nets\n", "import scripts.networks as nets\n"),
    ("from common.io import atomic_save\n", "from scripts.io import atomic_save\n"),
    ("from common import __version__\n", "from scripts import __version__\n"),
    ("def f():\n    from common.errors import DataError\n    return DataError\n",
     "def f():\n    from scripts.errors import DataError\n    return DataError\n"),
    ("from common.data.datalist import (\n    load_datalist,\n    list_images,\n)\n",
     "from scripts.data.datalist import (\n    load_datalist,\n    list_images,\n)\n"),
    ("import os, common.io as cio\n", "import os, scripts.io as cio\n"),
    ("import commonmark\nfrom common_utils import x\n", "import commonmark\nfrom common_utils import x\n"),
    ('"""Use it as\n\nfrom common.io import atomic_save\n"""\nfrom . import sibling\n',
     '"""Use it as\n\nfrom common.io import atomic_save\n"""\nfrom . import sibling\n'),
]
SOURCE_IDS = ["import-as", "from-import", "from-package", "function-level", "multi-line", "second-alias",
              "similar-names", "docstring-and-relative"]


@pytest.mark.parametrize(("source", "expected"), SOURCE_CASES, ids=SOURCE_IDS)
def test_rewrite_source(source: str, expected: str) -> None:
    assert rewrite_source(source) == expected


def test_rewrite_source_refuses_a_bare_common_name() -> None:
    with pytest.raises(PackError, match="still refers to 'common'"):
        rewrite_source("import common.io\n\ncommon.io.atomic_save('x', print)\n")


@pytest.mark.parametrize(("key", "text", "expected"), [
    ("imports", "$import common", "$import scripts"),
    ("imports", "$import common.networks", "$import scripts.networks"),
    ("data", "$common.data.datalist.load_inputs(@dataset_dir, @datalist)",
     "$scripts.data.datalist.load_inputs(@dataset_dir, @datalist)"),
    ("_target_", "common.transforms.CLAHEd", "scripts.transforms.CLAHEd"),
    ("factory", "common.networks.build_classifier", "scripts.networks.build_classifier"),
    ("x", "$@common_dir + '/common' + common.io.__name__", "$@common_dir + '/common' + scripts.io.__name__"),
    ("x", "$@train#common.x", "$@train#common.x"),
    ("description", "built by common.networks.build_classifier", "built by common.networks.build_classifier"),
    ("_target_", "commonality.Thing", "commonality.Thing"),
], ids=["import", "import-module", "expression", "target", "dotted-path", "reference-and-literal", "reference-id",
        "prose", "similar-target"])
def test_rewrite_config_value(key: str, text: str, expected: str) -> None:
    assert rewrite_config_value(key, text) == expected


def test_closure_takes_only_what_the_configs_reach(tmp_path: Path) -> None:
    files, stubs = module_closure({"common.data.datalist"})
    assert "common.data.datalist" in files and "common.errors" in files
    assert stubs == {"common.data"}  # its __init__ imports every adapter and generator
    assert "common.data.chestxray14" not in files
    files, _ = module_closure(referenced_modules(BUNDLES / CHEST))
    assert not [m for m in files if m.startswith(("common.label", "common.experiments", "common.sharing"))]


@pytest.fixture(scope="module")
def vendored(tmp_path_factory: pytest.TempPathFactory, trained_chest_bundle: Path) -> Path:
    bundle = fresh_copy(trained_chest_bundle, tmp_path_factory.mktemp("vendored") / CHEST)
    vendor_into(bundle)
    return bundle


def test_vendored_code_and_configs_never_name_common(vendored: Path) -> None:
    for path in (vendored / "scripts").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert not [a.name for a in node.names if a.name.split(".")[0] == "common"], path
            elif isinstance(node, ast.ImportFrom) and not node.level:
                assert (node.module or "").split(".")[0] != "common", path
            assert not (isinstance(node, ast.Name) and node.id == "common"), path
    for path in (vendored / "configs").glob("*.json"):
        if path.name != "metadata.json":
            text = path.read_text()
            assert '"common.' not in text and "$common." not in text and "import common" not in text, path


def test_vendored_record(vendored: Path) -> None:
    record = json.loads((vendored / "scripts" / VENDOR_RECORD).read_text())
    assert (record["package"], record["as"]) == ("common", "scripts")
    assert record["medxfer_version"] == __import__("common").__version__
    on_disk = {p.relative_to(vendored).as_posix() for p in (vendored / "scripts").rglob("*.py")}
    assert set(record["files"]) == on_disk
    for name, entry in record["files"].items():
        assert hashlib.sha256((vendored / name).read_bytes()).hexdigest() == entry["sha256"]
        assert hashlib.sha256((REPO / entry["source"]).read_bytes()).hexdigest() == entry["sha256_source"]
    assert record["files"]["scripts/data/__init__.py"]["stub"] is True


def test_metadata_requirements(vendored: Path) -> None:
    required = json.loads((vendored / "configs" / "metadata.json").read_text())["required_packages_version"]
    pins = dict(line.split("==")[:2] for line in (REPO / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert "medxfer" not in required
    for name in ("torchvision", "opencv-python-headless", "pytorch-ignite", "scikit-learn", "pydicom"):
        assert required[name] == pins[name].split()[0], name


def test_vendoring_twice_refused(vendored: Path) -> None:
    with pytest.raises(PackError, match="exists already"):
        vendor_into(vendored)


BOOTSTRAP = textwrap.dedent("""
    import os, runpy, sys
    sys.path.append(sys.argv[1])  # site-packages without its .pth files: no editable medxfer finder
    sys.path[0] = os.getcwd()  # what python -m does
    try:
        import common
    except ModuleNotFoundError:
        sys.stderr.write("ISOLATED: common is not importable\\n")
    else:
        sys.exit(f"common importable from {common.__file__}")
    sys.argv = ["monai.bundle", *sys.argv[2:]]
    runpy.run_module("monai.bundle", run_name="__main__", alter_sys=True)
""")


def _run_isolated(bundle: Path, tmp_path: Path, configs: list[str], **override: object) -> None:
    """``python -m monai.bundle run`` from the bundle root, in a Python where medxfer is not importable."""
    boot = tmp_path / "boot.py"
    boot.write_text(BOOTSTRAP)
    args = [sys.executable, "-S", "-E", str(boot), sysconfig.get_paths()["purelib"], "run",
            "--config_file", json.dumps([f"configs/{c}" for c in configs]), "--meta_file", "configs/metadata.json",
            "--logging_file", "configs/logging.conf", "--bundle_root", "."]
    for key, value in override.items():
        args += [f"--{key}", str(value)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(args, cwd=bundle, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ISOLATED: common is not importable" in done.stderr


def _predictions(path: Path) -> dict[str, list[str]]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return {Path(row[0]).name: row[1:] for row in rows[1:]}


def test_vendored_inference_runs_without_medxfer(vendored: Path, trained_chest_bundle: Path, chest_dataset: Path,
                                                 tmp_path: Path) -> None:
    original = fresh_copy(trained_chest_bundle, tmp_path / "original" / CHEST)
    run_bundle(original, ["inference.json"], "infer", dataset_dir=str(chest_dataset), image_size=32, num_workers=0)
    _run_isolated(vendored, tmp_path, ["inference.json"], dataset_dir=chest_dataset, image_size=32, num_workers=0)
    expected = _predictions(original / "predictions" / "predictions.csv")
    assert len(expected) > 30
    assert _predictions(vendored / "predictions" / "predictions.csv") == expected


def test_vendored_evaluation_runs_without_medxfer(vendored: Path, trained_chest_bundle: Path, chest_dataset: Path,
                                                  tmp_path: Path) -> None:
    _run_isolated(vendored, tmp_path, ["train.json", "evaluate.json"], dataset_dir=chest_dataset, **CHEST_TINY)
    expected = json.loads((trained_chest_bundle / "eval" / "metrics.json").read_text())
    got = json.loads((vendored / "eval" / "metrics.json").read_text())
    assert (got["mean_auc"], got["mean_auc_ci"], got["n_images"]) == (
        expected["mean_auc"], expected["mean_auc_ci"], expected["n_images"])
