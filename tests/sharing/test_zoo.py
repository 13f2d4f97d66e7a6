"""The model-zoo checks (common.sharing.zoo): every bundle passes them in full mode, from the repository and packed
(run where medxfer is not importable); parsing with no data defers the "not found" error to the run."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow

from common.data.datalist import MissingInputs, load_datalist, load_inputs, require_inputs
from common.errors import DataError
from common.networks import build_classifier
from common.networks.checkpoint_card import make_card, write_card
from common.networks.weights import imagenet_weights_file
from common.sharing import zoo
from common.sharing.zoo import zoo_checks
from tests.bundles.conftest import ALL_BUNDLES, BUNDLES, SCHEMA, root_cause

SHIPPED_SCHEMA = zoo.SCHEMA_DIR / "meta_schema_20240725.json"
SCHEMA_FILE = SHIPPED_SCHEMA if SHIPPED_SCHEMA.is_file() else SCHEMA
needs_schema = pytest.mark.skipif(not SCHEMA_FILE.is_file(), reason="no local copy of meta_schema_20240725.json")
#: bundles whose train.json loads ImageNet weights by default: arch of each
IMAGENET_ARCHS = ("densenet121", "swin_t")


@pytest.fixture(scope="module")
def imagenet_hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TORCH_HOME holding ImageNet-shaped weights (freshly initialised) for the archs the default configs load."""
    home = tmp_path_factory.mktemp("torch_home")
    previous = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(home)
    try:
        for arch in IMAGENET_ARCHS:
            file = imagenet_weights_file(arch)
            file.parent.mkdir(parents=True, exist_ok=True)
            torch.save(build_classifier(arch, 1000).state_dict(), file)
    finally:
        if previous is None:
            del os.environ["TORCH_HOME"]
        else:
            os.environ["TORCH_HOME"] = previous
    return home


def zoo_ready_copy(name: str, destination: Path, card: bool = False) -> Path:
    """A copy of a repository bundle with a freshly initialised models/model.pt (the zoo's own stand-in weights),
    plus its checkpoint card when ``card`` (pack requires one)."""
    root = Path(shutil.copytree(BUNDLES / name, destination / name,
                                ignore=shutil.ignore_patterns("models", "eval", "logs", "predictions")))
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    parser["bundle_root"] = str(root)
    (root / "models").mkdir()
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), root / "models" / "model.pt")
    if card:
        write_card(root / "models" / "model.json", make_card(
            root / "models" / "model.pt", arch=parser.get_parsed_content("arch"),
            class_names=parser.get_parsed_content("class_names"),
            preprocessing=parser.get_parsed_content("checkpoint_card#preprocessing")))
    return root


def _tree(root: Path, skip: str = "\0") -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not str(p.relative_to(root)).startswith(skip)}


def _expected_export(name: str) -> str:
    metadata = json.loads((BUNDLES / name / "configs" / "metadata.json").read_text())
    return "traced" if metadata.get("torchscript_export", {}).get("use_trace") else "scripted"


@needs_schema
@pytest.mark.parametrize("name", ALL_BUNDLES)
def test_repository_bundle_passes_full_mode(name: str, tmp_path: Path, imagenet_hub: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(imagenet_hub))
    root = zoo_ready_copy(name, tmp_path)
    before = _tree(root)
    report = zoo_checks(root, "full", schema=SCHEMA_FILE, device="cpu")
    names = [c.name for c in report.checks]
    assert names == ["files", "large_files", "version", "metadata", "requirements", "workflows", "net_in_out",
                     "torchscript"]
    failed = report.failed()
    # Unpacked, a repository bundle still declares medxfer, installed here from the checkout (pip install -e .):
    # exactly what the zoo cannot install. pack removes it (the packed test below passes every check).
    assert set(failed) <= {"requirements"}, report.format_text()
    assert all("medxfer" in part for part in failed.get("requirements", "").split("; ") if part)
    torchscript = next(c for c in report.checks if c.name == "torchscript")
    assert torchscript.detail.startswith(_expected_export(name))
    assert _tree(root) == before  # nothing written into the checked bundle


def test_min_mode_names_what_is_missing(tmp_path: Path) -> None:
    root = tmp_path / "bundle"
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "metadata.json").write_text(json.dumps({"version": "0.2.0", "changelog": {"0.1.0": "x"}}))
    (root / "large_files.yml").write_text("large_files:\n  - path: models/model.pt\n    url: https://x/model.pt\n")
    report = zoo_checks(root, "min", schema=tmp_path / "absent.json")
    failed = report.failed()
    assert [c.name for c in report.checks] == ["files", "large_files", "version", "metadata", "requirements"]
    assert failed["files"] == "missing: LICENSE, models/model.pt, configs/inference.json (or .yaml/.yml)"
    assert "models/model.pt: not here (the zoo downloads it from https://x/model.pt" in failed["large_files"]
    assert failed["version"] == "version 0.2.0 is not in the changelog (0.1.0)"
    assert "metadata" in failed and "requirements" not in failed
    with pytest.raises(ValueError, match="unknown mode 'max'; choose from: min, full"):
        zoo_checks(root, "max")


