"""Every mode on Sequential and Functional tiny models, calibration then quantization, and converter failures."""

import numpy as np
import pytest
from helpers import INPUT_SIZE, build_functional, build_sequential

from tflite_opt.core import keras2
from tflite_opt.core.config import IoType, Mode, PruneConfig
from tflite_opt.core.errors import ConversionError
from tflite_opt.core.interpreter import TfliteRunner
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.core.tflite_file import read_tflite
from tflite_opt.stages.convert import (
    calibrate_keras,
    choose_pixel_input,
    convert_keras,
    convert_pixel_input,
    pixel_input_model,
    predicted_input_quantization,
    prefer_pixel_input,
    quantize_calibrated,
    rounding_ties,
)
from tflite_opt.stages.data import ImageSize, load_dataset
from tflite_opt.stages.load import load_keras_model
from tflite_opt.stages.prune import prune_model
from tflite_opt.stages.verify import float_operators, pixel_input_check, sparsity_check, verify_variant

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


def test_full_int8_without_calibration_is_an_error():
    with pytest.raises(ConversionError, match="needs calibration samples"):
        convert_keras(build_sequential(), Mode.FULL_INT8, None)


def test_converter_failure_becomes_a_conversion_error_naming_the_op():
    keras, tf = keras2.keras, keras2.tf
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(tf.math.erf, name="erf")(inputs)
    model = keras.Model(inputs, outputs, name="with_erf")
    with pytest.raises(ConversionError, match="float32 conversion of with_erf failed: 'tf.Erf' op"):
        convert_keras(model, Mode.FLOAT32)


def test_quantizing_the_calibrated_model_gives_the_converters_int8_model(outlier_model, outlier_data):
    model = load_keras_model(outlier_model)
    samples = load_dataset(outlier_data / "calibration", ImageSize(28, 28, 1)).model_input(Preprocessing())
    direct = convert_keras(model, Mode.FULL_INT8, samples, progress=False)
    two_steps = quantize_calibrated(calibrate_keras(model, samples, False))
    ops = [[op.name for op in read_tflite(content).operators] for content in (direct, two_steps)]
    assert ops[0] == ops[1]
    np.testing.assert_array_equal(TfliteRunner(direct).predict(samples), TfliteRunner(two_steps).predict(samples))


def test_float_nodes_stay_float_when_quantizing_a_calibrated_model():
    model = build_sequential()
    calibrated = calibrate_keras(model, calibration_samples(), False)
    hidden_outputs = [t.name for t in read_tflite(calibrated).tensors if "hidden" in t.name and not t.is_constant]
    parsed = read_tflite(quantize_calibrated(calibrated, float_nodes=hidden_outputs[:1]))
    layers = [layer.name for layer in model.layers]
    assert [op.name for op in float_operators(parsed) if op.name == "FULLY_CONNECTED"] == ["FULLY_CONNECTED"]
    assert verify_variant(parsed, Mode.FULL_INT8, IoType.INT8, layers, float_layers=("hidden",)).passed


def test_sparse_format_is_read_back_and_runs_without_xnnpack():
    samples = calibration_samples(count=64)
    labels = np.arange(64) % 10
    config = PruneConfig(target_sparsity=0.8, epochs=2, batch_size=8, learning_rate=1e-3, min_steps=0)
    result = prune_model(build_sequential(), samples, labels, config)
    dense = convert_keras(result.model, Mode.FULL_INT8, samples, progress=False)
    sparse = convert_keras(result.model, Mode.FULL_INT8, samples, progress=False, sparse_weights=True)
    parsed = read_tflite(sparse)
    assert any(t.is_sparse for t in parsed.tensors)
    assert len(sparse) < len(dense)
    expected = {layer.layer: layer.sparsity for layer in result.stats.layers}
    assert sparsity_check(parsed, expected).passed
    runner = TfliteRunner(sparse, batch_size=4)
    scores = runner.predict(samples[:6])
    np.testing.assert_array_equal(
        np.argmax(scores, axis=1), np.argmax(TfliteRunner(dense, batch_size=4).predict(samples[:6]), axis=1)
    )
    assert runner.delegate.startswith("none")


