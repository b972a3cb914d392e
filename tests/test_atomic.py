"""Atomic writes: a file appears whole, flushed to disk, or the old one stays."""

import os

import pytest

from recbole_llmd4rec.atomic import replacing, replacing_folder
from recbole_llmd4rec.errors import LLMD4RecError


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


def test_a_finished_folder_replaces_the_old_one_and_a_failed_one_leaves_it(tmp_path):
    target = tmp_path / "adapter"
    with replacing_folder(target) as temporary:
        temporary.mkdir()
        (temporary / "weights").write_text("first")
    assert (target / "weights").read_text() == "first"
    with replacing_folder(target) as temporary:
        temporary.mkdir()
        (temporary / "weights").write_text("second")
        assert (target / "weights").read_text() == "first"  # nothing is published before the block ends
    assert (target / "weights").read_text() == "second"
    with pytest.raises(RuntimeError, match="disk full"):
        with replacing_folder(target) as temporary:
            temporary.mkdir()
            (temporary / "weights").write_text("half")
            raise RuntimeError("disk full")
    assert (target / "weights").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # no temporary, no earlier version left


def test_a_folder_another_process_made_first_is_kept_when_asked(tmp_path):
    target = tmp_path / "tiny-model"
    for keep_existing, expected in ((True, "theirs"), (False, "mine")):
        with replacing_folder(target, keep_existing=keep_existing) as temporary:
            temporary.mkdir()
            (temporary / "config.json").write_text("mine")
            target.mkdir(exist_ok=True)  # the other process finishes the same folder meanwhile
            (target / "config.json").write_text("theirs")
        assert (target / "config.json").read_text() == expected
        assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-model"]


def test_a_folder_writer_that_wrote_nothing_keeps_the_folder_there(tmp_path):
    target = tmp_path / "adapter"
    target.mkdir()
    (target / "weights").write_text("finished work")
    with pytest.raises(LLMD4RecError, match="nothing was written for .*adapter"):
        with replacing_folder(target):
            pass
    assert (target / "weights").read_text() == "finished work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
