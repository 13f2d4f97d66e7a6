"""Atomic writes: the old content survives a failure, the new appears whole, with plain permissions; a crash
between the two renames of a folder swap is repaired; file-system faults are OutputErrors naming the path."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import common.io as io_module
from common.errors import OutputError
from common.io import atomic_directory, atomic_save, atomic_write_json, atomic_write_text, recover_directory

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def umask() -> Iterator[None]:
    """Restore the process umask after a test that sets it."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield
    os.umask(previous)


def test_text_and_json_replace_whole(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "a.txt", "one")
    atomic_write_text(tmp_path / "a.txt", "two")
    atomic_write_json(tmp_path / "b.json", {"x": 1})
    assert (tmp_path / "a.txt").read_text() == "two"
    assert (tmp_path / "b.json").read_text() == '{\n  "x": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json"]


def test_json_refuses_nan(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "n.json", {"x": float("nan")})
    assert not (tmp_path / "n.json").exists()


def test_directory_failure_keeps_the_old_folder(tmp_path: Path) -> None:
    old = tmp_path / "eval"
    old.mkdir()
    (old / "metrics.json").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(old) as tmp:
        (tmp / "metrics.json").write_text("half")
        raise RuntimeError("crash while writing")
    assert (old / "metrics.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]


def test_directory_success_swaps_whole(tmp_path: Path) -> None:
    old = tmp_path / "eval"
    old.mkdir()
    (old / "stale.txt").write_text("x")
    with atomic_directory(old) as tmp:
        (tmp / "metrics.json").write_text("new")
    assert sorted(p.name for p in old.iterdir()) == ["metrics.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002, 0o077], ids=["022", "027", "002", "077"])
@pytest.mark.usefixtures("umask")
def test_outputs_get_the_permissions_of_a_plain_open_and_mkdir(tmp_path: Path, mask: int) -> None:
    os.umask(mask)
    plain_file, plain_dir = tmp_path / "plain.txt", tmp_path / "plain"
    plain_file.write_text("x")
    plain_dir.mkdir()
    atomic_write_text(tmp_path / "results.csv", "a\n")
    atomic_write_json(tmp_path / "metrics.json", {})
    atomic_save(tmp_path / "plot.png", lambda tmp: tmp.write_bytes(b"png"))
    with atomic_directory(tmp_path / "eval") as tmp:
        atomic_write_json(tmp / "metrics.json", {})
    atomic_write_text(tmp_path / "results.csv", "b\n")  # a rewrite too

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(plain_file) == 0o666 & ~mask and mode(plain_dir) == 0o777 & ~mask
    for name in ("results.csv", "metrics.json", "plot.png", "eval/metrics.json"):
        assert mode(tmp_path / name) == mode(plain_file), name
    assert mode(tmp_path / "eval") == mode(plain_dir)


def test_a_failing_second_rename_puts_the_old_folder_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "eval"
    dest.mkdir()
    (dest / "metrics.json").write_text("old")
    real, calls = os.replace, []

    def failing_second(src: str | os.PathLike, dst: str | os.PathLike) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.EIO, "Input/output error", str(dst))
        real(src, dst)

    monkeypatch.setattr(io_module.os, "replace", failing_second)
    with pytest.raises(OutputError, match=rf"cannot write {dest}: Input/output error"), atomic_directory(dest) as tmp:
        (tmp / "metrics.json").write_text("new")
    assert (dest / "metrics.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]


CRASHING_WRITER = """
import os, sys
from pathlib import Path
from common.io import atomic_directory

dest, crash_after = Path(sys.argv[1]), int(sys.argv[2])
real, calls = os.replace, []

def replace(src, dst):
    real(src, dst)
    calls.append(dst)
    if len(calls) == crash_after:
        os._exit(3)  # killed between the renames: no cleanup runs

os.replace = replace
with atomic_directory(dest) as tmp:
    (tmp / "metrics.json").write_text("new")
    if crash_after == 0:
        os._exit(3)  # killed while writing
"""


def crash_while_writing(dest: Path, crash_after: int) -> None:
    """Run :func:`atomic_directory` in a child process that dies after its ``crash_after``-th rename (0: before)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(dest), str(crash_after)], env=env,
                            capture_output=True, text=True, check=False, timeout=120)  # fmt: skip
    assert result.returncode == 3, result.stderr


@pytest.mark.parametrize(
    "crash_after, expected",
    [(0, "old"), (1, "new")],
    ids=["killed-while-writing", "killed-between-the-renames"],
)
@pytest.mark.parametrize("repair", ["recover_directory", "next_write"])
def test_a_crashed_swap_is_repaired(tmp_path: Path, crash_after: int, expected: str, repair: str) -> None:
    dest = tmp_path / "eval"
    dest.mkdir()
    (dest / "metrics.json").write_text("old")
    (tmp_path / ".eval.notes.tmp").mkdir()  # not our naming pattern: never touched
    (tmp_path / "other").mkdir()
    crash_while_writing(dest, crash_after)
    assert (dest.exists()) == (crash_after == 0)  # the crash left no eval/ when it came between the renames
    if repair == "recover_directory":
        assert recover_directory(dest) == dest
        assert (dest / "metrics.json").read_text() == expected
    else:
        with atomic_directory(dest) as tmp:
            (tmp / "metrics.json").write_text("third")
        assert (dest / "metrics.json").read_text() == "third"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".eval.notes.tmp", "eval", "other"]


def test_an_interrupted_swap_of_an_older_medxfer_is_restored(tmp_path: Path) -> None:
    """The layout the previous atomic_directory left when killed between its renames: no eval/, the old one in
    ``.eval.XXXXXXXX.old/eval`` and the new one, of unknown completeness, in ``.eval.YYYYYYYY.tmp``."""
    (tmp_path / ".eval.k2j4_x9a.old" / "eval").mkdir(parents=True)
    (tmp_path / ".eval.k2j4_x9a.old" / "eval" / "metrics.json").write_text("old")
    (tmp_path / ".eval.ab12cd34.tmp").mkdir()
    (tmp_path / ".other.ab12cd34.tmp").mkdir()  # another folder's leftover: not ours to judge
    recover_directory(tmp_path / "eval")
    assert (tmp_path / "eval" / "metrics.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.ab12cd34.tmp", "eval"]


def test_recovery_leaves_a_write_in_progress_alone(tmp_path: Path) -> None:
    dest = tmp_path / "eval"
    with atomic_directory(dest) as tmp:
        (tmp / "metrics.json").write_text("new")
        recover_directory(dest)  # a reader, while this process is still writing
        assert (tmp / "metrics.json").is_file()
    assert (dest / "metrics.json").read_text() == "new"


def test_recovery_of_a_missing_folder_without_leftovers_does_nothing(tmp_path: Path) -> None:
    assert recover_directory(tmp_path / "absent" / "eval") == tmp_path / "absent" / "eval"
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize("writer", ["text", "json", "save", "directory"])
def test_a_path_below_a_regular_file_is_an_output_error(tmp_path: Path, writer: str) -> None:
    (tmp_path / "hostname").write_text("x")
    target = tmp_path / "hostname" / "sub" / "x.json"
    with pytest.raises(OutputError, match=rf"cannot write {target}: {tmp_path / 'hostname'} is a file") as info:
        if writer == "directory":
            with atomic_directory(target):
                pass
        else:
            {"text": lambda: atomic_write_text(target, "x"), "json": lambda: atomic_write_json(target, {}),
             "save": lambda: atomic_save(target, lambda tmp: tmp.write_text("x"))}[writer]()  # fmt: skip
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOTDIR


@pytest.mark.parametrize(
    "patched, code, reason",
    [("fsync", errno.ENOSPC, "No space left on device"), ("replace", errno.EROFS, "Read-only file system")],
    ids=["no-space-left", "read-only"],
)
def test_write_faults_name_the_path_and_leave_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, patched: str, code: int, reason: str
) -> None:
    target = tmp_path / "results.csv"
    target.write_text("old")

    def fail(*args: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(io_module.os, patched, fail)
    with pytest.raises(OutputError, match=rf"^cannot write {target}: {reason}$") as info:
        atomic_write_text(target, "new")
    assert info.value.errno == code
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


def test_a_full_disk_while_a_folder_is_written_is_an_output_error(tmp_path: Path) -> None:
    dest = tmp_path / "images"
    with pytest.raises(OutputError, match=rf"cannot write {dest}: No space left on device"), \
            atomic_directory(dest):  # fmt: skip
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert list(tmp_path.iterdir()) == []


def test_a_read_error_of_a_writer_callback_is_not_an_output_error(tmp_path: Path) -> None:
    def copy_missing(tmp: Path) -> None:
        tmp.write_bytes((tmp_path / "missing.png").read_bytes())

    with pytest.raises(FileNotFoundError) as info:
        atomic_save(tmp_path / "out.png", copy_missing)
    assert not isinstance(info.value, OutputError) and list(tmp_path.iterdir()) == []


def test_a_nested_write_error_names_the_final_path_not_the_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io_module.os, "fsync", full)
    dest = tmp_path / "eval"
    with pytest.raises(OutputError, match=rf"^cannot write {dest / 'metrics.json'}: No space left on device$"), \
            atomic_directory(dest) as tmp:  # fmt: skip
        atomic_write_json(tmp / "metrics.json", {})
    assert list(tmp_path.iterdir()) == []
