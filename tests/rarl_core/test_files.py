"""Crash-safe writes: nothing that looks complete is left behind by a failure."""

from __future__ import annotations

import pytest

from rarl_core.files import atomic_dir, atomic_file, read_jsonl, write_jsonl


def test_atomic_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("1")
    assert (target / "a.txt").read_text() == "1"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("2")
            raise RuntimeError("crash mid-stage")
    assert (target / "a.txt").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp folder left


def test_atomic_file_and_jsonl(tmp_path):
    path = tmp_path / "x.jsonl"
    write_jsonl(path, [{"a": 1}, {"a": 2}])
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    with pytest.raises(KeyError):
        with atomic_file(path) as handle:
            handle.write("half")
            raise KeyError("boom")
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    path.write_text('{"a": 1}\n{broken\n')
    with pytest.raises(ValueError, match="x.jsonl:2"):
        read_jsonl(path)
