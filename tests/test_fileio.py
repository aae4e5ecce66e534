import pytest

from tflite_opt import fileio
from tflite_opt.errors import OutputExistsError


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
