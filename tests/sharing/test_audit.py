"""audit: every hostile config trick is flagged with file and config id; the repo's bundles and overlays are clean."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from common.sharing.__main__ import main
from common.sharing.audit import audit_bundle
from common.sharing.audit_vendored import unvendor_source
from common.sharing.errors import SharingError

REPO = Path(__file__).resolve().parents[2]
HOSTILE = Path(__file__).resolve().parent / "hostile"
BUNDLES = sorted(p.name for p in (REPO / "bundles").iterdir() if (p / "configs").is_dir())
OVERLAYS = sorted((REPO / "configs" / "finetune").glob("*.json"))

#: hostile file -> (config id of the flagged entry, a fragment of the reason)
CASES = {
    "os_system.json": ("run#0", "os.system"),
    "subprocess_target.json": ("evil#_target_", "'subprocess' is outside the allowlist"),
    "dunder_import.json": ("network", "__import__"),
    "eval.json": ("num_classes", "eval runs a string as code"),
    "exec.json": ("initialize#0", "exec runs a string as code"),
    "compile.json": ("code", "compile turns a string into code"),
    "open_write.json": ("marker", "open for writing"),
    "getattr_load.json": ("state", "getattr"),
    "subclasses.json": ("classes", "__subclasses__"),
    "pickle_loads.json": ("state", "'pickle' is outside the allowlist"),
    "urllib_fetch.json": ("weights", "'urllib' is outside the allowlist"),
    "socket_send.json": ("beacon", "'socket' is outside the allowlist"),
    "torch_hub.json": ("network_def", "torch.hub"),
    "numpy_pickle.json": ("features", "allow_pickle"),
    "builtins_dunder.json": ("seed", "__builtins__"),
    "overlay_replaces_key.json": ("validate#postprocessing#transforms#0#sigmoid", "os.system"),
    "nested_list.json": ("train#handlers#1#0#_target_", "exec runs a string as code"),
    "imports_entry.json": ("imports#0", "'subprocess' is outside the allowlist"),
    "target_from_string.json": ("evil#_target_", "built at run time"),
    "optional_import.json": ("shell", "optional_import"),
    "reference_alias.json": ("state", "torch.serialization.load without a literal weights_only=True"),
    "torch_load_target.json": ("state#_target_", "weights_only"),
    "sys_modules.json": ("shell", "'sys' is outside the allowlist"),
    "lambda_smuggle.json": ("hook", ".system"),
    "macro_outside.json": ("network_def", "outside the bundle"),
    "debug_mode.json": ("preprocessing#_mode_", "pdb"),
    "stdlib_through_library.json": ("state", "standard-library module pickle through torch.serialization"),
    "cache_unpickle.json": ("validate#dataset#_target_", "weights_only=...) not a literal True"),
    "medxfer_tooling.json": ("rerun", "medxfer tooling"),
}


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chest bundle's configs alone: the innocent bundle each hostile file is dropped into."""
    root = tmp_path_factory.mktemp("host") / "chest"
    shutil.copytree(REPO / "bundles" / "chest_xray_classification" / "configs", root / "configs")
    return root


def _with(host: Path, tmp_path: Path, *files: Path) -> Path:
    root = Path(shutil.copytree(host, tmp_path / "bundle"))
    for file in files:
        shutil.copy(file, root / "configs" / file.name)
    return root


def test_every_trick_has_a_hostile_config() -> None:
    assert sorted(CASES) == sorted(p.name for p in HOSTILE.glob("*.json"))


@pytest.mark.parametrize("name", sorted(CASES), ids=[n.removesuffix(".json") for n in sorted(CASES)])
def test_hostile_config_is_flagged_with_file_and_id(host: Path, tmp_path: Path, name: str) -> None:
    config_id, reason = CASES[name]
    report = audit_bundle(_with(host, tmp_path, HOSTILE / name))
    hits = [f for f in report.flagged if f.file == f"configs/{name}" and f.config_id == config_id]
    assert hits, f"not flagged at configs/{name} {config_id}: {[f.line() for f in report.flagged]}"
    assert any(reason in f.reason for f in hits), [f.reason for f in hits]
    assert not [f for f in report.flagged if not f.file.endswith(name)], "an innocent config was flagged"


def test_overlay_is_audited_merged_with_the_config_it_changes(host: Path, tmp_path: Path) -> None:
    report = audit_bundle(_with(host, tmp_path, HOSTILE / "overlay_replaces_key.json"))
    assert ["configs/train.json", "configs/overlay_replaces_key.json"] in report.combinations
    assert {f.file for f in report.flagged} == {"configs/overlay_replaces_key.json"}


def test_overlay_from_outside_the_bundle_is_audited(host: Path, tmp_path: Path) -> None:
    report = audit_bundle(_with(host, tmp_path), [HOSTILE / "torch_hub.json"])
    assert [f.config_id for f in report.flagged] == ["network_def"]