def test_absent_inputs_parse_and_the_run_names_them(tmp_path: Path) -> None:
    """The default config parses without data; running it stops with the reading error, before any handler."""
    missing = load_datalist(tmp_path / "datalist.json", "training", defer_missing=True)
    assert isinstance(missing, MissingInputs) and len(missing) == 1
    for use in (lambda: missing[0], lambda: list(missing), lambda: require_inputs([], missing)):
        with pytest.raises(DataError, match="datalist not found: .*datalist.json; create it with"):
            use()
    with pytest.raises(DataError, match="input folder not found: .*absent"):
        require_inputs(load_inputs(tmp_path / "absent", defer_missing=True))
    with pytest.raises(DataError, match="datalist not found"):  # without defer_missing: raised at once, as before
        load_datalist(tmp_path / "datalist.json", "training")


@pytest.mark.parametrize(("name", "files", "workflow_type", "match"), [
    ("chest_xray_classification", ["train.json"], "train", "datalist not found: /workspace/data/ChestX-ray14/"),
    ("medical_general_pretraining", ["train.json"], "train", "datalist not found: /workspace/data/general_medical/"),
    ("breast_histology_segmentation_unet", ["train.json", "evaluate.json"], "train", "datalist not found: "),
    ("breast_mammo_classification", ["inference.json"], "infer", "input folder not found: /workspace/data/mammograms"),
], ids=["chest-train", "stage2-train", "unet-evaluate", "mammo-inference"])
def test_default_config_runs_into_the_missing_data_error(name: str, files: list[str], workflow_type: str,
                                                         match: str, tmp_path: Path) -> None:
    root = zoo_ready_copy(name, tmp_path)
    configs = root / "configs"
    workflow = ConfigWorkflow(config_file=[str(configs / f) for f in files], meta_file=str(configs / "metadata.json"),
                              workflow_type=workflow_type, bundle_root=str(root), pretrained="none")
    workflow.initialize()
    assert workflow.check_properties() == []
    before = _tree(root, skip="logs")  # the TensorBoard handler opened its event file when it was built
    with pytest.raises(RuntimeError) as info:
        workflow.run()
    assert isinstance(root_cause(info.value), DataError) and match in str(root_cause(info.value))
    assert _tree(root, skip="logs") == before  # no previous run moved aside, no class names written


# -- packed: the archive another site receives, checked where medxfer is not importable ---------------------------
BOOTSTRAP = textwrap.dedent("""
    import runpy, sys
    sys.path.append(sys.argv[1])  # site-packages without its .pth files: no editable medxfer finder
    try:
        import common
    except ModuleNotFoundError:
        sys.stderr.write("ISOLATED: common is not importable\\n")
    else:
        sys.exit(f"common importable from {common.__file__}")
    sys.argv = sys.argv[2:]
    runpy.run_path(sys.argv[0], run_name="__main__")
""")


def run_zoo_isolated(bundles: list[Path], workdir: Path, env: dict[str, str]) -> list[dict]:
    """``python zoo.py BUNDLE ... --mode full --json`` in a Python without medxfer (no .pth files, no PYTHONPATH)."""
    boot = workdir / "boot.py"
    boot.write_text(BOOTSTRAP)
    args = [sys.executable, "-S", "-E", str(boot), sysconfig.get_paths()["purelib"], zoo.__file__,
            *map(str, bundles), "--mode", "full", "--schema", str(SCHEMA_FILE), "--device", "cpu", "--json"]
    done = subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True, timeout=1200)
    assert "ISOLATED: common is not importable" in done.stderr, done.stderr[-3000:]
    assert done.returncode in (0, 1), done.stderr[-3000:]
    return json.loads(done.stdout[done.stdout.index("["):])


@needs_schema
def test_packed_bundles_pass_full_mode_without_medxfer(tmp_path: Path, imagenet_hub: Path) -> None:
    pack = pytest.importorskip("common.sharing.pack", reason="common.sharing.pack (the pack verb) has not landed")
    unpacked = []
    for name in ALL_BUNDLES:
        root = zoo_ready_copy(name, tmp_path / "site", card=True)
        archive = pack.pack_bundle(root, tmp_path / "outbox", record=False)
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(tmp_path / "received")
        unpacked.append(tmp_path / "received" / name)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"TORCH_HOME": str(imagenet_hub)}
    reports = run_zoo_isolated(unpacked, tmp_path, env)
    failed = {Path(r["bundle"]).name: {c["name"]: c["detail"] for c in r["checks"] if not c["ok"]} for r in reports}
    assert failed == {name: {} for name in ALL_BUNDLES}
