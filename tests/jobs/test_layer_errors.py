"""The per-layer error job: the worst layer first, the layers kept in float left out."""

import pytest
from helpers import keras3

from tflite_opt.core.config import InputConfig
from tflite_opt.core.errors import UsageError
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.jobs.layer_errors import run_layer_errors

pytestmark = pytest.mark.slow


def test_the_outlier_layer_is_first_and_the_report_serializes(outlier_model, outlier_data):
    config = InputConfig(
        model_path=outlier_model, representative_data=outlier_data / "calibration", preprocessing=Preprocessing()
    )
    report = run_layer_errors(config)
    assert report.model == "outlier_model" and report.samples == 100
    assert report.errors[0].layer == "squash"
    saved = report.to_dict()
    assert [e["layer"] for e in saved["layers"]] == [e.layer for e in report.errors]
    kept = run_layer_errors(config, float_layers=["squash"])
    assert "squash" not in [e.layer for e in kept.errors]


def test_a_float_layer_the_model_lacks_is_refused(outlier_model, outlier_data):
    config = InputConfig(model_path=outlier_model, representative_data=outlier_data / "calibration")
    with pytest.raises(UsageError, match="outlier_model has no layer nosuch"):
        run_layer_errors(config, float_layers=["nosuch"])


def test_the_embedded_default_is_measured_without_arguments():
    report = run_layer_errors(InputConfig(num_calibration_samples=20))
    assert report.model == "mnist_cnn" and report.samples == 20
    # A convolution fused with its BatchNorm and ReLU is named after the convolution, carrying the other two.
    assert {e.layer for e in report.errors} >= {"conv1", "conv2", "conv3", "fc1", "probabilities"}
    conv1 = next(e for e in report.errors if e.layer == "conv1")
    assert set(conv1.carries) == {"bn1", "relu1"} and "relu1" not in {e.layer for e in report.errors}
    assert all(e.relative_error < 0.2 for e in report.errors)  # the default quantizes well


def test_a_keras3_model_names_its_own_layers_though_keras3_renames_their_scopes(outlier_data, tmp_path):
    # Default names: Keras 3 traces layer dense under the scope dense_1 and layer dense_1 under dense_1_2.
    keras = keras3()
    keras.backend.clear_session()  # default names count from zero again, whatever ran before in this process
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(keras.layers.MaxPooling2D(2)(x))
    squash = keras.layers.Dense(32, activation="tanh")
    logits = keras.layers.Dense(10)
    model = keras.Model(inputs, logits(squash(x)))
    kernel, bias = squash.get_weights()
    bias[0] = 1e4  # the outlier (see build_outlier_model), in the layer named "dense"
    squash.set_weights([kernel, bias])
    kernel, bias = logits.get_weights()
    kernel[0] = 0.0
    logits.set_weights([kernel, bias])
    path = tmp_path / "k3_outlier.keras"
    model.save(path)
    config = InputConfig(
        model_path=path, representative_data=outlier_data / "calibration", preprocessing=Preprocessing()
    )
    report = run_layer_errors(config)
    assert (squash.name, logits.name) == ("dense", "dense_1")
    assert report.errors[0].layer == "dense"
    assert {e.layer for e in report.errors} <= {layer.name for layer in model.layers}