def test_nothing_is_evaluated(host: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    root = _with(host, tmp_path)
    (root / "configs" / "payload.json").write_text(json.dumps(
        {"imports": ["$import os"], "x": f"$open({str(marker)!r}, 'w').write('ran')",
         "run": [f"$os.system('touch {marker}')"], "y": {"_target_": "builtins.exec", "source": "open('ran','w')"}}))
    assert len(audit_bundle(root).flagged) == 3
    assert not marker.exists() and not (root / "ran").exists()


@pytest.mark.parametrize("bundle", BUNDLES)
def test_repo_bundle_with_every_finetune_overlay_has_no_flagged_finding(bundle: str) -> None:
    report = audit_bundle(REPO / "bundles" / bundle, OVERLAYS)
    assert report.flagged == [], "\n".join(f.line() for f in report.flagged)
    assert {"monai", "torch", "common", "reference"} <= set(report.counts())
    assert len(report.findings) > 100


def test_reference_expression_is_classified_as_reference() -> None:
    report = audit_bundle(REPO / "bundles" / "chest_xray_classification")
    ckpt_dir = [f for f in report.findings if f.file == "configs/train.json" and f.config_id == "ckpt_dir"]
    assert [(f.kind, f.category, f.references, f.flagged) for f in ckpt_dir] == [
        ("expression", "reference", ("bundle_root",), False)]
    network = [f for f in report.findings if f.file == "configs/train.json" and f.config_id == "network"]
    assert [(f.kind, f.category, f.references, f.flagged) for f in network] == [
        ("expression", "common", ("channels_last", "network_def", "device"), False)]  # calls common.engines.precision
    target = [f for f in report.findings if f.file == "configs/train.json" and f.config_id == "resize#_target_"]
    assert target[0].category == "monai" and target[0].names[0].startswith("monai.transforms.")


def test_os_environ_and_imports_are_classified_not_flagged() -> None:
    report = audit_bundle(REPO / "bundles" / "chest_xray_classification")
    by_id = {(f.file, f.config_id): f for f in report.findings}
    assert by_id[("configs/train.json", "imports#0")].kind == "import"
    assert by_id[("configs/train.json", "imports#0")].category == "stdlib"
    device = by_id[("configs/multi_gpu_train.json", "device")]
    assert (device.flagged, set(device.names)) == (False, {"torch.device", "os.environ", "torch.cuda.is_available"})


@pytest.mark.parametrize("text,flagged", [
    ("$torch.load(@ckpt_dir + '/model.pt', weights_only=True)", False),
    ("$torch.load(@ckpt_dir + '/model.pt', weights_only=@trust)", True),
    ("$np.load(@ckpt_dir + '/x.npy')", False),
    ("$open(@datalist).read()", True),
    ("$[h for h in @train#handlers if h is not None]", False),
    ("$@network_def.__class__", True),
    ("$torch", True),
    ("$undefined_name.run()", True),
    ("$monai.utils.misc.subprocess.run(['id'])", True),
    ("$@train#dataset.os.system('id')", True),
    ("$common.io.atomic_write_json", False),
], ids=["weights_only", "weights_only_ref", "np_load", "open_read", "comprehension", "ref_dunder", "module_value",
        "unknown_name", "stdlib_via_monai", "stdlib_via_ref", "common_io"])
def test_expression_rules(host: Path, tmp_path: Path, text: str, flagged: bool) -> None:
    root = _with(host, tmp_path)
    (root / "configs" / "extra.json").write_text(json.dumps({"probe": text}))
    probes = [f for f in audit_bundle(root).findings if f.config_id == "probe"]
    assert {f.flagged for f in probes} == {flagged}, [f.reason for f in probes]


def _vendor(root: Path, module: str) -> Path:
    """Vendor ``common/<module>`` as ``scripts/<module>`` the way pack does, with a matching vendored.json."""
    source = (REPO / "common" / module).read_text()
    text = source.replace("from common.", "from scripts.").replace("import common.", "import scripts.")
    target = root / "scripts" / module
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    (root / "scripts" / "__init__.py").write_text('"""Vendored medxfer code."""\n')
    files = {f"scripts/{module}": {"source": f"common/{module}", "sha256": hashlib.sha256(text.encode()).hexdigest()},
             "scripts/__init__.py": {"source": "common/__init__.py", "stub": True,
                                     "sha256": hashlib.sha256(b'"""Vendored medxfer code."""\n').hexdigest()}}
    (root / "scripts" / "vendored.json").write_text(json.dumps(
        {"package": "common", "as": "scripts", "medxfer_version": "0.1.0", "files": files}))
    return target


def test_vendored_code_identical_to_this_medxfer_is_listed_not_flagged(host: Path, tmp_path: Path) -> None:
    root = _with(host, tmp_path)
    _vendor(root, "io.py")  # imports os: medxfer's own library, compared rather than scanned
    (root / "configs" / "extra.json").write_text(json.dumps({"imports": ["$import scripts.io"],
                                                             "probe": "$scripts.io.atomic_write_json"}))
    report = audit_bundle(root)
    assert report.flagged == []
    vendored = {f.file: f.text for f in report.findings if f.kind == "vendored"}
    assert vendored["scripts/io.py"].endswith("identical to common/io.py of this medxfer (0.1.0)")
    assert "stub (docstring only)" in vendored["scripts/__init__.py"]
    assert [f.category for f in report.findings if f.config_id == "probe"] == ["scripts"]


def test_scripts_without_a_vendored_folder_is_flagged(host: Path, tmp_path: Path) -> None:
    root = _with(host, tmp_path)
    (root / "configs" / "extra.json").write_text(json.dumps({"imports": ["$import scripts.transforms"]}))
    flagged = audit_bundle(root).flagged
    assert [(f.config_id, f.kind) for f in flagged] == [("imports#0", "import")]
    assert "scripts is not vendored in this bundle" in flagged[0].reason


@pytest.mark.parametrize("tamper,reason", [
    ("unlisted", "not listed in scripts/vendored.json"),
    ("hash", "sha256 differs from scripts/vendored.json"),
    ("edited", "differs from common/io.py of this medxfer"),
    ("missing", "listed in scripts/vendored.json but not in the bundle"),
    ("stub_with_code", "a stub that holds code"),
], ids=["unlisted", "hash", "edited", "missing", "stub_with_code"])
def test_tampered_vendored_code_is_flagged(host: Path, tmp_path: Path, tamper: str, reason: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    root = _with(host, tmp_path)
    vendored = _vendor(root, "io.py")
    record_path = root / "scripts" / "vendored.json"
    record = json.loads(record_path.read_text())
    # vendored from the very commit installed here: every file must equal this medxfer's source
    monkeypatch.setattr("common.sharing.provenance.source_revision", lambda: {"commit": "c0ffee", "dirty": False})
    record.update(commit="c0ffee", dirty=False)
    if tamper == "unlisted":
        (root / "scripts" / "extra.py").write_text("import os\nos.system('id')\n")
    elif tamper == "hash":
        vendored.write_text(vendored.read_text() + "\n")
    elif tamper == "edited":
        vendored.write_text(vendored.read_text() + "\nimport os\n")
        record["files"]["scripts/io.py"]["sha256"] = hashlib.sha256(vendored.read_bytes()).hexdigest()
    elif tamper == "missing":
        vendored.unlink()
    else:
        stub = root / "scripts" / "__init__.py"
        stub.write_text('"""Vendored."""\nimport os\n')
        record["files"]["scripts/__init__.py"]["sha256"] = hashlib.sha256(stub.read_bytes()).hexdigest()
    record_path.write_text(json.dumps(record))
    flagged = audit_bundle(root).flagged
    assert [f.kind for f in flagged] == ["vendored"] and reason in flagged[0].reason, [f.line() for f in flagged]


def test_code_vendored_from_another_revision_is_listed_for_review(host: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A sender on another medxfer commit ships other code; the signature vouches for it, the audit lists it."""
    root = _with(host, tmp_path)
    vendored = _vendor(root, "io.py")
    vendored.write_text(vendored.read_text() + "\n# a later medxfer\n")
    record_path = root / "scripts" / "vendored.json"
    record = json.loads(record_path.read_text())
    record["files"]["scripts/io.py"]["sha256"] = hashlib.sha256(vendored.read_bytes()).hexdigest()
    record.update(commit="0ther", dirty=False)
    record_path.write_text(json.dumps(record))
    monkeypatch.setattr("common.sharing.provenance.source_revision", lambda: {"commit": "c0ffee", "dirty": False})
    report = audit_bundle(root)
    assert report.flagged == []
    listed = {f.file: f.text for f in report.findings if f.kind == "vendored"}
    assert "vendored from another revision" in listed["scripts/io.py"]


def test_unvendor_reverses_import_lines_only() -> None:
    text = "from scripts.io import x\n    import scripts.networks as n\nname = 'scripts.io'\n"
    assert unvendor_source(text) == "from common.io import x\n    import common.networks as n\nname = 'scripts.io'\n"


def _zip(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as out:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                out.write(path, f"{folder.name}/{path.relative_to(folder).as_posix()}")
    return archive


def test_cli_exit_status_text_and_json(host: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(host)]) == 0
    assert "0 flagged" in capsys.readouterr().out
    hostile = _with(host, tmp_path, HOSTILE / "subprocess_target.json")
    assert main(["audit", str(hostile), "--all"]) == 1
    out = capsys.readouterr().out
    assert "FLAGGED configs/subprocess_target.json  evil#_target_  subprocess.run" in out and "\nok " in out
    assert main(["audit", str(_zip(hostile, tmp_path / "hostile.zip")), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["flagged"] == 1 and report["findings"][0]["config_id"] == "evil#_target_"


def test_not_a_bundle_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SharingError, match="no configs/ folder"):
        audit_bundle(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "train.json").write_text("{not json")
    assert main(["audit", str(tmp_path)]) == 2
    assert "configs/train.json: not a readable JSON/YAML config" in capsys.readouterr().err
