"""safe_extract / received_bundle: every hostile entry refused by name, nothing written over or left behind."""

from __future__ import annotations

import random
import stat
import zipfile
from pathlib import Path

import pytest

from common.sharing.errors import SharingError, UnsafeArchiveError
from common.sharing.safezip import received_bundle, safe_extract
from tests.sharing.conftest import lie_about_size, make_zip, patch_headers

GOOD = {"demo/configs/metadata.json": b'{"version": "0.1.0"}', "demo/LICENSE": b"Apache-2.0\n",
        "demo/models/model.pt": bytes(range(256)) * 40}


def test_clean_archive_unpacks_into_one_folder(tmp_path: Path) -> None:
    folder = safe_extract(make_zip(tmp_path / "demo.zip", GOOD), tmp_path / "out")
    assert folder == tmp_path / "out" / "demo"
    for name, data in GOOD.items():
        target = tmp_path / "out" / name
        assert target.read_bytes() == data
        assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["demo"]  # no staging folder left


@pytest.mark.parametrize("name, reason", [
    ("demo/../evil.txt", "'..' component"),
    ("demo/configs/../../../evil.txt", "'..' component"),
    ("/etc/evil.txt", "absolute path"),
    ("C:/evil.txt", "absolute path"),
    ("C:\\evil.txt", "backslash"),
    ("demo\\..\\..\\evil.txt", "backslash"),
    ("//host/share/evil.txt", "absolute path"),
    ("demo/./evil.txt", "not a canonical path"),
    ("demo//evil.txt", "not a canonical path"),
], ids=["dotdot", "deep-dotdot", "absolute", "drive-slash", "drive-backslash", "backslash-dotdot", "unc", "dot",
        "double-slash"])
def test_escaping_names_are_refused(tmp_path: Path, name: str, reason: str) -> None:
    archive = make_zip(tmp_path / "bad.zip", {**GOOD, name: b"x"})
    with pytest.raises(UnsafeArchiveError, match=reason) as caught:
        safe_extract(archive, tmp_path / "out")
    assert repr(name) in str(caught.value)
    assert not (tmp_path / "out").exists()  # checked before anything is written
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("mode, reason", [
    (stat.S_IFLNK | 0o777, "symbolic link"),
    (stat.S_IFIFO | 0o644, "special file"),
    (stat.S_IFCHR | 0o644, "special file"),
], ids=["symlink", "fifo", "char-device"])
def test_links_and_special_files_are_refused(tmp_path: Path, mode: int, reason: str) -> None:
    archive = make_zip(tmp_path / "good.zip", GOOD)
    with zipfile.ZipFile(archive, "a") as handle:
        info = zipfile.ZipInfo("demo/configs/link.json")
        info.external_attr = mode << 16
        handle.writestr(info, b"/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match=f"'demo/configs/link.json' is .*{reason}"):
        safe_extract(archive, tmp_path / "out")


def test_encrypted_entry_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "good.zip", {**GOOD, "demo/secret.bin": b"x"})
    patch_headers(archive, "demo/secret.bin", "<H", 6, 8, 0x1)  # general-purpose flag bit 0: encrypted
    with pytest.raises(UnsafeArchiveError, match="'demo/secret.bin' is encrypted"):
        safe_extract(archive, tmp_path / "out")


@pytest.mark.parametrize("entries, match", [
    ([*GOOD.items(), ("demo/LICENSE", b"other")], "'demo/LICENSE' duplicates 'demo/LICENSE'"),
    ([*GOOD.items(), ("demo/license", b"other")], "'demo/license' duplicates 'demo/LICENSE'"),
    ([*GOOD.items(), ("demo/LICENSE/inner.txt", b"x")], "'demo/LICENSE/inner.txt' lies under 'demo/LICENSE'"),
    ([*GOOD.items(), ("other/x.txt", b"x")], "2 top-level entries"),
    ([*GOOD.items(), ("manifest.json", b"{}")], "'manifest.json' lies outside a top-level folder"),
], ids=["duplicate", "case-duplicate", "file-as-folder", "two-top-folders", "file-at-root"])
def test_ambiguous_layouts_are_refused(tmp_path: Path, entries: list[tuple[str, bytes]], match: str) -> None:
    with pytest.raises(UnsafeArchiveError, match=match):
        safe_extract(make_zip(tmp_path / "bad.zip", entries), tmp_path / "out")


def test_oversize_entry_is_refused_by_declared_size(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "big.zip", GOOD)
    limit = sum(len(data) for data in GOOD.values()) - 1
    match = f"'demo/models/model.pt' brings the declared size .* limit of {limit}"
    with pytest.raises(UnsafeArchiveError, match=match):
        safe_extract(archive, tmp_path / "out", max_total_bytes=limit)


def test_too_many_entries_are_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "many.zip", {f"demo/f{i}.txt": b"x" for i in range(5)})
    with pytest.raises(UnsafeArchiveError, match="5 entries, more than the limit of 4 .*demo/f4.txt"):
        safe_extract(archive, tmp_path / "out", max_files=4)


def test_zip_bomb_ratio_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "bomb.zip", {**GOOD, "demo/zeros.bin": bytes(8 * 1024**2)})
    with pytest.raises(UnsafeArchiveError, match="'demo/zeros.bin' expands .*compression-ratio limit of 200x"):
        safe_extract(archive, tmp_path / "out")


@pytest.mark.parametrize("declared", [100, 3 * 1024**2], ids=["declares-less", "declares-more"])
def test_lying_size_header_is_refused_and_nothing_left(tmp_path: Path, declared: int) -> None:
    payload = random.Random(0).randbytes(2 * 1024**2)  # incompressible: under the ratio limit either way
    archive = make_zip(tmp_path / "liar.zip", {**GOOD, "demo/zz_payload.bin": payload})
    lie_about_size(archive, "demo/zz_payload.bin", declared)
    assert zipfile.ZipFile(archive).getinfo("demo/zz_payload.bin").file_size == declared
    with pytest.raises(UnsafeArchiveError, match="'demo/zz_payload.bin'"):
        safe_extract(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []  # the files written before the liar were removed


@pytest.mark.parametrize("content, match", [
    (b"not a zip at all", "not a readable zip archive"),
    (b"", "not a readable zip archive"),
], ids=["text", "empty"])
def test_not_a_zip_names_the_archive(tmp_path: Path, content: bytes, match: str) -> None:
    archive = tmp_path / "bundle.zip"
    archive.write_bytes(content)
    with pytest.raises(UnsafeArchiveError, match=f"{archive}: {match}"):
        safe_extract(archive, tmp_path / "out")


def test_missing_archive_and_existing_target_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SharingError, match="archive not found"):
        safe_extract(tmp_path / "absent.zip", tmp_path / "out")
    archive = make_zip(tmp_path / "demo.zip", GOOD)
    (tmp_path / "out" / "demo").mkdir(parents=True)
    (tmp_path / "out" / "demo" / "LICENSE").write_text("mine")
    with pytest.raises(SharingError, match="exists already; unpacking never writes over existing files"):
        safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "demo" / "LICENSE").read_text() == "mine"


def test_received_bundle_cleans_up_an_archive_and_passes_a_folder_through(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "demo.zip", GOOD)
    with received_bundle(archive) as folder:
        assert folder.name == "demo"
        assert (folder / "LICENSE").read_bytes() == GOOD["demo/LICENSE"]
    assert not folder.exists() and not folder.parent.exists()
    with received_bundle(tmp_path) as same:
        assert same == tmp_path
    with pytest.raises(SharingError, match="no such bundle folder or archive"), received_bundle(tmp_path / "nope"):
        pass
