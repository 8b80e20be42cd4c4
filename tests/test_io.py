"""All-or-nothing writes of several files."""

import os

import pytest

from allocator.io import atomic_write_texts


def test_all_files_written(tmp_path):
    a, b = tmp_path / "d" / "a.txt", tmp_path / "d" / "b.txt"
    atomic_write_texts({a: "A", b: "B"})
    assert a.read_text() == "A" and b.read_text() == "B"
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["a.txt", "b.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert a.stat().st_mode & 0o777 == 0o666 & ~umask


def test_failure_on_second_rename_restores_previous_versions(tmp_path, monkeypatch):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    atomic_write_texts({a: "old A", b: "old B"})
    real = os.replace
    seen = []

    def flaky(src, dst):
        seen.append(dst)
        if str(dst) == str(b) and str(src).endswith(".tmp"):
            raise OSError("disk full")
        return real(src, dst)

    monkeypatch.setattr("allocator.io.os.replace", flaky)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_texts({a: "new A", b: "new B"})
    assert a.read_text() == "old A" and b.read_text() == "old B"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]
