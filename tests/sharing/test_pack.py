"""pack: archive layout, manifest, signature, versions, provenance, no leaks, and MONAI's own download + load."""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import sys
import zipfile
from pathlib import Path

import monai.bundle
import pytest
import torch
import yaml

from common.sharing import pack
from common.sharing.errors import PackError, SignatureError
from common.sharing.manifest import MANIFEST, SIGNATURE, check_manifest, read_manifest
from common.sharing.provenance import BEGIN_MARK, END_MARK, build_provenance, update_model_card
from common.sharing.signing import keygen, verify_signature
from tests.sharing.conftest import CHEST, REPO, fresh_copy

VERSION = "0.3.0"
JUNK = ["data/images/00000099_000.png", "cache/prepared.npz", "configs/__pycache__/x.cpython-311.pyc",
        "docs/.notes.md", "models/model.ts", "predictions/predictions.csv"]
REQUIRED = ["configs/metadata.json", "configs/inference.json", "configs/train.json", "configs/evaluate.json",
            "configs/logging.conf", "docs/README.md", "docs/provenance.json", "LICENSE", "models/model.pt",
            "models/model.json", "scripts/__init__.py", "scripts/vendored.json", MANIFEST, SIGNATURE]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("keys")
    private, public = keygen(folder / "private", "site_a")
    (folder / "trusted").mkdir()
    (folder / "trusted" / public.name).write_bytes(public.read_bytes())
    return folder


@pytest.fixture(scope="module")
def site_bundle(tmp_path_factory: pytest.TempPathFactory, trained_chest_bundle: Path) -> Path:
    """A private copy of the trained bundle (pack records released versions in its metadata), with things a site's
    bundle folder may hold that must never be shared: a dataset, a cache, bytecode, hidden files."""
    bundle = fresh_copy(trained_chest_bundle, tmp_path_factory.mktemp("site") / CHEST)
    for junk in JUNK:
        (bundle / junk).parent.mkdir(parents=True, exist_ok=True)
        (bundle / junk).write_bytes(b"site-private")
    return bundle


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory, site_bundle: Path, keys: Path, chest_dataset: Path) -> Path:
    return pack.pack_bundle(site_bundle, tmp_path_factory.mktemp("outbox"), VERSION, "fine-tuned at site A",
                            sign_key=keys / "private" / "site_a.key", datalist=chest_dataset / "datalist.json")


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory, packed: Path) -> Path:
    folder = tmp_path_factory.mktemp("received")
    with zipfile.ZipFile(packed) as archive:
        archive.extractall(folder)
    return folder / CHEST


def _names(archive: Path) -> list[str]:
    with zipfile.ZipFile(archive) as handle:
        return handle.namelist()


def test_archive_layout(packed: Path) -> None:
    names = _names(packed)
    assert packed.name == f"{CHEST}_v{VERSION}.zip"
    assert {name.split("/")[0] for name in names} == {CHEST}
    assert names == sorted(names)
    inside = {name.split("/", 1)[1] for name in names}
    assert not [name for name in REQUIRED if name not in inside]
    leaked = [n for n in inside if n.startswith(("logs/", "eval/")) or "checkpoint.pt" in n or "__pycache__" in n
              or "predictions" in n or n.endswith((".pyc", ".npz", ".png"))]
    assert leaked == []
    assert not [junk for junk in JUNK if junk in inside]
    with zipfile.ZipFile(packed) as handle:
        assert not [name for name in handle.namelist() if b"site-private" in handle.read(name)]
        stored = {info.filename.split("/", 1)[1] for info in handle.infolist()
                  if info.compress_type == zipfile.ZIP_STORED}
        assert stored == {"models/model.pt"}  # weights stored (one read to verify), text deflated


