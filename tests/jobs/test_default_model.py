"""The embedded default: the shipped model files are the architectures built in code, trained."""

import numpy as np
import pytest

from tflite_opt.core import default_data
from tflite_opt.jobs.default_model import BUILDERS, build_mobilenet, build_model
from tflite_opt.jobs.inputs import seen_digests
from tflite_opt.stages.data import ImageSize, load_dataset
from tflite_opt.stages.load import load_keras_model

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", list(BUILDERS))
def test_each_shipped_model_is_its_builders_architecture_with_trained_weights(name):
    build, path = BUILDERS[name]
    shipped, fresh = load_keras_model(path), build()
    assert [layer.name for layer in shipped.layers] == [layer.name for layer in fresh.layers]
    assert [w.shape for w in shipped.get_weights()] == [w.shape for w in fresh.get_weights()]
    assert any(not np.allclose(a, b) for a, b in zip(shipped.get_weights(), fresh.get_weights(), strict=True))


def test_the_reference_models_have_the_documented_sizes():
    assert 125_000 < build_model().count_params() < 135_000  # "~131k weights" (WORKSPACE.md)
    mobilenet = build_mobilenet()
    assert 65_000 < mobilenet.count_params() < 80_000  # "~73k weights"
    assert any(type(layer).__name__ == "DepthwiseConv2D" for layer in mobilenet.layers)


def test_the_shipped_data_keeps_evaluation_apart_from_training_and_calibration():
    size = ImageSize(28, 28, 1)
    evaluation = load_dataset(default_data.EVAL_DIR, size, require_labels=True)
    seen = seen_digests(
        training=load_dataset(default_data.TRAIN_FILE, size),
        calibration=load_dataset(default_data.CALIBRATION_DIR, size),
    )
    digests = seen_digests(evaluation=evaluation)["evaluation"]
    assert len(evaluation) == 1000 and np.bincount(evaluation.labels).tolist() == [100] * 10
    assert not digests & seen["training"] and not digests & seen["calibration"]
    assert seen["calibration"] <= seen["training"]  # calibration images are drawn from the training split
