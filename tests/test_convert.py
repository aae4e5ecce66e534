"""Every mode on Sequential and Functional tiny models, and the float-fallback catch."""

import numpy as np
import pytest
from conftest import INPUT_SIZE, build_functional, build_sequential

from tflite_opt.benchmark import TfliteRunner
from tflite_opt.config import IoType, Mode
from tflite_opt.convert import convert_keras
from tflite_opt.errors import ConversionError, VerificationError
from tflite_opt.tflite_file import read_tflite
from tflite_opt.verify import float_operators, verify_variant

pytestmark = pytest.mark.slow


def calibration_samples(channels: int = 1, count: int = 16) -> np.ndarray:
    return np.random.default_rng(0).random((count, INPUT_SIZE, INPUT_SIZE, channels), dtype=np.float32)


@pytest.fixture(scope="module", params=["sequential", "functional"])
def tiny_model(request):
    return {"sequential": build_sequential, "functional": build_functional}[request.param]()


@pytest.mark.parametrize("mode", list(Mode))
def test_every_mode_converts_and_passes_verification(tiny_model, mode):
    content = convert_keras(tiny_model, mode, calibration_samples(), progress=False)
    layer_names = [layer.name for layer in tiny_model.layers]
    verification = verify_variant(read_tflite(content), mode, IoType.INT8, layer_names)
    assert verification.passed, [c.line() for c in verification.checks]


def test_full_int8_has_integer_io_and_only_integer_operators(tiny_model):
    parsed = read_tflite(convert_keras(tiny_model, Mode.FULL_INT8, calibration_samples(), progress=False))
    assert {t.dtype for t in parsed.input_tensors() + parsed.output_tensors()} == {"INT8"}
    assert float_operators(parsed) == []
    assert {"CONV_2D", "FULLY_CONNECTED"} <= {op.name for op in parsed.operators}


@pytest.mark.parametrize("io_type", [IoType.UINT8, IoType.FLOAT32])
def test_io_type_sets_the_input_and_output_dtype(io_type):
    model = build_sequential()
    parsed = read_tflite(convert_keras(model, Mode.FULL_INT8, calibration_samples(), io_type, progress=False))
    assert parsed.input_tensors()[0].dtype == parsed.output_tensors()[0].dtype == io_type.value.upper()
    assert verify_variant(parsed, Mode.FULL_INT8, io_type).passed


def test_int8_scores_stay_within_a_few_quantization_steps_of_keras():
    model = build_sequential()
    samples = calibration_samples(count=64)
    content = convert_keras(model, Mode.FULL_INT8, samples, progress=False)
    output_step = read_tflite(content).output_tensors()[0].quantization.scale
    difference = np.abs(model.predict(samples, verbose=0) - TfliteRunner(content, batch_size=16).predict(samples))
    assert float(difference.mean()) < 3 * output_step


def model_with_sin_layer():
    """Dense → sin → Dense: SIN has no int8 kernel, so the converter silently keeps it in float."""
    from tflite_opt.keras2 import keras, tf

    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 1))
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = keras.layers.Dense(16, name="dense_in")(x)
    x = keras.layers.Lambda(tf.math.sin, name="periodic")(x)
    outputs = keras.layers.Dense(10, name="dense_out")(x)
    return keras.Model(inputs, outputs, name="with_sin")


def test_float_fallback_is_caught_naming_the_operator_and_its_layer():
    model = model_with_sin_layer()
    parsed = read_tflite(convert_keras(model, Mode.FULL_INT8, calibration_samples(), progress=False))
    verification = verify_variant(parsed, Mode.FULL_INT8, IoType.INT8, [layer.name for layer in model.layers])
    assert not verification.passed
    with pytest.raises(VerificationError, match=r"SIN \(layer 'periodic'\).*fell back to float"):
        verification.raise_for_failures()


def test_a_float_model_presented_as_int8_fails_the_dtype_checks():
    parsed = read_tflite(convert_keras(build_sequential(), Mode.FLOAT32))
    failed = {c.name for c in verify_variant(parsed, Mode.FULL_INT8).checks if not c.passed}
    assert failed == {"input dtype", "output dtype", "integer-only"}


def test_full_int8_without_calibration_is_an_error():
    with pytest.raises(ConversionError, match="needs calibration samples"):
        convert_keras(build_sequential(), Mode.FULL_INT8, None)


def test_converter_failure_becomes_a_conversion_error_naming_the_op():
    from tflite_opt.keras2 import keras, tf

    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(tf.math.erf, name="erf")(inputs)
    model = keras.Model(inputs, outputs, name="with_erf")
    with pytest.raises(ConversionError, match="float32 conversion of with_erf failed: 'tf.Erf' op"):
        convert_keras(model, Mode.FLOAT32)
