"""``python -m tflite_opt.benchmark``: the table, and broken or hostile files refused in one line."""

import json

import pytest
from helpers import CORPUS, one_line_error

from tflite_opt.benchmark import main

pytestmark = pytest.mark.slow
BROKEN_MODELS = sorted(p for p in (CORPUS / "tflite").glob("*.tflite") if p.name != "valid.tflite")


def test_the_table_lists_every_model_given(converted_dir, saved_tiny_model, digit_folders, tmp_path, capsys):
    _, evaluation = digit_folders
    models = [f"--model={converted_dir / f'tiny.{v}.tflite'}" for v in ("float32", "int8")]
    args = [*models, "--keras-model", str(saved_tiny_model), "--eval-data", str(evaluation), "--num-runs", "10"]
    assert main([*args, "--output-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    report = json.loads((tmp_path / "report.json").read_text())
    assert lines[0].startswith("tiny: top-1 on 40 held-out images") and "median of 10 runs" in lines[0]
    assert [line.split()[0] for line in lines[3:6]] == ["keras", "float32", "int8"]
    assert lines[5].split()[-1] in ("good", "marginal", "bad", "*")
    assert report["variants"][1]["latency_ms"]["p50"] > 0


@pytest.mark.parametrize("path", BROKEN_MODELS, ids=lambda p: p.name)
def test_broken_models_are_refused_in_one_line_and_never_crash(path, tmp_path, capsys):
    """Every corpus file but valid.tflite is broken (truncated, bit-flipped, not a model, or a fuzz finding)."""
    args = [f"--model={path}", "--num-runs", "3", "--warmup-runs", "0", "--output-dir", str(tmp_path)]
    assert main(args) == 2
    err = one_line_error(capsys)
    assert err.startswith("error: ") and path.name in err
    assert not (tmp_path / "report.json").exists()


def test_eval_data_shared_with_calibration_is_one_line_exit_2(converted_dir, digit_folders, tmp_path, capsys):
    _, evaluation = digit_folders
    args = [f"--model={converted_dir / 'tiny.int8.tflite'}", "--eval-data", str(evaluation)]
    assert main([*args, "--calibration-data", str(evaluation), "--output-dir", str(tmp_path)]) == 2
    assert "held-out" in one_line_error(capsys)


def test_bad_measurement_settings_exit_2(converted_dir, tmp_path, capsys):
    args = [f"--model={converted_dir / 'tiny.int8.tflite'}", "--output-dir", str(tmp_path)]
    assert main([*args, "--num-runs", "1"]) == 2
    assert "--num-runs must be at least 2" in one_line_error(capsys)
