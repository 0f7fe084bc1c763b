"""Outputs are atomic and never overwritten without force."""

from __future__ import annotations

import pytest

from neocompress.core.atomic import atomic_directory
from neocompress.core.errors import OutputExistsError


def test_existing_output_is_refused_and_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError), atomic_directory(out, force=False) as tmp:
        (tmp / "new.txt").write_text("x")
    assert (out / "keep.txt").read_text() == "mine" and not (out / "new.txt").exists()


def test_failure_leaves_nothing_behind(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_directory(out, force=False) as tmp:
        (tmp / "half.txt").write_text("x")
        raise RuntimeError("interrupted")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_force_replaces_only_when_complete(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(out, force=True) as tmp:
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("boom")
    assert (out / "old.txt").exists()  # a failed forced run keeps the old output
    with atomic_directory(out, force=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in out.iterdir()] == ["new.txt"]
