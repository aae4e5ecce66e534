"""Foreign .tflite files are run in a child process first: a native crash becomes a one-line error."""

import pytest
from helpers import CORPUS

from tflite_opt.core import keras2, native_probe
from tflite_opt.core.errors import ModelLoadError
from tflite_opt.core.native_probe import check_size, peak_memory_in_child, probe_in_child


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


def conv_tflite(side: int, filters: int) -> bytes:
    keras = keras2.keras
    model = keras.Sequential([keras.Input((side, side, 1)), keras.layers.Conv2D(filters, 3, padding="same")])
    return keras2.tf.lite.TFLiteConverter.from_keras_model(model).convert()


def test_peak_memory_grows_with_the_tensors_a_model_allocates():
    small, large = conv_tflite(8, 4), conv_tflite(256, 32)  # activations: 1 KiB against 8 MiB of float32
    small_peak = peak_memory_in_child(small, num_threads=1, use_xnnpack=True)
    large_peak = peak_memory_in_child(large, num_threads=1, use_xnnpack=True)
    assert small_peak is not None and large_peak is not None
    assert large_peak - small_peak >= 8 * 2**20, (small_peak, large_peak)


def test_a_child_that_fails_leaves_the_memory_unknown_not_zero(monkeypatch):
    monkeypatch.setattr(native_probe, "_MEMORY_CHILD", "raise SystemExit(3)")
    assert peak_memory_in_child(b"anything", num_threads=1, use_xnnpack=True) is None
