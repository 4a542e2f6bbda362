"""Atomic writes: content lands, no temporary file is left behind, a failed write changes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sae_lens_stitch._atomic import atomic_path, atomic_write_bytes, atomic_write_text


class Boom(Exception):
    pass


def test_write_bytes_and_text(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01payload")
    atomic_write_text(tmp_path / "b.json", '{"é": 1}\n')
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01payload"
    assert (tmp_path / "b.json").read_text(encoding="utf-8") == '{"é": 1}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.json"]


def test_replaces_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    atomic_write_text(target, "new", fsync=True)
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_new_file_gets_ordinary_permissions(tmp_path: Path) -> None:
    if not hasattr(os, "fchmod"):
        pytest.skip("no POSIX permissions")
    target = tmp_path / "out.txt"
    atomic_write_text(target, "x")
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_atomic_path_keeps_suffix_and_renames(tmp_path: Path) -> None:
    target = tmp_path / "plot.png"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.suffix == ".png"
        assert tmp != target
        tmp.write_bytes(b"png")
        assert not target.exists()
    assert target.read_bytes() == b"png"
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]


def test_failure_leaves_existing_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "keep.txt"
    target.write_text("original")
    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.write_text("half-writ")
        raise Boom
    assert target.read_text() == "original"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_failure_on_new_target_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(Boom), atomic_path(tmp_path / "new.txt"):
        raise Boom
    assert list(tmp_path.iterdir()) == []


def test_failing_data_leaves_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "keep.txt"
    target.write_text("original")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # pyright: ignore[reportArgumentType]
    assert target.read_text() == "original"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_concurrent_writers_use_distinct_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "same.json"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second
        first.write_text("first")
        second.write_text("second")
    # the outer context exits last, so its content wins; both temporaries are gone
    assert target.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["same.json"]
