"""verify: a clean signed archive passes every check; each tampering fails the check that names the file.

One archive is packed per module, by hand in the agreed layout (``<name>/`` at the top, manifest, signature);
tampered copies are made from it. The checks that run the bundle's code (``net_in_out``) run three times here:
the clean archive, a large_files.yml bundle and a metadata that disagrees with the network; everywhere else a
check before them fails and they are skipped, which the tests assert.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from common.sharing.__main__ import main
from common.sharing.manifest import file_sha256, write_manifest
from common.sharing.safezip import safe_extract
from common.sharing.signing import keygen, sign_manifest
from common.sharing.verify import SCHEMA, VerifyReport, verified_bundle, verify_bundle
from tests.sharing.conftest import CHEST, REPO, fresh_copy, lie_about_size, zip_bundle

VERSION = "0.2.0"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The site's signing key, a trusted folder with its public key, and a stranger's signing key."""
    private, public = keygen(tmp_path_factory.mktemp("site_a_keys"))
    trusted = tmp_path_factory.mktemp("trusted")
    shutil.copy(public, trusted / public.name)
    stranger, _ = keygen(tmp_path_factory.mktemp("stranger_keys"))
    return {"private": private, "trusted": trusted, "stranger": stranger}


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory, trained_chest_bundle: Path, keys: dict[str, Path]) -> Path:
    """The trained chest bundle packed as a signed archive: no logs, eval or resumable checkpoint."""
    folder = fresh_copy(trained_chest_bundle, tmp_path_factory.mktemp("packing") / CHEST)
    for name in ("logs", "eval"):
        shutil.rmtree(folder / name, ignore_errors=True)
    (folder / "models" / "checkpoint.pt").unlink(missing_ok=True)
    write_manifest(folder, bundle=CHEST, version=VERSION)
    sign_manifest(folder, keys["private"])
    return zip_bundle(folder, tmp_path_factory.mktemp("outbox") / f"{CHEST}_v{VERSION}.zip")


@pytest.fixture(scope="module")
def clean_report(packed: Path, keys: dict[str, Path]) -> VerifyReport:
    return verify_bundle(packed, trusted_keys=keys["trusted"])


def received(packed: Path, tmp_path: Path, edit: Callable[[Path], object], *, remanifest: bool = False,
             sign: Path | None = None) -> Path:
    """A copy of the packed bundle as a folder, changed by ``edit``; optionally re-manifested and re-signed."""
    folder = safe_extract(packed, tmp_path / "received")
    edit(folder)
    if remanifest:
        write_manifest(folder, bundle=CHEST, version=VERSION)
        (folder / "manifest.sig").unlink()
    if sign is not None:
        sign_manifest(folder, sign)
    return folder


def statuses(report: VerifyReport) -> dict[str, str]:
    return {check.name: check.status for check in report.checks}


def detail(report: VerifyReport, name: str) -> str:
    return next(check.detail for check in report.checks if check.name == name)


def test_clean_archive_passes_every_check(clean_report: VerifyReport, packed: Path) -> None:
    names = ["unpack", "manifest", "signature", "required_files", "code_location", "metadata", "changelog",
             "logging_conf", "model", "audit", "net_in_out"]
    assert statuses(clean_report) == dict.fromkeys(names, "pass"), clean_report.to_text()
    assert clean_report.ok and clean_report.failure_summary() == ""
    assert clean_report.to_text().splitlines()[-1] == (f"verify {packed}: 11 passed, 0 failed, 0 warned, 0 skipped: "
                                                       f"OK")
    assert json.loads(json.dumps(clean_report.to_json()))["counts"] == {"pass": 11, "fail": 0, "warn": 0,
                                                                        "skipped": 0}
    assert clean_report.folder is None  # the temporary folder is gone


def test_shipped_schema_is_monais_unchanged() -> None:
    assert SCHEMA.name == "meta_schema_20240725.json"
    assert file_sha256(SCHEMA) == "4332d1731d373ecdae95c49e35d3967494a5b14404c1b718aa8c4279e91cabd0"


def test_verified_bundle_keeps_the_folder_for_the_block_only(packed: Path) -> None:
    with verified_bundle(packed) as report:
        assert report.status("unpack") == "pass" and report.status("manifest") == "pass"
        assert (report.folder / "configs" / "inference.json").is_file()
        folder = report.folder
    assert not folder.exists()


