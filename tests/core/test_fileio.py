import json

import pytest

from tflite_opt.core import fileio
from tflite_opt.core.errors import OutputExistsError


def test_existing_file_is_not_overwritten_without_permission(tmp_path):
    target = tmp_path / "model.tflite"
    target.write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        fileio.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    fileio.atomic_write_bytes(target, b"new", overwrite=True)
    assert target.read_bytes() == b"new"


def test_interrupted_write_leaves_neither_file_nor_temporary(tmp_path, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fileio.atomic_write_bytes(tmp_path / "model.tflite", b"x" * 1000)
    assert list(tmp_path.iterdir()) == []


def test_written_files_are_readable_by_others(tmp_path):
    path = fileio.atomic_write_json(tmp_path / "report.json", {"a": 1})
    assert path.stat().st_mode & 0o044 == 0o044


def test_an_interrupted_replacement_keeps_the_old_content(tmp_path, monkeypatch):
    fileio.atomic_write_json(tmp_path / "report.json", {"old": True})

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fileio.atomic_write_json(tmp_path / "report.json", {"new": True}, overwrite=True)
    assert json.loads((tmp_path / "report.json").read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_atomic_save_renames_what_the_saver_wrote_and_cleans_up_after_a_failure(tmp_path):
    def save(path):
        path.write_text("model")

    assert fileio.atomic_save(tmp_path / "m.keras", save).read_text() == "model"

    def failing(path):
        path.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        fileio.atomic_save(tmp_path / "other.keras", failing)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]
