"""Simulated stacks: each gets the right verdict and exit code, never a traceback."""

import sys
import types

import pytest

from tflite_opt.core import keras2
from tflite_opt.core.errors import StackError
from tflite_opt.jobs import version_check
from tflite_opt.jobs.version_check import Status, exit_code, preflight, run_checks


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


def test_missing_litert_falls_back_to_tf_lite_interpreter_with_a_warning(monkeypatch):
    keras2.tf  # noqa: B018  (the real TensorFlow, which has tf.lite.Interpreter)
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    results = run_checks()
    interpreter = by_name(results)["interpreter"]
    assert interpreter.status is Status.WARN and "deprecated tf.lite.Interpreter" in interpreter.detail
    assert exit_code(results) == 0 and exit_code(results, strict=True) == 1


def test_neither_interpreter_fails(monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    tf = fake_tf_1_12()
    monkeypatch.setitem(sys.modules, "tensorflow", tf)
    assert by_name(run_checks())["interpreter"].status is Status.FAIL


def test_no_tensorflow_at_all_fails_and_says_so_last(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    results = run_checks()
    assert by_name(results)["tensorflow"].status is Status.FAIL
    assert by_name(results)["tensorflow"].detail == "TensorFlow is not installed"
    assert exit_code(results) == 1
    last = version_check.format_results(results).splitlines()[-1]
    assert last.startswith("version-check: FAIL: TensorFlow is not installed")


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


def test_the_installed_stack_passes_and_preflight_stays_silent():
    results = run_checks()
    assert exit_code(results) == 0
    # tf-keras's .h5 behaviour is guarded by the tool's own inspection: said, not a warning that fails --strict.
    safety = by_name(results)["model-file safety"]
    assert safety.status is Status.OK and "refuses code, so its own loads are safe" in safety.detail
    assert exit_code(results, strict=True) == 0
    assert {r.name for r in results} >= {"python", "tensorflow", "tflite converter", "tf-keras", "interpreter"}
    assert preflight() == []  # the model-file advisory is left out: convert inspects every file itself


def test_preflight_raises_a_stack_error_naming_what_fails(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", fake_tf_1_12())
    with pytest.raises(StackError, match="no optimizations") as failed:
        preflight()
    assert failed.value.exit_code == 1


@pytest.mark.parametrize(
    ("keras_version", "status", "said"),
    [
        (None, Status.WARN, "model files saved by Keras 3 cannot be read"),
        ("3.99.0", Status.WARN, "checked with Keras 3.15 only"),
    ],
)
def test_keras3_is_reported_with_whether_the_translation_covers_it(monkeypatch, keras_version, status, said):
    if keras_version is None:
        monkeypatch.setitem(sys.modules, "keras", None)
    else:
        keras = types.ModuleType("keras")
        keras.__version__ = keras_version
        monkeypatch.setitem(sys.modules, "keras", keras)
    keras3 = by_name(run_checks())["keras 3"]
    assert keras3.status is status and said in keras3.detail


def test_the_installed_keras3_is_covered_by_the_translation():
    keras3 = by_name(run_checks())["keras 3"]
    assert keras3.status is Status.OK and "--prune translates them" in keras3.detail
