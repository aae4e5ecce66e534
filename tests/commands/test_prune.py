"""``python -m tflite_opt.prune``: flags → what the job receives, what pruning did printed, one-line errors (the
job stubbed); one real pruning end to end."""

import types
from pathlib import Path

import pytest
from helpers import one_line_error

from tflite_opt import prune
from tflite_opt.core.config import PruneConfig, Schedule
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.prune import main


def stats(tuning=None, skipped=()):
    """What run_prune returns about pruning: per layer, the skipped layers, the fine-tuning, the time."""
    layers = [
        types.SimpleNamespace(layer="conv", weights=144, sparsity=0.5),
        types.SimpleNamespace(layer="a_long_layer_name", weights=123456, sparsity=0.8125),
    ]
    return types.SimpleNamespace(layers=layers, skipped=list(skipped), tuning=tuning, seconds=12.4)


@pytest.fixture
def job(stub):
    return stub(prune, "run_prune", result=(stats(), Path("artifacts/tiny.pruned80.keras")))


def test_without_flags_the_job_prunes_the_default_with_the_default_config(job):
    assert main([]) == 0
    assert job.received == {
        "config": PruneConfig(),
        "model_path": None,
        "train_data": None,
        "preprocessing": None,
        "output": None,
        "overwrite": False,
        "allow_unsafe": False,
        "progress": True,
    }


def test_every_flag_reaches_the_job(job):
    args = ["--model", "m.keras", "--train-data", "t.npz", "--output", "o.keras", "--overwrite"]
    args += ["--allow-unsafe-deserialization", "--input-scale", "0.5", "--input-offset", "-1"]
    args += ["--target-sparsity", "0.6", "--pruning-schedule", "constant", "--pruning-epochs", "3"]
    args += ["--batch-size", "16", "--learning-rate", "0.001", "--min-fine-tuning-steps", "0", "--block-size", "1,4"]
    assert main(args) == 0
    assert job.received == {
        "config": PruneConfig(0.6, Schedule.CONSTANT, 3, 16, 0.001, 0, (1, 4)),
        "model_path": Path("m.keras"),
        "train_data": Path("t.npz"),
        "preprocessing": Preprocessing(scale=(0.5,), offset=(-1.0,)),
        "output": Path("o.keras"),
        "overwrite": True,
        "allow_unsafe": True,
        "progress": True,
    }


def test_structured_sparsity_reaches_the_config(job):
    assert main(["--sparsity-m-by-n", "2:4"]) == 0
    assert job.received["config"] == PruneConfig(m_by_n=(2, 4)) and job.received["config"].target_sparsity == 0.5


def test_each_layer_is_printed_with_its_zeros_then_the_skipped_ones_and_where_it_was_saved(stub, capsys):
    tuning = types.SimpleNamespace(describe=lambda: "learning rate 0.0005 (of 0.0005, 5e-05), 32 fitted")
    output = Path("out/tiny.pruned80.keras")
    stub(prune, "run_prune", result=(stats(tuning, [("depthwise", "not prunable")]), output))
    assert main([]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "conv                   144 weights   50.0% zero",
        "a_long_layer_name    123456 weights   81.2% zero",
        "skipped depthwise: not prunable",
        "fine-tuning: learning rate 0.0005 (of 0.0005, 5e-05), 32 fitted",
        f"pruned in 12 s; saved the stripped model to {output}",
    ]


def test_without_a_fine_tuning_record_no_fine_tuning_line_is_printed(job, capsys):
    assert main([]) == 0
    assert not any(line.startswith("fine-tuning") for line in capsys.readouterr().out.splitlines())


def test_a_typed_error_from_the_job_is_one_line_and_its_exit_code(stub, typed_error, capsys):
    error_class, code = typed_error
    stub(prune, "run_prune", error=error_class("tiny has no embedded training data: pass --train-data"))
    assert main(["--model", "tiny.keras"]) == code
    assert one_line_error(capsys) == "error: tiny has no embedded training data: pass --train-data"
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--target-sparsity", "1.5"], "--target-sparsity must be between 0 and 1"),
        (["--block-size", "4"], "--block-size takes two integers as A,B"),
        (["--sparsity-m-by-n", "4:2"], "--sparsity-m-by-n needs 0 < m < n"),
        (["--pruning-epochs", "0"], "--pruning-epochs must be at least 1"),
        (["--learning-rate", "0"], "--learning-rate must be positive"),
        (["--pruning-schedule", "cubic"], "pruning-schedule"),
        (["--cluster", "8"], "Unknown command line flag 'cluster'"),
    ],
)
def test_bad_flags_exit_2_with_one_line_before_the_job_runs(job, flags, message, capsys):
    assert main(flags) == 2
    assert message in one_line_error(capsys)
    assert job.calls == []


@pytest.mark.slow
def test_each_layer_is_printed_with_its_zeros_and_the_file_it_was_saved_to(
    saved_tiny_model, digit_folders, tmp_path, capsys
):
    """End to end."""
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
