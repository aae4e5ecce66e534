"""``python -m tflite_opt.convert``: flags → the ConvertConfig the job receives, the table printed, exit codes and
one-line errors (the job stubbed); one real conversion end to end."""

import json
import sys
import types
from pathlib import Path

import pytest
from helpers import mnist_digits, one_line_error, write_pngs

from tflite_opt import convert
from tflite_opt.convert import main
from tflite_opt.core.config import (
    BenchmarkSettings,
    ClusterConfig,
    ConvertConfig,
    IoType,
    Mode,
    ModelCard,
    PruneConfig,
    QatConfig,
    Schedule,
    SearchConfig,
    SearchSchedule,
)
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.core.shipping import AppCode, Resize
from tflite_opt.core.tflite_file import read_tflite

NO_SEARCH = types.SimpleNamespace(search=None)


@pytest.fixture
def job(stub):
    """run_convert stubbed, returning a report without a search; format_table stubbed to "the table"."""
    stub(convert, "format_table", result="the table")
    return stub(convert, "run_convert", result=NO_SEARCH)


def test_no_flags_give_the_default_config_with_progress(job):
    assert main([]) == 0
    assert job.received == {"config": ConvertConfig(), "progress": True}


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--float16", "--dynamic-range"], {"modes": (Mode.FLOAT16, Mode.DYNAMIC_RANGE)}),
        (["--float32"], {"modes": (Mode.FLOAT32,)}),
        (["--full-int8", "--float16"], {"modes": (Mode.FULL_INT8, Mode.FLOAT16)}),
        (
            ["--model", "m.keras", "--representative-data", "cal", "--eval-data", "ev", "--train-data", "t.npz"],
            {"model_path": Path("m.keras"), "representative_data": Path("cal"), "eval_data": Path("ev")}
            | {"train_data": Path("t.npz")},
        ),
        (
            ["--labels", "labels.txt", "--output-dir", "out", "--model-version", "2.0.1", "--overwrite"],
            {"labels_file": Path("labels.txt"), "output_dir": Path("out"), "model_version": "2.0.1", "overwrite": True},
        ),
        (
            ["--model-description", "Digits.", "--author", "Ann Author", "--license", "Apache-2.0"],
            {"card": ModelCard("Digits.", "Ann Author", "Apache-2.0")},
        ),
        (
            ["--num-calibration-samples", "50", "--seed", "3", "--allow-unsafe-deserialization"],
            {"num_calibration_samples": 50, "seed": 3, "allow_unsafe_deserialization": True},
        ),
        (["--mean", "127.5", "--std", "127.5"], {"preprocessing": Preprocessing.from_mean_std(127.5, 127.5)}),
        (
            ["--input-scale", "0.5,0.25,0.125", "--input-offset", "-1"],
            {"preprocessing": Preprocessing(scale=(0.5, 0.25, 0.125), offset=(-1.0,))},
        ),
        (
            ["--prune", "--target-sparsity", "0.6", "--pruning-schedule", "constant", "--pruning-epochs", "3"]
            + ["--batch-size", "16", "--learning-rate", "0.001", "--min-fine-tuning-steps", "0", "--block-size", "1,4"]
            + ["--cluster", "8", "--cluster-epochs", "1", "--qat", "--qat-epochs", "2", "--sparse-format"],
            {
                "prune": PruneConfig(0.6, Schedule.CONSTANT, 3, 16, 0.001, 0, (1, 4)),
                "cluster": ClusterConfig(8, 1, 16, 0.001, 0),
                "qat": QatConfig(2, 16, 0.001, 0),
                "sparse_format": True,
            },
        ),
        (["--prune", "--sparsity-m-by-n", "2:4"], {"prune": PruneConfig(m_by_n=(2, 4))}),
        (
            ["--max-accuracy-drop", "0.5", "--sparsity-grid", "0.9,0.5", "--max-float-layers", "1", "--norefine"],
            {"search": SearchConfig(0.5, (0.5, 0.9), max_float_layers=1, refine=False)},
        ),
        (["--max-accuracy-drop", "1", "--prune"], {"search": SearchConfig(1.0), "prune": PruneConfig()}),
        (
            ["--max-accuracy-drop", "1", "--prune", "--ray-address", "local", "--resume"],
            {"search": SearchConfig(1.0, ray_address="local", resume=True), "prune": PruneConfig()},
        ),
        (
            ["--max-accuracy-drop", "1", "--search-schedule", "parallel"],
            {"search": SearchConfig(1.0, schedule=SearchSchedule.PARALLEL)},
        ),
        (["--per-tensor"], {"per_tensor": True}),
        (["--io-type", "uint8", "--raw-pixel-input"], {"io_type": IoType.UINT8, "pixel_input": True}),
        (["--io-type", "float32", "--noraw-pixel-input"], {"io_type": IoType.FLOAT32, "pixel_input": False}),
        (
            ["--kotlin-package", "com.acme.vision", "--class-prefix", "Acme"],
            {"app_code": AppCode("com.acme.vision", "Acme")},
        ),
        (["--resize", "center-crop"], {"resize": Resize.CENTER_CROP}),
        (["--calibration-data", "cal"], {"representative_data": Path("cal")}),  # benchmark's name for it
        (
            ["--num-runs", "7", "--warmup-runs", "1", "--num-threads", "2", "--noxnnpack", "--eval-batch-size", "8"],
            {"benchmark": BenchmarkSettings(num_runs=7, warmup_runs=1, num_threads=2, use_xnnpack=False, batch_size=8)},
        ),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_flags_reach_the_config_the_job_receives(job, flags, expected):
    assert main(flags) == 0
    assert job.received["config"] == ConvertConfig(**expected)


