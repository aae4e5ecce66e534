"""``python -m tflite_opt.convert`` run in-process: the table on stdout, one-line errors, exit codes."""

import json
import sys
import types

import pytest
from helpers import mnist_digits, one_line_error, write_pngs

from tflite_opt.convert import main
from tflite_opt.core import keras2
from tflite_opt.core.tflite_file import read_tflite

pytestmark = pytest.mark.slow


@pytest.fixture
def tiny_args(saved_tiny_model, digit_folders, tmp_path):
    calibration, evaluation = digit_folders
    out = tmp_path / "out"
    args = ["--model", str(saved_tiny_model), "--representative-data", str(calibration), "--eval-data", str(evaluation)]
    return args, out


def test_the_table_is_printed_and_matches_report_json(tiny_args, capsys):
    args, out = tiny_args
    assert main([*args, "--full-int8", "--float16", "--output-dir", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    report = json.loads((out / "report.json").read_text())
    assert lines[0].startswith("tiny: top-1 on 40 held-out images")
    rows = {line.split()[0]: line.split() for line in lines[3:7]}
    for variant in report["variants"]:
        row = rows[variant["variant"]]
        assert row[1] == f"{variant['size_bytes'] / 1024:.1f}" and f"{100 * variant['top1']:.2f}%" in row
    assert lines[-1] == f"report: {out / 'report.json'} (also report.md, tradeoff.png, confusion.png)"


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
    assert parsed.input_tensors()[0].dtype == parsed.output_tensors()[0].dtype == "UINT8"


def test_full_int8_of_a_user_model_needs_representative_data(saved_tiny_model, tmp_path, capsys):
    assert main(["--model", str(saved_tiny_model), "--output-dir", str(tmp_path)]) == 2
    assert "pass --representative-data" in one_line_error(capsys)


def test_truncated_calibration_image_is_one_line_naming_it_and_nothing_is_written(saved_tiny_model, tmp_path, capsys):
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


def test_a_lambda_model_is_one_line_exit_2(tmp_path, capsys):
    keras = keras2.keras
    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Lambda(lambda t: t * 2.0, name="doubled")(keras.layers.Flatten()(inputs))
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, keras.layers.Dense(10)(x)).save(path)
    args = ["--model", str(path), "--representative-data", str(tmp_path), "--output-dir", str(tmp_path / "o")]
    assert main(args) == 2
    err = one_line_error(capsys)
    assert "Lambda layer 'doubled'" in err and "--allow-unsafe-deserialization" in err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--bogus"], "Unknown command line flag 'bogus'"),
        (["--io-type", "int4"], "io-type"),
        (["--input-scale", "0.5", "--mean", "127"], "not both"),
        (["--std", "0"], "std must be positive"),
        (["--float16", "--io-type", "uint8"], "--io-type only applies to --full-int8"),
        (["--sparse-format"], "needs --prune"),
        (["--max-accuracy-drop", "1", "--sparsity-grid", "0.5,most"], "--sparsity-grid takes numbers"),
        (["stray"], "unexpected argument 'stray'"),
    ],
)
def test_bad_flags_exit_2_with_one_line(flags, message, capsys):
    assert main(flags) == 2
    assert message in one_line_error(capsys)


def test_a_budget_no_candidate_meets_exits_3_naming_the_best(outlier_model, outlier_data, tmp_path, capsys):
    args = ["--model", str(outlier_model), "--representative-data", str(outlier_data / "calibration")]
    args += ["--eval-data", str(outlier_data / "eval"), "--input-scale", str(1 / 255)]
    code = main([*args, "--max-accuracy-drop", "1", "--max-float-layers", "0", "--output-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 3
    assert "no candidate of 1 is within the 1-point budget; the best was int8" in out
    assert json.loads((tmp_path / "report.json").read_text())["search"]["met"] is False


def test_a_stack_that_cannot_convert_stops_with_one_line_and_exit_1(monkeypatch, tmp_path, capsys):
    old = types.ModuleType("tensorflow")
    old.__version__ = "1.12.0"
    old.lite = types.SimpleNamespace(TFLiteConverter=lambda graph_def, inputs, outputs: types.SimpleNamespace())
    monkeypatch.setitem(sys.modules, "tensorflow", old)
    assert main(["--output-dir", str(tmp_path / "out")]) == 1
    assert "no optimizations" in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_raw_pixel_input_needs_an_integer_full_int8_model(capsys):
    assert main(["--float16", "--raw-pixel-input"]) == 2
    assert "--raw-pixel-input applies to --full-int8 models with --io-type int8 or uint8" in one_line_error(capsys)
    assert main(["--io-type", "float32", "--raw-pixel-input"]) == 2
    assert "--raw-pixel-input applies" in one_line_error(capsys)


def test_the_table_says_the_model_takes_pixels_and_why(faces, tmp_path, capsys):
    root = faces["root"]
    args = ["--model", str(faces["model"]), "--representative-data", str(root / "calibration")]
    args += ["--eval-data", str(root / "eval"), "--labels", str(faces["labels"]), "--mean", "127.5", "--std", "127.5"]
    assert main([*args, "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "pixel input: the int8 model takes camera pixels as they are" in out
    assert "✓ pixel input: int8 input takes pixels as they are (scale 1.0, zero point -128)" in out
    assert "classes: 6 class folders, each looked up by name in --labels" in out
