"""Foreign .tflite files are run in a child process first: a native crash becomes a one-line error."""

import pytest
from helpers import CORPUS

from tflite_opt.core import native_probe
from tflite_opt.core.errors import ModelLoadError
from tflite_opt.core.native_probe import check_size, probe_in_child


def test_the_valid_corpus_model_runs_in_the_child(monkeypatch):
    calls = []
    run = native_probe.subprocess.run

    def recording(*args, **kwargs):
        calls.append(args[0])
        return run(*args, **kwargs)

    monkeypatch.setattr(native_probe.subprocess, "run", recording)
    assert probe_in_child(CORPUS / "tflite" / "valid.tflite") is None
    assert len(calls) == 1 and calls[0][-1].endswith("valid.tflite")


def test_a_crash_in_native_code_becomes_a_model_load_error(monkeypatch):
    monkeypatch.setattr(native_probe, "_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    with pytest.raises(ModelLoadError, match=r"crashed on this file \(SIGSEGV\)"):
        probe_in_child(CORPUS / "tflite" / "valid.tflite")


def test_a_failure_in_the_child_names_its_last_line(monkeypatch):
    monkeypatch.setattr(native_probe, "_CHILD", "raise ValueError('tensor 7 is broken')")
    with pytest.raises(ModelLoadError, match="cannot run this file: ValueError: tensor 7 is broken"):
        probe_in_child(CORPUS / "tflite" / "valid.tflite")


def test_a_hanging_child_is_stopped(monkeypatch):
    monkeypatch.setattr(native_probe, "_CHILD", "import time; time.sleep(30)")
    with pytest.raises(ModelLoadError, match="did not finish loading it within 1 s"):
        probe_in_child(CORPUS / "tflite" / "valid.tflite", timeout=1)


def test_files_too_small_to_be_models_are_refused_before_reading(tmp_path):
    for size in (0, 4, 7):
        (tmp_path / "small.tflite").write_bytes(b"T" * size)
        with pytest.raises(ModelLoadError, match=f"is {size} bytes: not a TFLite model"):
            check_size(tmp_path / "small.tflite")
    check_size(CORPUS / "tflite" / "header_only.tflite")  # 8 bytes: the parser refuses it, not the size check
