"""Atomic writes: a file appears whole, flushed to disk, or the old one stays."""

import os

import pytest

from recbole_llmd4rec.atomic import replacing


def test_a_finished_write_replaces_the_file_after_flushing_it_and_its_folder(tmp_path, monkeypatch):
    target = tmp_path / "table.csv"
    target.write_text("old")
    flushed = []
    original_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda descriptor: flushed.append(descriptor) or original_fsync(descriptor))
    with replacing(target) as temporary:
        with open(temporary, "w") as handle:
            handle.write("new")
        assert target.read_text() == "old"  # nothing is published before the block ends
    assert target.read_text() == "new"
    assert len(flushed) == (2 if os.name != "nt" else 1)  # the file's bytes, then the rename
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "model.pth"
    target.write_text("finished work")
    with pytest.raises(RuntimeError, match="disk full"):
        with replacing(target) as temporary:
            with open(temporary, "w") as handle:
                handle.write("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "finished work"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pth"]
