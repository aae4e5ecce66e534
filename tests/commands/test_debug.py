"""``python -m tflite_opt.debug``: flags → what the job receives, the table or JSON printed, one-line errors (the
job stubbed); the ranked table and JSON of a real model end to end."""

import json
import types
from pathlib import Path

import pytest
from helpers import one_line_error

from tflite_opt import debug
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.debug import main

REPORT = types.SimpleNamespace(
    model="m",
    samples=20,
    errors=("squash error", "logits error"),
    to_dict=lambda: {"model": "m", "samples": 20, "layers": [{"layer": "squash", "relative_error": 0.5}]},
)


@pytest.fixture
def job(stub):
    stub(debug, "format_error_table", result="the table")
    return stub(debug, "run_layer_errors", result=REPORT)


MODEL_AND_DATA = (
    "model_path",
    "representative_data",
    "preprocessing",
    "num_calibration_samples",
    "seed",
    "allow_unsafe_deserialization",
)


def model_and_data(config) -> dict:
    """What the flags set in the job's configuration: the model, the calibration data and how it is read."""
    return {name: getattr(config, name) for name in MODEL_AND_DATA}


def test_without_flags_the_default_model_is_measured_per_channel_with_nothing_in_float(job):
    assert main([]) == 0
    received = dict(job.received)
    assert model_and_data(received.pop("config")) == dict(
        zip(MODEL_AND_DATA, (None, None, None, 200, 0, False), strict=True)
    )
    assert received == {"per_tensor": False, "float_layers": [], "progress": True}


def test_every_flag_reaches_the_job(job):
    args = ["--model", "m.keras", "--representative-data", "cal", "--num-calibration-samples", "20", "--seed", "4"]
    args += ["--allow-unsafe-deserialization", "--mean", "127.5", "--std", "127.5", "--per-tensor"]
    assert main([*args, "--float-layers", "squash,logits"]) == 0
    received = dict(job.received)
    assert model_and_data(received.pop("config")) == {
        "model_path": Path("m.keras"),
        "representative_data": Path("cal"),
        "preprocessing": Preprocessing.from_mean_std(127.5, 127.5),
        "num_calibration_samples": 20,
        "seed": 4,
        "allow_unsafe_deserialization": True,
    }
    assert received == {"per_tensor": True, "float_layers": ["squash", "logits"], "progress": True}


def test_the_error_table_of_the_jobs_report_is_printed(stub, capsys):
    table = stub(debug, "format_error_table", result="the table")
    stub(debug, "run_layer_errors", result=REPORT)
    assert main([]) == 0
    assert capsys.readouterr().out == "the table\n"
    assert table.received == {"errors": REPORT.errors, "model_name": "m", "samples": 20}


def test_json_prints_the_reports_dict_and_no_table(job, capsys):
    assert main(["--json"]) == 0
    assert json.loads(capsys.readouterr().out) == REPORT.to_dict()


def test_a_typed_error_from_the_job_is_one_line_and_its_exit_code(stub, typed_error, capsys):
    error_class, code = typed_error
    stub(debug, "run_layer_errors", error=error_class("--float-layers: m has no layer nosuch"))
    assert main(["--float-layers", "nosuch"]) == code
    assert one_line_error(capsys) == "error: --float-layers: m has no layer nosuch"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--num-calibration-samples", "0"], "num-calibration-samples"),
        (["--std", "-1"], "std must be positive"),
        (["--io-type", "uint8"], "Unknown command line flag 'io-type'"),
    ],
)
def test_bad_flags_exit_2_with_one_line_before_the_job_runs(job, flags, message, capsys):
    assert main(flags) == 2
    assert message in one_line_error(capsys)
    assert job.calls == []


@pytest.mark.slow
def test_the_ranked_table_and_json(outlier_model, outlier_data, capsys):
    """End to end."""
    common = ["--model", str(outlier_model), "--representative-data", str(outlier_data / "calibration")]
    assert main([*common, "--input-scale", str(1 / 255)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("outlier_model: int8 error per layer on 100 calibration samples")
    assert table[3].split()[0] == "squash"

    assert main([*common, "--input-scale", str(1 / 255), "--float-layers", "squash", "--json"]) == 0
    layers = json.loads(capsys.readouterr().out)["layers"]
    assert "squash" not in [e["layer"] for e in layers]  # kept in float, so not measured
    assert max(e["relative_error"] for e in layers) < 0.1