def test_a_uint8_model_from_the_calibrated_one_has_uint8_io():
    calibrated = calibrate_keras(build_sequential(), calibration_samples(), False)
    parsed = read_tflite(quantize_calibrated(calibrated, IoType.UINT8))
    assert parsed.input_tensors()[0].dtype == parsed.output_tensors()[0].dtype == "UINT8"
    assert verify_variant(parsed, Mode.FULL_INT8, IoType.UINT8).passed


@pytest.mark.parametrize("low, high", [(0.0, 1.0), (-1.0, 1.0), (-2.1179, 2.64), (0.2, 0.9), (-0.5, 3.3)])
def test_the_predicted_input_quantization_is_the_converters(low, high):
    samples = np.random.default_rng(0).uniform(low, high, (16, INPUT_SIZE, INPUT_SIZE, 1)).astype(np.float32)
    samples[0, 0, 0, 0], samples[0, 0, 1, 0] = low, high
    q = read_tflite(convert_keras(build_sequential(), Mode.FULL_INT8, samples, progress=False)).input_tensors()[0]
    assert predicted_input_quantization(samples) == (q.quantization.scale, q.quantization.zero_point)


def test_mobilenet_normalization_puts_every_pixel_on_a_rounding_tie_and_plain_scaling_none():
    assert rounding_ties(Preprocessing.from_mean_std(127.5, 127.5), 2 / 255, channels=1) == 256
    assert rounding_ties(Preprocessing.from_mean_std(127.5, 127.5), 2 / 255, channels=3) == 768
    assert rounding_ties(Preprocessing(), 1 / 255, channels=1) == 0


@pytest.mark.parametrize(
    ("asked", "io_type", "integer_io", "chosen"),
    [
        (None, IoType.UINT8, True, True),
        (False, IoType.UINT8, True, False),
        (None, IoType.INT8, True, False),
        (True, IoType.INT8, True, True),
        (None, IoType.FLOAT32, False, False),
    ],
)
def test_uint8_input_takes_pixels_unless_told_otherwise(asked, io_type, integer_io, chosen):
    """Plain pixel / 255 puts no pixel on a rounding tie, so only the uint8 rule (or --raw-pixel-input) chooses."""
    samples = np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 8, 8, 1)
    choice = choose_pixel_input(asked, io_type, integer_io, Preprocessing(), samples, 3)
    assert choice.chosen is chosen and choice.ties == 0
    assert choice.uint8_input is (io_type is IoType.UINT8)


def test_pixel_input_ships_unless_the_normalized_input_scored_better():
    assert prefer_pixel_input(1.0, 1.0) and prefer_pixel_input(0.99, 0.98)
    assert not prefer_pixel_input(0.98, 1.0)


@pytest.mark.parametrize("io_type, zero_point", [(IoType.INT8, -128), (IoType.UINT8, 0)])
def test_a_pixel_input_model_takes_pixels_with_scale_one_and_scores_as_the_normalized_one(io_type, zero_point):
    model = build_sequential()
    prep = Preprocessing.from_mean_std(127.5, 127.5)
    pixels = np.random.default_rng(0).integers(0, 256, (32, INPUT_SIZE, INPUT_SIZE, 1)).astype(np.float32)
    wrapped = pixel_input_model(model, prep)
    np.testing.assert_allclose(
        wrapped.predict(pixels, verbose=0), model.predict((pixels - 127.5) / 127.5, verbose=0), rtol=1e-5, atol=1e-6
    )
    parsed = read_tflite(convert_pixel_input(model, prep, pixels, io_type, progress=False))
    q = parsed.input_tensors()[0].quantization
    assert (q.scale, q.zero_point) == (1.0, zero_point)
    assert pixel_input_check(parsed, io_type).passed
    assert verify_variant(parsed, Mode.FULL_INT8, io_type, [layer.name for layer in model.layers]).passed


def test_a_conversion_leaves_no_traced_graph_behind_in_tensorflows_gradient_registry():
    """Swish (tf.nn.silu) registers a gradient function holding the traced graph each time it is traced: each
    conversion of EfficientNetB0 kept 300-450 MB for good before conversions released them."""
    keras = keras2.keras
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 1))
    hidden = keras.layers.Conv2D(4, 3, activation="swish")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(hidden)))
    before = keras2.registered_custom_gradients()
    convert_keras(model, Mode.FULL_INT8, calibration_samples(), progress=False)
    assert keras2.registered_custom_gradients() == before