def test_a_tampered_archive_is_refused_before_anything_is_unpacked(packed: Path, tmp_path: Path) -> None:
    tampered = received(packed, tmp_path, lambda f: (f / "configs" / "extra.json").write_text("{}"))
    with verified_bundle(zip_bundle(tampered, tmp_path / packed.name)) as report:
        assert report.status("manifest") == "fail" and report.status("unpack") == "skipped"
        assert "configs/extra.json: added" in detail(report, "manifest") and report.folder is None
        assert {report.status(name) for name in ("model", "net_in_out", "audit")} == {"skipped"}


def test_unsigned_check_warns_and_fails_under_strict(packed: Path, tmp_path: Path) -> None:
    folder = received(packed, tmp_path, lambda f: (f / "configs" / "inference.json").write_text("{}"))
    lenient, strict = verify_bundle(folder), verify_bundle(folder, strict=True)
    assert (lenient.status("signature"), strict.status("signature")) == ("warn", "fail")
    assert detail(lenient, "signature") == "manifest.sig present but not checked: no --trusted-keys folder given"


def change_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("edit, check, match", [
    (lambda f: change_byte(f / "models" / "model.pt"), "manifest", "models/model.pt: changed"),
    (lambda f: (f / "configs" / "inference.json").write_text(
        (f / "configs" / "inference.json").read_text().replace('"batch_size": 16', '"batch_size": 17')),
     "manifest", "configs/inference.json: changed"),
    (lambda f: (f / "configs" / "extra.json").write_text("{}"), "manifest", "configs/extra.json: added"),
    (lambda f: (f / "docs" / "README.md").unlink(), "manifest", "docs/README.md: removed"),
], ids=["model-byte", "config", "added-file", "removed-file"])
def test_tampered_files_fail_the_manifest_by_name(packed: Path, tmp_path: Path, keys: dict[str, Path],
                                                  edit: Callable[[Path], object], check: str, match: str) -> None:
    report = verify_bundle(received(packed, tmp_path, edit), trusted_keys=keys["trusted"])
    assert report.status(check) == "fail" and match in detail(report, check)
    assert report.status("signature") == "pass"  # the manifest is still the signed one
    assert report.status("net_in_out") == "skipped" and "manifest check failed" in detail(report, "net_in_out")
    assert not report.ok and match in report.failure_summary()


def test_manifest_rewritten_after_signing_fails_the_signature(packed: Path, tmp_path: Path,
                                                              keys: dict[str, Path]) -> None:
    def forge(folder: Path) -> None:
        change_byte(folder / "models" / "model.pt")
        signature = (folder / "manifest.sig").read_bytes()
        write_manifest(folder, bundle=CHEST, version=VERSION)
        (folder / "manifest.sig").write_bytes(signature)

    report = verify_bundle(received(packed, tmp_path, forge), trusted_keys=keys["trusted"])
    assert report.status("manifest") == "pass"
    assert report.status("signature") == "fail"
    assert "manifest.sig: does not match manifest.json" in detail(report, "signature")
    assert "signature check failed" in detail(report, "net_in_out")


def test_signature_by_an_untrusted_key_fails(packed: Path, tmp_path: Path, keys: dict[str, Path]) -> None:
    folder = received(packed, tmp_path, lambda f: None, remanifest=True, sign=keys["stranger"])
    report = verify_bundle(folder, trusted_keys=keys["trusted"])
    assert report.status("signature") == "fail"
    assert "manifest.sig: signed by key" in detail(report, "signature")
    assert "not among the trusted keys" in detail(report, "signature")


def add_entry(packed: Path, tmp_path: Path, name: str, data: bytes = b"x", mode: int | None = None) -> Path:
    archive = Path(shutil.copy(packed, tmp_path / packed.name))
    with zipfile.ZipFile(archive, "a") as handle:
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.external_attr = mode << 16
        handle.writestr(info, data)
    return archive


