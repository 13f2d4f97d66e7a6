"""fetch: from a folder registry, over http(s) from a live local server, always verified before it lands.

The end-to-end test is the issue's: pack -> verify -> serve through a local HTTP server -> fetch -> load ->
inference gives the original bundle's predictions exactly; and the archive also loads with MONAI's own
``monai.bundle.download(url=...)`` + ``monai.bundle.load``.
"""

from __future__ import annotations

import csv
import functools
import http.server
import json
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.bundle_runner import run_bundle
from common.sharing.__main__ import main
from common.sharing.errors import IntegrityError, SharingError, UnsafeArchiveError, VerificationError
from common.sharing.fetch import fetch
from common.sharing.pack import pack_bundle
from common.sharing.registry import build_index
from common.sharing.signing import keygen
from tests.sharing.conftest import CHEST

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A signing key and the trusted-keys folder holding its public half."""
    private, public = keygen(tmp_path_factory.mktemp("keys"))
    trusted = tmp_path_factory.mktemp("trusted")
    shutil.copy(public, trusted / public.name)
    return private, trusted


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, trained_chest_bundle: Path,
             keys: tuple[Path, Path]) -> Path:
    """A folder registry holding two signed versions of the trained chest bundle, indexed."""
    folder = tmp_path_factory.mktemp("registry")
    for version, note in (("0.3.0", "site A, first share"), ("0.3.1", "site A, second share")):
        pack_bundle(trained_chest_bundle, folder, version=version, changelog=note, sign_key=keys[0], record=False)
    build_index(folder)
    return folder


@pytest.fixture(scope="module")
def server(registry: Path) -> Iterator[str]:
    """A live ``http.server`` on a free port serving the registry folder; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(registry))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _archive(registry: Path, version: str) -> Path:
    return registry / f"{CHEST}_v{version}.zip"


def _tampered(source: Path, destination: Path, member: str) -> Path:
    """A copy of ``source`` with one byte of ``member`` flipped (everything else identical)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(destination, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == f"{CHEST}/{member}":
                data = bytes([data[0] ^ 1]) + data[1:]
            zout.writestr(info, data)
    return destination


def test_registry_folder_gives_the_latest_or_the_named_version(registry: Path, keys: tuple[Path, Path],
                                                                tmp_path: Path) -> None:
    latest = fetch(str(registry), tmp_path / "a", trusted_keys=keys[1], progress=False)
    assert latest.bundle_dir == tmp_path / "a" / CHEST
    assert json.loads((latest.bundle_dir / "configs" / "metadata.json").read_text())["version"] == "0.3.1"
    assert latest.archive == tmp_path / "a" / f"{CHEST}_v0.3.1.zip"
    older = fetch(str(registry), tmp_path / "b", version="0.3.0", verify=False, progress=False)  # resolution only
    assert json.loads((older.bundle_dir / "configs" / "metadata.json").read_text())["version"] == "0.3.0"
    with pytest.raises(SharingError, match="no version 9.9.9; it holds 0.3.0, 0.3.1"):
        fetch(str(registry), tmp_path / "c", version="9.9.9", progress=False)
    with pytest.raises(SharingError, match=f"no bundle 'other'; it holds {CHEST}"):
        fetch(str(registry), tmp_path / "c", name="other", progress=False)


def test_fetch_over_http_from_the_index_and_the_archive_url(server: str, keys: tuple[Path, Path],
                                                            tmp_path: Path) -> None:
    by_index = fetch(f"{server}/index.json", tmp_path / "a", trusted_keys=keys[1], strict=True, progress=False)
    assert by_index.report.ok and (by_index.bundle_dir / "models" / "model.pt").is_file()
    by_url = fetch(f"{server}/{CHEST}_v0.3.0.zip", tmp_path / "b", trusted_keys=keys[1], progress=False)
    assert json.loads((by_url.bundle_dir / "configs" / "metadata.json").read_text())["version"] == "0.3.0"
    with pytest.raises(SharingError, match="download failed"):
        fetch(f"{server}/no_such_v1.0.0.zip", tmp_path / "c", progress=False)


def test_a_tampered_download_is_refused_and_leaves_nothing(registry: Path, server: str, tmp_path: Path) -> None:
    _tampered(_archive(registry, "0.3.1"), registry / "tampered_v0.3.1.zip", "models/model.pt")
    to = tmp_path / "received"
    with pytest.raises(VerificationError, match="models/model.pt"):
        fetch(f"{server}/tampered_v0.3.1.zip", to, progress=False)
    assert list(to.iterdir()) == []
    (registry / "tampered_v0.3.1.zip").unlink()


def test_registry_sha256_mismatch_is_refused_before_opening(registry: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(registry, tmp_path / "registry"))
    index = json.loads((copy / "index.json").read_text())
    index["bundles"][CHEST]["0.3.1"]["sha256"] = "0" * 64
    (copy / "index.json").write_text(json.dumps(index))
    with pytest.raises(IntegrityError, match="differs from the registry index"):
        fetch(str(copy), tmp_path / "to", progress=False)


def test_untrusted_signer_is_refused(registry: Path, tmp_path: Path) -> None:
    _, other_public = keygen(tmp_path / "other", "other")
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    shutil.copy(other_public, trusted / other_public.name)
    with pytest.raises(VerificationError, match="not among the trusted keys"):
        fetch(str(_archive(registry, "0.3.1")), tmp_path / "to", trusted_keys=trusted, progress=False)


def test_no_verify_skips_the_checks_but_never_safe_unpacking(registry: Path, tmp_path: Path) -> None:
    tampered = _tampered(_archive(registry, "0.3.1"), tmp_path / f"{CHEST}_v0.3.1.zip", "configs/train.json")
    fetched = fetch(str(tampered), tmp_path / "a", verify=False, progress=False)
    assert fetched.report is None and (fetched.bundle_dir / "configs" / "train.json").is_file()
    evil = tmp_path / "evil_v1.0.0.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("evil/configs/metadata.json", "{}")
        zf.writestr("evil/../../escaped.txt", "x")
    with pytest.raises(UnsafeArchiveError, match="escaped.txt"):
        fetch(str(evil), tmp_path / "b", verify=False, progress=False)
    assert not (tmp_path / "escaped.txt").exists()


def test_an_existing_bundle_is_never_replaced(registry: Path, tmp_path: Path) -> None:
    fetch(str(registry), tmp_path / "to", verify=False, progress=False)  # placement, not verification, is tested
    marker = tmp_path / "to" / CHEST / "local_note.txt"
    marker.write_text("mine")
    with pytest.raises(SharingError, match="exists already"):
        fetch(str(registry), tmp_path / "to", verify=False, progress=False)
    assert marker.read_text() == "mine"


def test_hub_source_needs_huggingface_hub(tmp_path: Path) -> None:
    pytest.importorskip("monai")
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        with pytest.raises(SharingError, match="huggingface_hub"):
            fetch("hf://someone/chest_xray_classification", tmp_path, progress=False)
    else:
        pytest.skip("huggingface_hub is installed; the Hub itself cannot be reached offline")


def test_cli_exit_codes(registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Statuses 0 and 1 through ``main`` in this process; status 2 through a real ``python -m common.sharing``
    process, for the exit status and the one stderr line the shell sees."""
    status = main(["fetch", str(registry), "--to", str(tmp_path / "a"), "--quiet", "--no-verify"])
    ok = capsys.readouterr()
    assert status == 0, ok.err
    assert f"fetched {tmp_path / 'a' / CHEST}" in ok.out and "--no-verify: manifest hashes" in ok.err
    tampered = _tampered(_archive(registry, "0.3.1"), tmp_path / f"{CHEST}_v0.3.1.zip", "configs/inference.json")
    status = main(["fetch", str(tampered), "--to", str(tmp_path / "b"), "--quiet"])
    refused = capsys.readouterr()
    assert status == 1 and "configs/inference.json" in refused.err
    missing = subprocess.run([sys.executable, "-m", "common.sharing", "fetch", str(tmp_path / "nothing.zip"),
                              "--to", str(tmp_path / "c")], capture_output=True, text=True, check=False)
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and missing.stderr.count("\n") == 1