def test_the_table_of_the_jobs_report_is_printed(stub, capsys):
    table = stub(convert, "format_table", result="the table")
    stub(convert, "run_convert", result=NO_SEARCH)
    assert main([]) == 0
    assert capsys.readouterr().out == "the table\n"
    assert table.received["report"] is NO_SEARCH


@pytest.mark.parametrize("met, code", [(False, 3), (True, 0)], ids=["missed", "met"])
def test_a_budget_no_candidate_meets_exits_3_after_the_table(stub, met, code, capsys):
    stub(convert, "format_table", result="the table")
    stub(convert, "run_convert", result=types.SimpleNamespace(search=types.SimpleNamespace(met=met)))
    assert main(["--max-accuracy-drop", "1"]) == code
    assert capsys.readouterr().out == "the table\n"


def test_a_typed_error_from_the_job_is_one_line_and_its_exit_code(stub, typed_error, capsys):
    error_class, code = typed_error
    stub(convert, "run_convert", error=error_class("tiny.int8.tflite exists; pass --overwrite"))
    assert main([]) == code
    assert one_line_error(capsys) == "error: tiny.int8.tflite exists; pass --overwrite"
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--bogus"], "Unknown command line flag 'bogus'"),
        (["--io-type", "int4"], "io-type"),
        (["--input-scale", "0.5", "--mean", "127"], "not both"),
        (["--input-scale", "half"], "--input-scale takes numbers"),
        (["--std", "0"], "std must be positive"),
        (["--float16", "--io-type", "uint8"], "--io-type only applies to --full-int8"),
        (["--sparse-format"], "needs --prune"),
        (["--max-accuracy-drop", "1", "--sparsity-grid", "0.5,most"], "--sparsity-grid takes numbers"),
        (["--max-accuracy-drop", "1", "--float16"], "--max-accuracy-drop and --per-tensor apply to --full-int8"),
        (["--max-accuracy-drop", "1", "--full-int8", "--float16"], "--max-accuracy-drop searches full-int8"),
        (["--float16", "--qat"], "it needs --full-int8"),
        (["--ray-address", "local", "--resume"], "--ray-address, --resume apply to the search"),
        (["--max-accuracy-drop", "1", "--ray-address", " "], "--ray-address needs an address"),
        (["--prune", "--target-sparsity", "1"], "--target-sparsity must be between 0 and 1"),
        (["--float16", "--raw-pixel-input"], "--raw-pixel-input applies to --full-int8 models with --io-type int8"),
        (["--io-type", "float32", "--raw-pixel-input"], "--raw-pixel-input applies"),
        (["stray"], "unexpected argument 'stray'"),
    ],
)
def test_bad_flags_exit_2_with_one_line_before_the_job_runs(job, flags, message, capsys):
    assert main(flags) == 2
    assert message in one_line_error(capsys)
    assert job.calls == []