@pytest.mark.parametrize("name, mode, match", [
    (f"{CHEST}/../../evil.py", None, "'..' component"),
    ("/tmp/evil.py", None, "absolute path"),
    (f"{CHEST}/configs/link.json", 0o120777, "symbolic link"),
], ids=["traversal", "absolute", "symlink"])
def test_hostile_archive_entries_are_refused_before_any_check(packed: Path, tmp_path: Path, name: str,
                                                              mode: int | None, match: str) -> None:
    report = verify_bundle(add_entry(packed, tmp_path, name, mode=mode))
    assert report.status("unpack") == "fail" and repr(name) in detail(report, "unpack")
    assert match in detail(report, "unpack")
    assert set(statuses(report).values()) == {"fail", "skipped"} and not report.ok


@pytest.mark.parametrize("limits, match", [
    ({"max_total_bytes": 1024**2}, f"'{CHEST}/models/model.pt' brings the declared size"),
    ({"max_files": 5}, "more than the limit of 5"),
], ids=["oversize", "too-many-files"])
def test_limits_are_enforced(packed: Path, limits: dict[str, int], match: str) -> None:
    with verified_bundle(packed, **limits) as report:
        assert report.folder is None
    assert report.status("unpack") == "fail" and match in detail(report, "unpack")


def test_lying_size_header_is_refused(packed: Path, tmp_path: Path) -> None:
    archive = Path(shutil.copy(packed, tmp_path / packed.name))
    lie_about_size(archive, f"{CHEST}/models/model.pt", 1000)
    report = verify_bundle(archive)
    # the declared size disagrees with the manifest: refused in the archive, before anything is unpacked
    assert report.status("manifest") == "fail" and "models/model.pt: changed" in detail(report, "manifest")
    assert report.status("unpack") == "skipped"


class RunsCode:
    """Pickles to ``os.system("touch <marker>")``: what a hostile model.pt holds."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


def test_model_that_pickles_code_is_refused_unrun(packed: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    folder = received(packed, tmp_path, lambda f: torch.save(RunsCode(marker), f / "models" / "model.pt"),
                      remanifest=True)
    report = verify_bundle(folder)
    assert report.status("model") == "fail"
    assert "models/model.pt" in detail(report, "model") and "weights_only" in detail(report, "model")
    assert not marker.exists()


@pytest.mark.parametrize("edit, check, match", [
    (lambda meta: meta["network_data_format"]["inputs"]["image"].pop("num_channels"), "metadata",
     "network_data_format/inputs/image: 'num_channels' is a required property"),
    (lambda meta: meta.update(version="9.9.9"), "changelog", "version '9.9.9' has no changelog entry"),
], ids=["schema", "changelog"])
def test_metadata_problems_are_named(packed: Path, tmp_path: Path, edit: Callable[[dict], object], check: str,
                                     match: str) -> None:
    def change(folder: Path) -> None:
        path = folder / "configs" / "metadata.json"
        meta = json.loads(path.read_text())
        edit(meta)
        path.write_text(json.dumps(meta, indent=4))

    report = verify_bundle(received(packed, tmp_path, change, remanifest=True))
    assert report.status(check) == "fail" and match in detail(report, check)
    assert "configs/metadata.json" in detail(report, check)


def test_missing_required_file_is_named(packed: Path, tmp_path: Path) -> None:
    report = verify_bundle(received(packed, tmp_path, lambda f: (f / "LICENSE").unlink(), remanifest=True))
    assert report.status("required_files") == "fail" and detail(report, "required_files") == "missing: LICENSE"
    assert "required_files check failed" in detail(report, "net_in_out")


@pytest.mark.parametrize("name", ["torch/__init__.py", "monai.py", "common/__init__.py"],
                         ids=["package", "module", "common"])
def test_importable_code_outside_scripts_is_refused(packed: Path, tmp_path: Path, name: str) -> None:
    def plant(folder: Path) -> None:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("raise SystemExit('shadowed')\n")

    report = verify_bundle(received(packed, tmp_path, plant, remanifest=True))
    assert report.status("code_location") == "fail" and name in detail(report, "code_location")
    assert "code_location check failed" in detail(report, "net_in_out")


def test_model_in_large_files_yml_is_accepted_and_network_still_checked(packed: Path, tmp_path: Path) -> None:
    def move_out(folder: Path) -> None:
        sha256 = file_sha256(folder / "models" / "model.pt")
        (folder / "models" / "model.pt").unlink()
        (folder / "models" / "model.json").unlink()
        (folder / "large_files.yml").write_text("large_files:\n  - path: models/model.pt\n"
                                                "    url: https://example.org/model.pt\n"
                                                f"    hash_val: '{sha256}'\n    hash_type: sha256\n")

    report = verify_bundle(received(packed, tmp_path, move_out, remanifest=True))
    assert report.status("required_files") == "pass"
    assert report.status("model") == "skipped" and "https://example.org/model.pt" in detail(report, "model")
    assert report.status("net_in_out") == "pass"


def test_folder_given_by_a_relative_path_runs_net_in_out_in_it(packed: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The check's child process starts in the bundle, so the files it is given must not be relative to here."""
    received(packed, tmp_path, lambda f: None)
    monkeypatch.chdir(tmp_path)
    report = verify_bundle(Path("received") / CHEST)
    assert report.status("net_in_out") == "pass", detail(report, "net_in_out")


