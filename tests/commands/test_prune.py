"""``python -m tflite_opt.prune``: what pruning did, printed; refusals in one line."""

import pytest
from helpers import one_line_error

from tflite_opt.convert import main as convert_main
from tflite_opt.prune import main

pytestmark = pytest.mark.slow


def test_each_layer_is_printed_with_its_zeros_and_the_file_it_was_saved_to(
    saved_tiny_model, digit_folders, tmp_path, capsys
):
    _, evaluation = digit_folders
    output = tmp_path / "tiny.pruned.keras"
    args = ["--model", str(saved_tiny_model), "--train-data", str(evaluation), "--output", str(output)]
    assert main([*args, "--target-sparsity", "0.5", "--pruning-epochs", "2", "--batch-size", "8"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["conv", "hidden", "scores"]
    assert all(line.split()[-2] in ("49.9%", "50.0%", "50.1%") for line in lines[:3])
    assert "skipped depthwise: tensorflow-model-optimization does not prune" in captured.out
    assert lines[-1].endswith(f"saved the stripped model to {output}") and output.is_file()
    # Each epoch of each learning rate tried is logged, then what was kept; the same sentence is printed.
    err = captured.err.splitlines()
    epochs = [line for line in err if ", epoch " in line and "loss" in line]
    assert epochs and all(line.startswith("pruning: learning rate ") for line in epochs)
    kept = next(line for line in lines if line.startswith("fine-tuning: learning rate "))
    assert kept.removeprefix("fine-tuning: ") == err[-1].removeprefix("pruning: ")
    assert "32 samples fitted, 8 held out" in kept  # 40 training digits: a fifth held out
    assert main(args) == 2
    assert "exists; pass --overwrite" in one_line_error(capsys)


def test_pruning_a_user_model_without_training_data_is_refused(saved_tiny_model, digit_folders, tmp_path, capsys):
    calibration, _ = digit_folders
    args = ["--model", str(saved_tiny_model), "--representative-data", str(calibration), "--prune"]
    assert convert_main([*args, "--output-dir", str(tmp_path)]) == 2
    assert "pass --train-data" in one_line_error(capsys)
    assert main(["--model", str(saved_tiny_model)]) == 2
    assert "pass --train-data" in one_line_error(capsys)