def _predictions(csv_file: Path) -> list[list[str]]:
    with open(csv_file, newline="") as handle:
        return sorted(csv.reader(handle))


_MONAI_LOAD = """
import sys, torch
from monai.bundle import download, load
url, where, name = sys.argv[1:4]
download(name=name, url=url, bundle_dir=where)
try:
    import common  # noqa: F401
    raise SystemExit("medxfer's common must not be importable here")
except ImportError:
    pass
net = load(name=name, bundle_dir=where, source="github", workflow_type="infer", image_size=32)
torch.manual_seed(0)
print(float(net(torch.rand(1, 3, 32, 32)).sum()))
"""


def test_served_fetched_bundle_predicts_exactly_as_the_original(trained_chest_bundle: Path, chest_dataset: Path,
                                                                 server: str, keys: tuple[Path, Path],
                                                                 tmp_path: Path) -> None:
    shutil.copytree(trained_chest_bundle / "models", tmp_path / "original" / "models")
    run_bundle(trained_chest_bundle, ["inference.json"], "infer", state_root=tmp_path / "original",
               dataset_dir=str(chest_dataset), image_size=32, num_workers=0)
    fetched = fetch(f"{server}/index.json", tmp_path / "site_b", trusted_keys=keys[1], progress=False)
    received = subprocess.run([sys.executable, "-m", "common.sharing", "run", str(fetched.bundle_dir), "--",
                               "--config_file", "configs/inference.json", "--dataset_dir", str(chest_dataset),
                               "--image_size", "32", "--num_workers", "0"],
                              capture_output=True, text=True, check=False)
    assert received.returncode == 0, received.stderr[-2000:]
    ours = _predictions(tmp_path / "original" / "predictions" / "predictions.csv")
    theirs = _predictions(fetched.bundle_dir / "predictions" / "predictions.csv")
    assert ours and ours == theirs