def test_manifest_covers_every_file(unpacked: Path) -> None:
    manifest = check_manifest(unpacked)
    on_disk = {p.relative_to(unpacked).as_posix() for p in unpacked.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == on_disk - {MANIFEST, SIGNATURE}
    assert (manifest["bundle"], manifest["version"]) == (CHEST, VERSION)


def test_signature_verifies_after_extraction(unpacked: Path, keys: Path) -> None:
    assert verify_signature(unpacked, keys / "trusted")
    assert read_manifest(unpacked)["files"]["models/model.pt"]["size"] > 0


def test_metadata_version_changelog_and_requirements(unpacked: Path, site_bundle: Path, packed: Path) -> None:
    metadata = json.loads((unpacked / "configs" / "metadata.json").read_text())
    assert metadata["version"] == VERSION
    assert next(iter(metadata["changelog"])) == VERSION
    assert metadata["changelog"][VERSION] == "fine-tuned at site A"
    assert "medxfer" not in metadata["required_packages_version"]
    recorded = json.loads((site_bundle / "configs" / "metadata.json").read_text())
    assert (recorded["version"], recorded["changelog"][VERSION]) == (VERSION, "fine-tuned at site A")


def test_configs_take_the_trained_models_settings(unpacked: Path) -> None:
    card = json.loads((unpacked / "models" / "model.json").read_text())
    inference = json.loads((unpacked / "configs" / "inference.json").read_text())
    assert inference["image_size"] == card["preprocessing"]["image_size"] == 32
    assert inference["arch"] == card["arch"]


def test_without_version_the_patch_is_bumped_and_an_archive_is_never_overwritten(
        site_bundle: Path, packed: Path, tmp_path: Path) -> None:
    archive = pack.pack_bundle(site_bundle, tmp_path, record=False)
    assert archive.name == f"{CHEST}_v0.3.1.zip"
    assert json.loads((site_bundle / "configs" / "metadata.json").read_text())["version"] == VERSION
    with pytest.raises(PackError, match="exists already"):
        pack.pack_bundle(site_bundle, tmp_path, record=False)


@pytest.mark.parametrize(("version", "changelog", "message"), [
    ("0.2.0", "again", "already in the changelog"),
    ("0.1.9", "older", "not above the bundle's current version"),
    ("0.4", "short", "not MAJOR.MINOR.PATCH"),
    ("0.4.0", None, "needs --changelog"),
], ids=["released", "lower", "malformed", "no-changelog"])
def test_bad_versions_refused(site_bundle: Path, packed: Path, tmp_path: Path, version: str, changelog: str | None,
                              message: str) -> None:
    with pytest.raises(PackError, match=message):
        pack.pack_bundle(site_bundle, tmp_path, version, changelog)
    assert list(tmp_path.iterdir()) == []


def test_missing_model_refused(site_bundle: Path, tmp_path: Path) -> None:
    bundle = fresh_copy(site_bundle, tmp_path / CHEST)
    (bundle / "models" / "model.pt").unlink()
    with pytest.raises(PackError, match=r"models/model\.pt: missing"):
        pack.pack_bundle(bundle, tmp_path / "out")


def test_stale_card_refused(site_bundle: Path, tmp_path: Path) -> None:
    bundle = fresh_copy(site_bundle, tmp_path / CHEST)
    card = json.loads((bundle / "models" / "model.json").read_text())
    (bundle / "models" / "model.json").write_text(json.dumps({**card, "sha256": "0" * 64}))
    with pytest.raises(PackError, match="describes a model"):
        pack.pack_bundle(bundle, tmp_path / "out")


def test_bad_signing_key_refused_before_any_work(site_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(SignatureError, match="signing key not found"):
        pack.pack_bundle(site_bundle, tmp_path / "out", sign_key=tmp_path / "missing.key")
    assert not (tmp_path / "out").exists()


def test_provenance_names_a_strategy_overlay(site_bundle: Path, tmp_path: Path) -> None:
    bundle = fresh_copy(site_bundle, tmp_path / CHEST)
    (bundle / "configs" / "finetune.json").write_bytes((REPO / "configs" / "finetune" / "l2_sp.json").read_bytes())
    strategy = build_provenance(bundle)["training"]["strategy"]
    overlay = json.loads((bundle / "configs" / "finetune.json").read_text())
    assert (strategy["source"], strategy["target"]) == ("configs/finetune.json", overlay["finetune"]["_target_"])
    assert strategy["arguments"] == {k: v for k, v in overlay["finetune"].items() if k != "_target_"}


def test_provenance(unpacked: Path, site_bundle: Path, chest_dataset: Path) -> None:
    record = json.loads((unpacked / "docs" / "provenance.json").read_text())
    metrics = json.loads((site_bundle / "eval" / "metrics.json").read_text())
    datalist = json.loads((chest_dataset / "datalist.json").read_text())
    assert record["metrics"]["mean_auc"] == metrics["mean_auc"]
    assert record["metrics"]["mean_auc_ci"] == metrics["mean_auc_ci"]
    assert [c["auc"] for c in record["metrics"]["per_class"]] == [c["auc"] for c in metrics["per_class"]]
    datalist_sha256 = hashlib.sha256((chest_dataset / "datalist.json").read_bytes()).hexdigest()
    assert record["data"]["datalist_sha256"] == datalist_sha256
    assert {k: v["items"] for k, v in record["data"]["splits"].items()} == {k: len(v) for k, v in datalist.items()}
    assert record["model"]["arch"] == "densenet121" and record["model"]["epoch"] == 1
    assert record["training"]["strategy"]["target"] == "common.finetune.FT"
    assert record["training"]["state"]["epochs_run"] == 1
    assert record["software"]["libraries"]["torch"] == importlib.metadata.version("torch")
    assert record["software"]["libraries"]["monai"] == importlib.metadata.version("monai")
    assert record["version"] == VERSION


def test_model_card_section_is_generated_once(unpacked: Path) -> None:
    card = (unpacked / "docs" / "README.md").read_text()
    assert card.count(BEGIN_MARK) == card.count(END_MARK) == 1
    assert "## This build" in card and "mean_auc" in card
    section = f"{BEGIN_MARK}\n## This build\nnew\n{END_MARK}\n"
    again = update_model_card(update_model_card(card, section), section)
    assert again.count(BEGIN_MARK) == 1 and "\nnew\n" in again and "Test split" not in again
    with pytest.raises(PackError, match="begin and"):
        update_model_card(card.replace(END_MARK, ""), section)


def test_a_received_bundle_can_be_packed_again(unpacked: Path, tmp_path: Path) -> None:
    bundle = fresh_copy(unpacked, tmp_path / CHEST)
    archive = pack.pack_bundle(bundle, tmp_path / "out", "0.3.5", "fine-tuned further at site B")
    with zipfile.ZipFile(archive) as handle:
        handle.extractall(tmp_path / "again")
    again = tmp_path / "again" / CHEST
    check_manifest(again)
    assert not (again / SIGNATURE).exists()
    readme = (again / "docs" / "README.md").read_text()
    assert readme.count(BEGIN_MARK) == 1 and "Version 0.3.5" in readme
    for name in [p.relative_to(unpacked) for p in (unpacked / "scripts").rglob("*") if p.is_file()]:
        assert (again / name).read_bytes() == (unpacked / name).read_bytes(), name
    assert json.loads((again / "docs" / "provenance.json").read_text())["metrics"] is None  # no eval/ at site B


def _leak_tokens(dataset: Path) -> list[str]:
    """Patient ids, image file names and paths of the training datalist, and every temporary folder."""
    datalist = json.loads((dataset / "datalist.json").read_text())
    tokens = {str(dataset), "/pytest-of-", "patient_id"}
    for items in datalist.values():
        for item in items:
            image = item["image"]
            tokens |= {image, Path(image).name, Path(image).stem, f"{int(item['patient_id']):08d}"}
    return sorted(tokens)


def _public_counterpart(entry: str) -> bytes:
    """The repository file an archive entry was copied from (vendored code from common/, the rest from the bundle).

    The synthetic dataset uses NIH-style names, which medxfer's own docstrings quote as examples
    (``images/00000001_000.png``): a token already in the public source is not a leak.
    """
    rel = entry.split("/", 1)[1]
    source = REPO / "common" / rel.split("/", 1)[1] if rel.startswith("scripts/") else REPO / "bundles" / CHEST / rel
    return source.read_bytes() if source.is_file() else b""


def test_no_patient_id_image_name_or_dataset_path_leaks(packed: Path, chest_dataset: Path) -> None:
    # short patient ids ("7") cannot be searched for in bytes; NIH names carry them zero-padded to 8 digits
    tokens = [t.encode() for t in _leak_tokens(chest_dataset)]
    assert len(tokens) > 30
    with zipfile.ZipFile(packed) as handle:
        contents = {name: handle.read(name) for name in handle.namelist()}
    leaks = [(name, token) for name, blob in contents.items() for token in tokens
             if token in blob and token not in _public_counterpart(name)]
    names = "\n".join(contents).encode()
    leaks += [("(entry names)", token) for token in tokens if token in names]
    assert leaks == []
    assert any(token in contents[f"{CHEST}/scripts/data/datalist.py"] for token in tokens)  # the check can see


def test_large_files_url(site_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    weights_uri = (out / f"{CHEST}_v0.4.0_model.pt").as_uri()
    archive = pack.pack_bundle(site_bundle, out, "0.4.0", "weights served apart", large_files_url=weights_uri,
                               record=False)
    assert f"{CHEST}/models/model.pt" not in _names(archive)
    with zipfile.ZipFile(archive) as handle:
        handle.extractall(tmp_path / "received")
    received = tmp_path / "received" / CHEST
    entry = yaml.safe_load((received / pack.LARGE_FILES).read_text())["large_files"][0]
    original = site_bundle / "models" / "model.pt"
    assert entry == {"path": "models/model.pt", "url": weights_uri, "hash_type": "sha256",
                     "hash_val": hashlib.sha256(original.read_bytes()).hexdigest()}
    check_manifest(received)
    # large_file_name left out: MONAI 1.6.1 fails when it is given (UnboundLocalError); it finds large_files.yml
    monai.bundle.download_large_files(bundle_path=str(received))
    assert (received / "models" / "model.pt").read_bytes() == original.read_bytes()


def test_monai_download_and_load(packed: Path, site_bundle: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # name= is needed: MONAI 1.6.1's download(url=...) without it fails after unpacking (_check_monai_version(None))
    monai.bundle.download(name=CHEST, url=packed.as_uri(), bundle_dir=str(tmp_path), progress=False)
    root = tmp_path / CHEST
    assert (root / "configs" / "inference.json").is_file()
    monkeypatch.chdir(root)  # imports are evaluated at parse time: the bundle root must be importable
    monkeypatch.syspath_prepend(str(root))
    try:
        network = monai.bundle.load(name=CHEST, bundle_dir=str(tmp_path), workflow_type="inference", device="cpu")
        assert sys.modules["scripts"].__file__ == str(root / "scripts" / "__init__.py")
    finally:
        for name in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
            del sys.modules[name]
    expected = torch.load(site_bundle / "models" / "model.pt", map_location="cpu", weights_only=True)
    loaded = network.state_dict()
    assert set(loaded) == set(expected)
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def test_cli_prints_path_size_and_sha256(site_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser()
    pack.add_arguments(parser)
    args = parser.parse_args([str(site_bundle), "--output", str(tmp_path), "--version", "0.5.0", "--changelog", "cli",
                              "--no-record"])
    assert pack.run(args) == 0
    archive = tmp_path / f"{CHEST}_v0.5.0.zip"
    out = capsys.readouterr().out
    assert str(archive) in out and f"size {archive.stat().st_size} bytes" in out
    assert hashlib.sha256(archive.read_bytes()).hexdigest() in out


def test_cli_error_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from common.sharing.__main__ import main

    assert main(["pack", str(tmp_path / "nowhere"), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "not a folder" in err and len(err.splitlines()) == 1


def test_metadata_describes_the_model_carried(unpacked: Path) -> None:
    """Trained at 32 px: verify_net_in_out and the zoo's export run at the size the model was trained for."""
    metadata = json.loads((unpacked / "configs" / "metadata.json").read_text())
    card = json.loads((unpacked / "models" / "model.json").read_text())
    image = metadata["network_data_format"]["inputs"]["image"]
    pred = metadata["network_data_format"]["outputs"]["pred"]
    assert image["spatial_shape"] == [card["preprocessing"]["image_size"]] * 2 == [32, 32]
    assert pred["num_channels"] == len(card["class_names"])