def test_network_that_disagrees_with_metadata_fails_net_in_out(packed: Path, tmp_path: Path) -> None:
    def change(folder: Path) -> None:
        path = folder / "configs" / "metadata.json"
        meta = json.loads(path.read_text())
        meta["network_data_format"]["outputs"]["pred"]["num_channels"] = 13
        path.write_text(json.dumps(meta, indent=4))

    report = verify_bundle(received(packed, tmp_path, change, remanifest=True))
    assert report.status("net_in_out") == "fail"
    assert "configs/inference.json: network_def fails verify_net_in_out" in detail(report, "net_in_out")


def test_flagged_config_keeps_the_bundle_code_unrun(packed: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    def plant(folder: Path) -> None:
        path = folder / "configs" / "inference.json"
        config = json.loads(path.read_text())
        config["network_def"]["num_classes"] = f"$__import__('os').system('touch {marker}') or 14"
        path.write_text(json.dumps(config, indent=4))

    folder = received(packed, tmp_path, plant, remanifest=True)
    report = verify_bundle(folder)
    assert report.status("audit") == "warn" and "configs/inference.json" in detail(report, "audit")
    assert report.status("net_in_out") == "skipped"
    assert detail(report, "net_in_out").startswith("not run: audit flagged ")
    assert verify_bundle(folder, strict=True).status("audit") == "fail"
    assert not marker.exists()


def test_hostile_logging_conf_in_a_bundle_fails_and_gates_the_code(packed: Path, tmp_path: Path) -> None:
    # MONAI 1.6.1's own check passes this file: fileConfig substitutes %(p)s before it eval()s args
    body = ("[loggers]\nkeys=root\n\n[handlers]\nkeys=h\n\n[formatters]\nkeys=f\n\n[logger_root]\nlevel=INFO\n"
            "handlers=h\n\n[handler_h]\nclass=StreamHandler\np=\", __import__('os').system('x'), \"\n"
            "args=(\"%(p)s\",)\n\n[formatter_f]\nformat=%%(message)s\n")
    folder = received(packed, tmp_path, lambda f: (f / "configs" / "logging.conf").write_text(body), remanifest=True)
    report = verify_bundle(folder)
    assert report.status("logging_conf") == "fail"
    assert "configs/logging.conf: [handler_h] args=" in detail(report, "logging_conf")
    assert "logging_conf check failed" in detail(report, "net_in_out")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "common.sharing", "verify", *args], cwd=REPO, capture_output=True,
                          text=True, check=False, timeout=600)


def test_cli_exit_codes_and_json(packed: Path, tmp_path: Path, keys: dict[str, Path],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Statuses 0 and 1 through ``main`` in this process; status 2 through a real ``python -m common.sharing``
    process, for the exit status and the stderr line the shell sees."""
    status = main(["verify", str(packed), "--trusted-keys", str(keys["trusted"]), "--json", "--report",
                   str(tmp_path / "r.json")])
    ok = capsys.readouterr()
    assert status == 0, ok.err
    assert json.loads(ok.out)["ok"] is True
    assert json.loads((tmp_path / "r.json").read_text())["counts"]["pass"] == 11
    tampered = received(packed, tmp_path, lambda f: (f / "LICENSE").write_text("changed"))
    status = main(["verify", str(tampered)])
    failed = capsys.readouterr()
    assert status == 1
    assert "FAIL     manifest        LICENSE: changed" in failed.out
    missing = run_cli(str(tmp_path / "nowhere.zip"))
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == (f"error: {tmp_path / 'nowhere.zip'}: no such bundle archive "
                                                       f"or folder")