# Real runs. The one end to end test of the command, then job behaviour that only these tests check.


@pytest.fixture
def tiny_args(saved_tiny_model, digit_folders, tmp_path):
    calibration, evaluation = digit_folders
    out = tmp_path / "out"
    args = ["--model", str(saved_tiny_model), "--representative-data", str(calibration), "--eval-data", str(evaluation)]
    return args, out


@pytest.mark.slow
def test_the_table_is_printed_and_matches_report_json_and_uint8_io_reaches_the_file(tiny_args, capsys):
    args, out = tiny_args
    assert main([*args, "--full-int8", "--float16", "--io-type", "uint8", "--output-dir", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    report = json.loads((out / "report.json").read_text())
    assert lines[0].startswith("tiny: top-1 on 40 held-out images")
    rows = {line.split()[0]: line.split() for line in lines[3:7]}
    for variant in report["variants"]:
        row = rows[variant["variant"]]
        assert row[1] == f"{variant['size_bytes'] / 1024:.1f}" and f"{100 * variant['top1']:.2f}%" in row
    assert lines[-1] == f"report: {out / 'report.json'} (also report.md, tradeoff.png, confusion.png)"
    parsed = read_tflite((out / "tiny.int8.tflite").read_bytes())
    assert parsed.input_tensors()[0].dtype == parsed.output_tensors()[0].dtype == "UINT8"


@pytest.mark.slow
def test_truncated_calibration_image_is_one_line_naming_it_and_nothing_is_written(saved_tiny_model, tmp_path, capsys):
    images, _ = mnist_digits(5, seed=7)
    folder = write_pngs(tmp_path / "calibration", images)
    (folder / "digit_002.png").write_bytes((folder / "digit_002.png").read_bytes()[:50])
    out = tmp_path / "out"
    args = ["--model", str(saved_tiny_model), "--representative-data", str(folder), "--output-dir", str(out)]
    assert main(args) == 2
    assert "digit_002.png: unreadable or truncated image" in one_line_error(capsys)
    assert not out.exists()


@pytest.mark.slow
def test_evaluation_data_shared_with_calibration_is_refused(saved_tiny_model, digit_folders, tmp_path, capsys):
    _, evaluation = digit_folders
    args = ["--model", str(saved_tiny_model), "--representative-data", str(evaluation), "--eval-data", str(evaluation)]
    assert main([*args, "--output-dir", str(tmp_path / "out")]) == 2
    assert "held-out" in one_line_error(capsys)


@pytest.mark.slow
def test_a_stack_that_cannot_convert_stops_with_one_line_and_exit_1_writing_nothing(monkeypatch, tmp_path, capsys):
    old = types.ModuleType("tensorflow")
    old.__version__ = "1.12.0"
    old.lite = types.SimpleNamespace(TFLiteConverter=lambda graph_def, inputs, outputs: types.SimpleNamespace())
    monkeypatch.setitem(sys.modules, "tensorflow", old)
    assert main(["--output-dir", str(tmp_path / "out")]) == 1
    assert "no optimizations" in one_line_error(capsys)
    assert not (tmp_path / "out").exists()
