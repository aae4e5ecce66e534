"""``python -m tflite_opt.version_check``: a line per check, JSON for CI, exit codes (the checks stubbed); no
TensorFlow to start; end to end, a TensorFlow 1.12 on the path fails in one line naming what it lacks."""

import json
import subprocess
import sys
import textwrap

import pytest
from helpers import one_line_error

from tflite_opt import version_check
from tflite_opt.jobs.version_check import CheckResult, Status, format_results
from tflite_opt.version_check import main

READY = [
    CheckResult("python", Status.OK, "3.11.9"),
    CheckResult("tensorflow", Status.OK, "2.21.0"),
    CheckResult("model-file safety", Status.WARN, "tf-keras 2.21.0 ignores safe_mode for .h5 files"),
]
BROKEN = [
    CheckResult("python", Status.OK, "3.11.9"),
    CheckResult("tflite converter", Status.FAIL, "no optimizations, tf.lite.Optimize.DEFAULT", "pip install tf"),
]


def test_a_line_per_check_then_the_verdict(stub, capsys):
    checks = stub(version_check, "run_checks", result=READY)
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out == format_results(READY) + "\n"
    assert out.splitlines()[-1] == "version-check: ready to convert (1 warning)"
    assert checks.received == {}


def test_a_warning_fails_only_under_strict(stub):
    stub(version_check, "run_checks", result=READY)
    assert main(["--strict"]) == 1


def test_a_failed_check_exits_1_with_the_verdict_naming_it_last(stub, capsys):
    stub(version_check, "run_checks", result=BROKEN)
    assert main([]) == 1
    captured = capsys.readouterr()
    last = captured.out.splitlines()[-1]
    assert last == "version-check: FAIL: no optimizations, tf.lite.Optimize.DEFAULT" and captured.err == ""


@pytest.mark.parametrize(
    "results, flags, code", [(READY, [], 0), (READY, ["--strict"], 1), (BROKEN, [], 1)], ids=["ready", "strict", "fail"]
)
def test_json_lists_every_check_with_the_exit_code(stub, results, flags, code, capsys):
    stub(version_check, "run_checks", result=results)
    assert main(["--json", *flags]) == code
    payload = json.loads(capsys.readouterr().out)
    assert payload == {"schema_version": 1, "exit_code": code, "checks": [r.to_dict() for r in results]}
    assert payload["checks"][-1]["status"] == results[-1].status.value


def test_a_typed_error_is_one_line_and_its_exit_code(stub, typed_error, capsys):
    error_class, code = typed_error
    stub(version_check, "run_checks", error=error_class("the checks could not run"))
    assert main([]) == code
    assert one_line_error(capsys) == "error: the checks could not run"


def test_an_unknown_flag_exits_2_before_checking(stub, capsys):
    checks = stub(version_check, "run_checks", result=READY)
    assert main(["--yaml"]) == 2
    assert "Unknown command line flag 'yaml'" in one_line_error(capsys)
    assert checks.calls == []


@pytest.mark.slow
def test_tf_1_12_package_on_the_path_exits_1_with_one_line_naming_optimizations(tmp_path):
    """End to end: the done-when of the version check, as a user would run it."""
    package = tmp_path / "fake" / "tensorflow"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('__version__ = "1.12.0"\nfrom tensorflow import lite\n')
    (package / "lite.py").write_text(
        textwrap.dedent(
            """
            class TFLiteConverter:
                def __init__(self, graph_def, input_tensors, output_tensors):
                    self.post_training_quantize = False
            """
        )
    )
    env = {"PYTHONPATH": str(tmp_path / "fake"), "PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        [sys.executable, "-m", "tflite_opt.version_check"], capture_output=True, text=True, env=env, timeout=120
    )
    assert run.returncode == 1
    assert "Traceback" not in run.stdout + run.stderr
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith("version-check: FAIL:") and "optimizations" in last


def test_importing_the_version_check_loads_no_tensorflow():
    code = "import sys, tflite_opt.version_check; print('tensorflow' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "False"
