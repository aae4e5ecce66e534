"""The convert CLI run in-process: outputs, report.json, and one-line errors with exit code 2."""

import json

import pytest
from conftest import mnist_digits, write_pngs

from tflite_opt import benchmark, cli
from tflite_opt.convert import main
from tflite_opt.tflite_file import read_tflite
from tflite_opt.verify import float_operators

pytestmark = pytest.mark.slow


@pytest.fixture
def tiny_args(saved_tiny_model, digit_folders, tmp_path):
    calibration, evaluation = digit_folders
    out = tmp_path / "out"
    args = ["--model", str(saved_tiny_model), "--representative-data", str(calibration), "--eval-data", str(evaluation)]
    return args, out


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def test_all_modes_write_files_and_a_report(tiny_args, capsys):
    args, out = tiny_args
    assert main([*args, "--full-int8", "--dynamic-range", "--float16", "--output-dir", str(out)]) == 0
    table = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["schema_version"] == 1 and report["model"] == "tiny"
    assert 0.0 <= report["keras_top1"] <= 1.0
    assert [v["variant"] for v in report["variants"]] == ["float32", "dynamic-range", "float16", "int8"]
    for variant in report["variants"]:
        path = out / variant["path"]
        assert path.name == f"tiny.{variant['variant']}.tflite"
        assert path.stat().st_size == variant["size_bytes"]
        assert variant["verified"] and 0.0 <= variant["top1"] <= 1.0
        assert variant["variant"] in table
    int8 = report["variants"][-1]
    assert int8["input"]["dtype"] == int8["output"]["dtype"] == "int8"
    assert int8["input"]["scale"] > 0
    assert report["preprocessing"]["scale"] == [pytest.approx(1 / 255)]
    assert not any(p.name.endswith(".tmp") for p in out.iterdir())


def test_existing_output_is_kept_without_overwrite(tiny_args, capsys):
    args, out = tiny_args
    assert main([*args, "--output-dir", str(out)]) == 0
    before = (out / "tiny.int8.tflite").stat().st_mtime_ns
    capsys.readouterr()
    assert main([*args, "--output-dir", str(out)]) == 2
    assert "exists; pass --overwrite" in one_line_error(capsys)
    assert (out / "tiny.int8.tflite").stat().st_mtime_ns == before
    assert main([*args, "--output-dir", str(out), "--overwrite"]) == 0


def test_uint8_io_type_reaches_the_file(tiny_args):
    args, out = tiny_args
    assert main([*args, "--io-type", "uint8", "--output-dir", str(out)]) == 0
    parsed = read_tflite((out / "tiny.int8.tflite").read_bytes())
    assert parsed.input_tensors()[0].dtype == "UINT8"


def test_full_int8_of_a_user_model_needs_representative_data(saved_tiny_model, tmp_path, capsys):
    assert main(["--model", str(saved_tiny_model), "--output-dir", str(tmp_path)]) == 2
    assert "pass --representative-data" in one_line_error(capsys)


def test_truncated_calibration_image_is_one_line_naming_it_and_nothing_is_written(
    saved_tiny_model, digit_folders, tmp_path, capsys
):
    images, _ = mnist_digits(5, seed=7)
    folder = write_pngs(tmp_path / "calibration", images)
    (folder / "digit_002.png").write_bytes((folder / "digit_002.png").read_bytes()[:50])
    out = tmp_path / "out"
    args = ["--model", str(saved_tiny_model), "--representative-data", str(folder), "--output-dir", str(out)]
    assert main(args) == 2
    assert "digit_002.png: unreadable or truncated image" in one_line_error(capsys)
    assert not out.exists()


def test_evaluation_data_shared_with_calibration_is_refused(saved_tiny_model, digit_folders, tmp_path, capsys):
    _, evaluation = digit_folders
    args = ["--model", str(saved_tiny_model), "--representative-data", str(evaluation), "--eval-data", str(evaluation)]
    assert main([*args, "--output-dir", str(tmp_path / "out")]) == 2
    assert "held-out" in one_line_error(capsys)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--bogus"], "Unknown command line flag 'bogus'"),
        (["--io-type", "int4"], "io-type"),
        (["--input-scale", "0.5", "--mean", "127"], "not both"),
        (["--std", "0"], "std must be positive"),
        (["--float16", "--io-type", "uint8"], "--io-type only applies to --full-int8"),
        (["stray"], "unexpected argument 'stray'"),
    ],
)
def test_bad_flags_exit_2_with_one_line(flags, message, capsys):
    assert main(flags) == 2
    assert message in one_line_error(capsys)


def test_interrupt_while_measuring_leaves_no_file(tiny_args, monkeypatch, capsys):
    args, out = tiny_args

    def interrupted(self, inputs):
        raise KeyboardInterrupt

    monkeypatch.setattr(benchmark.TfliteRunner, "predict", interrupted)
    assert main([*args, "--output-dir", str(out)]) == 130
    assert "interrupted" in one_line_error(capsys)
    assert not out.exists() or list(out.iterdir()) == []


def test_help_lists_grouped_flags_and_the_dispatcher_reaches_convert(capsys):
    assert cli.main(["convert", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--[no]full-int8" in text and "Calibration and evaluation data:" in text
    assert cli.main(["frobnicate"]) == 2


def test_default_model_meets_the_full_int8_targets(tmp_path, capsys):
    """Done-when of the foundation: int8 ≤ 30% of float32, integer-only, top-1 within 1 point."""
    assert main(["--full-int8", "--output-dir", str(tmp_path)]) == 0
    assert "mnist_cnn" in capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    float32, int8 = report["variants"]
    assert report["keras_top1"] >= 0.97
    assert int8["size_bytes"] <= 0.30 * float32["size_bytes"]
    parsed = read_tflite((tmp_path / int8["path"]).read_bytes())
    assert float_operators(parsed) == []
    assert parsed.input_tensors()[0].dtype == parsed.output_tensors()[0].dtype == "INT8"
    assert report["keras_top1"] - int8["top1"] <= 0.01
    assert report["eval_samples"] == 1000 and report["calibration_samples"] == 200
    # What the benchmark adds to make run's report.
    assert int8["top5"] >= int8["top1"]
    assert int8["latency_ms"]["p50"] <= int8["latency_ms"]["p90"] <= int8["latency_ms"]["p99"]
    assert int8["verdict"] == "good" and float32["verdict"] == "reference"
    assert (tmp_path / "report.md").is_file()
    assert (tmp_path / "tradeoff.png").is_file() and (tmp_path / "confusion.png").is_file()
