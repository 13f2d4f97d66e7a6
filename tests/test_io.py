"""Atomic writes: the old content survives a failure, the new appears whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.io import atomic_directory, atomic_write_json, atomic_write_text


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
