"""Hostile files, bad input and interruptions: one-line errors, no crash, no broken artifact."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tflite_opt import benchmark
from tflite_opt.errors import DataError, ModelLoadError
from tflite_opt.native_probe import probe_in_child
from tflite_opt.representative import ImageSize, load_image
from tflite_opt.tflite_file import read_tflite

CORPUS = Path(__file__).parent / "corpus"
BROKEN_MODELS = sorted(p for p in (CORPUS / "tflite").glob("*.tflite") if p.name != "valid.tflite")


@pytest.mark.parametrize("path", BROKEN_MODELS, ids=lambda p: p.name)
def test_broken_models_never_crash_the_benchmark(path, tmp_path, capsys):
    code = benchmark.main([f"--model={path}", "--num-runs", "3", "--warmup-runs", "0", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    if code == 0:  # a flip that left a runnable model is fine; it must then have been measured
        assert json.loads((tmp_path / "report.json").read_text())["variants"][0]["latency_ms"]["p50"] > 0
    else:
        assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err


@pytest.mark.parametrize("name", ["empty", "text", "header_only", "truncated_50"])
def test_the_classic_bad_files_exit_2_with_one_line(name, tmp_path, capsys):
    path = CORPUS / "tflite" / f"{name}.tflite"
    assert benchmark.main([f"--model={path}", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and name in err


def test_a_crash_in_native_code_becomes_a_model_load_error(tmp_path, monkeypatch):
    from tflite_opt import native_probe

    crashing = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
    monkeypatch.setattr(native_probe, "_CHILD", crashing)
    with pytest.raises(ModelLoadError, match=r"crashed on this file \(SIGSEGV\)"):
        probe_in_child(CORPUS / "tflite" / "valid.tflite")


def test_the_valid_corpus_model_passes_both_checks():
    read_tflite((CORPUS / "tflite" / "valid.tflite").read_bytes())
    probe_in_child(CORPUS / "tflite" / "valid.tflite")


@pytest.mark.parametrize("path", sorted((CORPUS / "images").iterdir()), ids=lambda p: p.name)
def test_malformed_images_are_a_data_error_naming_the_file(path):
    with pytest.raises(DataError, match=path.name):
        load_image(path, ImageSize(8, 8, 1))


def test_images_past_the_pixel_limit_are_refused_not_just_warned(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    Image.new("L", (90, 90)).save(tmp_path / "warns.png")  # 8100 pixels: Pillow would only warn
    with pytest.raises(DataError, match="too large to load safely"):
        load_image(tmp_path / "warns.png", ImageSize(8, 8, 1))


@pytest.mark.parametrize("mode", ["I;16", "F", "CMYK", "P", "LA", "1"])
def test_unusual_image_modes_load_as_the_model_channels(tmp_path, mode):
    path = tmp_path / ("image.tiff" if mode in ("I;16", "F", "CMYK") else "image.png")
    Image.new(mode, (10, 12)).save(path)
    for channels in (1, 3):
        assert load_image(path, ImageSize(8, 8, channels)).shape == (8, 8, channels)


def output_is_whole(folder: Path) -> None:
    """No temporary file, every .tflite parses, report.json absent or valid."""
    if not folder.exists():
        return
    names = [p.name for p in folder.iterdir()]
    assert not [n for n in names if n.endswith(".tmp") or ".tmp." in n], names
    for model in folder.glob("*.tflite"):
        read_tflite(model.read_bytes(), source=str(model))
    if (folder / "report.json").exists():
        json.loads((folder / "report.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig, delay, expected", [(signal.SIGINT, 6.0, 130), (signal.SIGTERM, 6.0, 143), (signal.SIGTERM, 9.0, 143)]
)
def test_interrupting_a_real_run_leaves_no_partial_artifact(tmp_path, sig, delay, expected):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "tflite_opt.convert", "--full-int8", "--float16", "--output-dir", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    assert process.returncode in (expected, 0), err  # 0: it finished before the signal arrived
    if process.returncode == expected:
        assert "no partial output was left behind" in err and "Traceback" not in err
    output_is_whole(out)


def test_written_outputs_are_whole_after_an_interrupted_write(tmp_path, monkeypatch):
    from tflite_opt import fileio

    fileio.atomic_write_json(tmp_path / "report.json", {"old": True})

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fileio.atomic_write_json(tmp_path / "report.json", {"new": np.arange(3).tolist()}, overwrite=True)
    assert json.loads((tmp_path / "report.json").read_text()) == {"old": True}
    output_is_whole(tmp_path)


@pytest.mark.parametrize(
    "sig, expected, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")]
)
def test_a_signal_that_native_code_turns_into_an_error_is_still_reported_as_the_signal(sig, expected, word, capsys):
    """pybind11 replaces an exception raised in a signal handler during a native call with its own error."""
    import os

    from tflite_opt.cli import run_cli
    from tflite_opt.errors import ConversionError

    def run(flag_values):
        try:
            os.kill(os.getpid(), sig)
            time.sleep(5)  # the handler raises here
        except BaseException as exc:  # what the converter's binding does with it
            raise ConversionError("float16 conversion failed: pybind11::error_already_set: MISMATCH") from exc
        return 0

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    assert run_cli("test", [], lambda flag_values: None, run) == expected
    err = capsys.readouterr().err.strip()
    assert err == f"{word}; no partial output was left behind"
    assert {s: signal.getsignal(s) for s in before} == before  # the command's handlers are gone again
