"""Per-layer int8 error: the layer that quantizes badly is ranked first, and named by its Keras layer."""

import numpy as np
import pytest

from tflite_opt.core import keras2
from tflite_opt.core.errors import ConversionError
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.core.tflite_file import read_tflite
from tflite_opt.results.search import LayerError
from tflite_opt.stages.convert import calibrate_keras
from tflite_opt.stages.data import ImageSize, load_dataset
from tflite_opt.stages.layer_errors import float_nodes, format_error_table, layer_nodes, quantization_errors
from tflite_opt.stages.load import load_keras_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def calibrated_outlier(outlier_model, outlier_data):
    model = load_keras_model(outlier_model)
    samples = load_dataset(outlier_data / "calibration", ImageSize(28, 28, 1)).model_input(Preprocessing())
    return calibrate_keras(model, samples, False), samples, [layer.name for layer in model.layers]


def test_the_debugger_ranks_the_layer_with_extreme_activations_first(calibrated_outlier):
    calibrated, samples, layers = calibrated_outlier
    errors = quantization_errors(calibrated, samples, layers)
    assert errors[0].layer == "squash"
    assert set(errors[0].operators) == {"FULLY_CONNECTED", "TANH"}
    assert errors[0].relative_error > 0.5
    conv = next(e for e in errors if e.layer == "conv")
    assert conv.relative_error < 0.05
    assert 0.1 < conv.rmse_over_scale < 0.5  # plain rounding is 0.29


def test_a_layer_kept_in_float_is_not_measured_and_the_rest_recover(calibrated_outlier):
    calibrated, samples, layers = calibrated_outlier
    errors = quantization_errors(calibrated, samples, layers, float_layers=["squash"])
    assert "squash" not in [e.layer for e in errors]
    assert max(e.relative_error for e in errors) < 0.1


def test_each_layer_is_mapped_to_the_outputs_of_its_operators(calibrated_outlier):
    calibrated, _, layers = calibrated_outlier
    nodes = layer_nodes(read_tflite(calibrated), layers)
    assert {"conv", "squash", "logits"} <= set(nodes)
    assert {op for op, _ in nodes["squash"]} == {"FULLY_CONNECTED", "TANH"}
    assert float_nodes(nodes, ["squash"]) == [output for _, output in nodes["squash"]]
    with pytest.raises(ConversionError, match="no operator of layer\\(s\\) nosuch"):
        float_nodes(nodes, ["nosuch"])


def test_the_layer_error_table_lists_layers_worst_first_aligned():
    errors = (
        LayerError("squash", ("FULLY_CONNECTED", "TANH"), 0.18, 1.0, 40.0, 32, 3),
        LayerError("conv", ("CONV_2D",), 0.29, 0.0057, 0.02, 5408, 0),
    )
    lines = format_error_table(errors, "m", 100).splitlines()
    assert lines[0] == "m: int8 error per layer on 100 calibration samples, worst first"
    assert lines[3].split() == ["squash", "FULLY_CONNECTED,TANH", "100.00%", "0.180", "40"]
    assert lines[4].split() == ["conv", "CONV_2D", "0.57%", "0.290", "0.02"]
    assert len({len(line) for line in lines[1:5]}) == 1  # aligned columns


def test_a_convolution_fused_with_the_next_layers_activation_is_named_after_both_the_convolution_first():
    """The converter folds Activation("relu") into the CONV_2D before it: the operator carries both layers; the
    table names the convolution (whose weights it holds), and either name keeps it in float."""
    keras = keras2.keras
    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Activation("relu", name="activation_1")(keras.layers.Conv2D(4, 3, name="conv2d_1")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, name="scores")(keras.layers.Flatten(name="flatten")(x)))
    samples = np.random.default_rng(0).uniform(0, 1, (8, 12, 12, 1)).astype(np.float32)
    calibrated = calibrate_keras(model, samples, False)
    names = [layer.name for layer in model.layers]
    errors = quantization_errors(calibrated, samples, names)
    conv = next(e for e in errors if "CONV_2D" in e.operators)
    assert (conv.layer, conv.carries) == ("conv2d_1", ("activation_1",))
    assert "conv2d_1 (+activation_1)" in format_error_table(errors, "fused", 8)
    nodes = layer_nodes(read_tflite(calibrated), names)
    assert float_nodes(nodes, ["activation_1"]) == float_nodes(nodes, ["conv2d_1"])
    assert [op for op, _ in nodes["conv2d_1"]] == ["CONV_2D"]
