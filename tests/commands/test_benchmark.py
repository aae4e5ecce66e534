"""``python -m tflite_opt.benchmark``: flags → what the job receives, the table printed, one-line errors (the job
stubbed); one real benchmark end to end, and broken or hostile files refused in one line."""

import json
import types
from pathlib import Path

import pytest
from helpers import CORPUS, one_line_error

from tflite_opt import benchmark
from tflite_opt.benchmark import main
from tflite_opt.core import default_data
from tflite_opt.core.config import BenchmarkSettings
from tflite_opt.core.preprocessing import Preprocessing

BROKEN_MODELS = sorted(p for p in (CORPUS / "tflite").glob("*.tflite") if p.name != "valid.tflite")
REPORT = types.SimpleNamespace(model="stub")


@pytest.fixture
def job(stub):
    """run_benchmark stubbed; format_table stubbed to "the table"."""
    stub(benchmark, "format_table", result="the table")
    return stub(benchmark, "run_benchmark", result=REPORT)


def test_no_flags_give_the_job_its_defaults(job):
    assert main([]) == 0
    assert job.received == {
        "model_paths": [],
        "output_dir": Path("artifacts/benchmark"),
        "eval_data": None,
        "keras_model_path": None,
        "preprocessing": None,
        "settings": BenchmarkSettings(),
        "seen_data": {},
        "overwrite": False,
        "progress": True,
        "allow_unsafe": False,
        "labels_file": None,
    }


def test_every_flag_reaches_the_job(job):
    args = ["--model", "m.float32.tflite", "--model=m.int8.tflite", "--keras-model", "m.keras", "--eval-data", "ev"]
    args += ["--labels", "labels.txt", "--calibration-data", "cal", "--train-data", "train.npz"]
    args += ["--mean", "127.5", "--std", "127.5", "--num-runs", "20", "--warmup-runs", "0", "--num-threads", "2"]
    args += ["--noxnnpack", "--eval-batch-size", "16", "--accuracy-budget", "2", "--output-dir", "out", "--overwrite"]
    assert main([*args, "--allow-unsafe-deserialization"]) == 0
    assert job.received == {
        "model_paths": [Path("m.float32.tflite"), Path("m.int8.tflite")],
        "output_dir": Path("out"),
        "eval_data": Path("ev"),
        "keras_model_path": Path("m.keras"),
        "preprocessing": Preprocessing.from_mean_std(127.5, 127.5),
        "settings": BenchmarkSettings(
            num_runs=20, warmup_runs=0, num_threads=2, use_xnnpack=False, batch_size=16, accuracy_budget=2.0
        ),
        "seen_data": {"calibration": Path("cal"), "training": Path("train.npz")},
        "overwrite": True,
        "progress": True,
        "allow_unsafe": True,
        "labels_file": Path("labels.txt"),
    }


def test_only_the_data_given_is_passed_as_seen(job):
    assert main(["--model", "m.tflite", "--train-data", "train.npz"]) == 0
    assert job.received["seen_data"] == {"training": Path("train.npz")}


def test_convert_s_name_for_the_calibration_data_works_too(job):
    assert main(["--model", "m.tflite", "--representative-data", "cal"]) == 0
    assert job.received["seen_data"] == {"calibration": Path("cal")}


def test_the_table_of_the_jobs_report_is_printed(stub, capsys):
    table = stub(benchmark, "format_table", result="the table")
    stub(benchmark, "run_benchmark", result=REPORT)
    assert main(["--model", "m.tflite"]) == 0
    assert capsys.readouterr().out == "the table\n"
    assert table.received["report"] is REPORT


def test_a_typed_error_from_the_job_is_one_line_and_its_exit_code(stub, typed_error, capsys):
    error_class, code = typed_error
    stub(benchmark, "run_benchmark", error=error_class("eval/3/digit_001.png is also in the calibration data"))
    assert main(["--model", "m.tflite"]) == code
    assert one_line_error(capsys) == "error: eval/3/digit_001.png is also in the calibration data"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--num-runs", "1"], "--num-runs must be at least 2"),
        (["--warmup-runs", "-1"], "--warmup-runs must not be negative"),
        (["--num-threads", "0"], "--num-threads must be at least 1"),
        (["--eval-batch-size", "0"], "--eval-batch-size must be at least 1"),
        (["--accuracy-budget", "9"], "--accuracy-budget must be between 0 and 5.0 points"),
        (["--mean", "1", "--input-scale", "2"], "not both"),
        (["--num-runs", "many"], "num-runs"),
    ],
)
def test_bad_measurement_settings_exit_2_before_the_job_runs(job, flags, message, capsys):
    assert main(["--model", "m.tflite", *flags]) == 2
    assert message in one_line_error(capsys)
    assert job.calls == []


# Real runs: the one end to end test of the command, then job behaviour that only these tests check.


@pytest.mark.slow
def test_the_table_lists_every_model_given(bundle_dir, tmp_path, capsys):
    models = [f"--model={bundle_dir / f'mnist_cnn.{v}.tflite'}" for v in ("float32", "int8")]
    args = [*models, "--keras-model", str(default_data.MODEL_PATH), "--eval-data", str(default_data.EVAL_DIR)]
    assert main([*args, "--num-runs", "10", "--output-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    report = json.loads((tmp_path / "report.json").read_text())
    assert lines[0].startswith("mnist_cnn: top-1 on 1000 held-out images") and "median of 10 runs" in lines[0]
    assert [line.split()[0] for line in lines[3:6]] == ["keras", "float32", "int8"]
    assert lines[5].split()[-1] in ("good", "marginal", "bad", "*")
    assert report["variants"][1]["latency_ms"]["p50"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("path", BROKEN_MODELS, ids=lambda p: p.name)
def test_broken_models_are_refused_in_one_line_and_never_crash(path, tmp_path, capsys):
    """Every corpus file but valid.tflite is broken (truncated, bit-flipped, not a model, or a fuzz finding)."""
    args = [f"--model={path}", "--num-runs", "3", "--warmup-runs", "0", "--output-dir", str(tmp_path)]
    assert main(args) == 2
    err = one_line_error(capsys)
    assert err.startswith("error: ") and path.name in err
    assert not (tmp_path / "report.json").exists()
