"""Simulated stacks: each gets the right verdict and exit code, never a traceback."""

import json
import subprocess
import sys
import textwrap
import types

import pytest

from tflite_opt import version_check
from tflite_opt.convert import main as convert_main
from tflite_opt.version_check import Status, run_checks


def fake_tf_1_12() -> types.ModuleType:
    """TensorFlow 1.12-like: a converter with post_training_quantize, no optimizations, no tf.lite.Optimize."""

    class TFLiteConverter:
        def __init__(self, graph_def, input_tensors, output_tensors):
            self.post_training_quantize = False
            self.inference_type = None

    tf = types.ModuleType("tensorflow")
    tf.__version__ = "1.12.0"
    tf.lite = types.SimpleNamespace(TFLiteConverter=TFLiteConverter)
    return tf


def fake_tf_2_2() -> types.ModuleType:
    """TensorFlow 2.2-like: post-training quantization, but no int8 input/output types."""

    class TFLiteConverter:
        def __init__(self, funcs, trackable_obj=None):
            self.optimizations = []
            self.representative_dataset = None
            self.target_spec = types.SimpleNamespace(supported_ops={"TFLITE_BUILTINS"})

    tf = types.ModuleType("tensorflow")
    tf.__version__ = "2.2.0"
    tf.lite = types.SimpleNamespace(
        TFLiteConverter=TFLiteConverter,
        Optimize=types.SimpleNamespace(DEFAULT="DEFAULT"),
        OpsSet=types.SimpleNamespace(TFLITE_BUILTINS_INT8="TFLITE_BUILTINS_INT8"),
        Interpreter=object,
    )
    return tf


def by_name(results):
    return {r.name: r for r in results}


def test_installed_stack_passes(capsys):
    assert version_check.main([]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and "ready to convert" in out


def test_json_output_lists_every_check(capsys):
    assert version_check.main(["--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["exit_code"] == 0
    assert {c["name"] for c in payload["checks"]} >= {"python", "tensorflow", "tflite converter", "interpreter"}


def test_tf_1_12_fails_naming_optimizations(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", fake_tf_1_12())
    results = by_name(run_checks())
    converter = results["tflite converter"]
    assert converter.status is Status.FAIL
    assert "no optimizations, tf.lite.Optimize.DEFAULT" in converter.detail
    assert "post_training_quantize" in converter.detail
    assert "2.21" in converter.fix
    assert results["tensorflow"].status is Status.FAIL
    assert results["tf-keras"].fix == version_check.UPGRADE_TF
    assert version_check.exit_code(results.values()) == 1


def test_tf_2_2_fails_naming_the_int8_io_types(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", fake_tf_2_2())
    converter = by_name(run_checks())["tflite converter"]
    assert converter.status is Status.FAIL
    assert "inference_input_type, inference_output_type" in converter.detail
    assert "optimizations" not in converter.detail


def test_keras3_without_tf_keras_fails_and_warns_for_tfmot(monkeypatch):
    keras3 = types.ModuleType("keras")
    keras3.__version__ = "3.15.1"
    monkeypatch.setitem(sys.modules, "keras", keras3)
    monkeypatch.setitem(sys.modules, "tf_keras", None)
    results = by_name(run_checks())
    assert results["tf-keras"].status is Status.FAIL
    assert "tf.keras is Keras 3.15.1" in results["tf-keras"].detail
    assert results["model optimization"].status is Status.WARN
    assert "needs Keras 2" in results["model optimization"].detail


def test_missing_litert_falls_back_to_tf_lite_interpreter_with_a_warning(monkeypatch, capsys):
    import tflite_opt.keras2  # noqa: F401  (the real TensorFlow, which has tf.lite.Interpreter)

    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    interpreter = by_name(run_checks())["interpreter"]
    assert interpreter.status is Status.WARN and "deprecated tf.lite.Interpreter" in interpreter.detail
    assert version_check.main([]) == 0
    assert version_check.main(["--strict"]) == 1


def test_neither_interpreter_fails(monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    tf = fake_tf_1_12()
    monkeypatch.setitem(sys.modules, "tensorflow", tf)
    assert by_name(run_checks())["interpreter"].status is Status.FAIL


def test_no_tensorflow_at_all_fails_without_traceback(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    results = by_name(run_checks())
    assert results["tensorflow"].status is Status.FAIL
    assert results["tensorflow"].detail == "TensorFlow is not installed"
    assert version_check.main([]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert captured.out.strip().splitlines()[-1].startswith("version-check: FAIL: TensorFlow is not installed")


@pytest.mark.parametrize(
    "keras_version, advisory",
    [("3.8.0", "CVE-2025-1550"), ("3.11.2", "CVE-2025-9905"), ("3.13.1", "CVE-2026-1462"), ("2.12.0", "CVE-2024-3660")],
)
def test_keras_versions_with_safe_mode_bypasses_are_warned(monkeypatch, keras_version, advisory):
    keras = types.ModuleType("keras")
    keras.__version__ = keras_version
    monkeypatch.setitem(sys.modules, "keras", keras)
    safety = by_name(run_checks())["model-file safety"]
    assert safety.status is Status.WARN and advisory in safety.detail


def test_a_check_that_cannot_run_is_reported_not_raised(monkeypatch):
    def broken():
        raise RuntimeError("probe exploded")

    monkeypatch.setattr(version_check, "check_python", broken)
    python = by_name(run_checks())["python"]
    assert python.status is Status.WARN and "could not run: RuntimeError: probe exploded" in python.detail


def test_convert_stops_on_a_failed_preflight_with_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "tensorflow", fake_tf_1_12())
    assert convert_main(["--output-dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no optimizations" in err
    assert not (tmp_path / "out").exists()


def test_tf_1_12_package_on_the_path_exits_1_with_one_line_naming_optimizations(tmp_path):
    """Done-when of the version check, as a user would run it."""
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
