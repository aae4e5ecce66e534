"""What a job reads first: the defaults filled in, the model checked against its preprocessing, the data."""

import numpy as np
import pytest

from tflite_opt.core import default_data
from tflite_opt.core.config import ClusterConfig, ConvertConfig, Mode, PruneConfig, QatConfig
from tflite_opt.core.errors import DataError, UsageError
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.jobs.inputs import Inputs, labels_for, load_classifier, load_inputs, resolve_defaults


def test_the_embedded_default_fills_model_data_and_preprocessing():
    config = resolve_defaults(ConvertConfig(prune=PruneConfig()).inputs)
    assert config.model_path == default_data.MODEL_PATH and config.model_name == "mnist_cnn"
    assert config.representative_data == default_data.CALIBRATION_DIR and config.eval_data == default_data.EVAL_DIR
    assert config.train_data == default_data.TRAIN_FILE and config.preprocessing == default_data.PREPROCESSING
    assert resolve_defaults(ConvertConfig().inputs).train_data is None  # no pruning, no training data


@pytest.mark.parametrize(
    ("fine_tuning", "what"),
    [
        ({"prune": PruneConfig()}, "pruning"),
        ({"cluster": ClusterConfig(16)}, "clustering"),
        ({"qat": QatConfig()}, "quantization-aware training"),
    ],
)
def test_every_fine_tuning_gets_training_data_or_asks_for_it(fine_tuning, what, saved_tiny_model, tmp_path):
    assert resolve_defaults(ConvertConfig(**fine_tuning).inputs).train_data == default_data.TRAIN_FILE
    user = ConvertConfig(model_path=saved_tiny_model, representative_data=tmp_path, **fine_tuning)
    with pytest.raises(UsageError, match=f"{what} fine-tunes the model and needs labelled training data"):
        resolve_defaults(user.inputs)


def test_a_user_model_gets_plain_pixel_scaling_and_no_default_data(saved_tiny_model, tmp_path):
    config = resolve_defaults(ConvertConfig(model_path=saved_tiny_model, modes=(Mode.FLOAT32,)).inputs)
    assert config.preprocessing == Preprocessing() and config.eval_data is None and config.model_name == "tiny"
    with pytest.raises(UsageError, match="--full-int8 needs calibration data for your model"):
        resolve_defaults(ConvertConfig(model_path=saved_tiny_model).inputs)


@pytest.mark.slow
def test_preprocessing_for_another_channel_count_is_refused(saved_tiny_model):
    config = ConvertConfig(model_path=saved_tiny_model, preprocessing=Preprocessing.from_mean_std((1, 2, 3), (1,)))
    with pytest.raises(UsageError, match="3 scale and 3 offset values; tiny takes 1 channels"):
        load_classifier(config.inputs)


@pytest.mark.slow
def test_inputs_load_as_the_config_says_and_know_what_the_model_saw(saved_tiny_model, digit_folders, tmp_path):
    calibration, evaluation = digit_folders
    config = ConvertConfig(
        model_path=saved_tiny_model,
        representative_data=calibration,
        eval_data=evaluation,
        num_calibration_samples=10,
        preprocessing=Preprocessing(),
    )
    _, spec = load_classifier(config.inputs)
    inputs = load_inputs(config.inputs, spec)
    assert len(inputs.calibration) == 10 and inputs.train is None and len(inputs.evaluation) == 40
    assert set(inputs.seen()) == {"calibration"} and len(inputs.seen()["calibration"]) == 10


@pytest.mark.slow
def test_training_labels_the_model_has_no_class_for_are_refused(saved_tiny_model, tmp_path):
    np.savez(tmp_path / "train.npz", x=np.zeros((4, 12, 12), np.uint8), y=np.array([0, 1, 2, 12]))
    config = ConvertConfig(model_path=saved_tiny_model, modes=(Mode.FLOAT32,), train_data=tmp_path / "train.npz")
    _, spec = load_classifier(resolve_defaults(config.inputs))
    with pytest.raises(DataError, match="labels run from 0 to 12, but tiny has 10 classes"):
        load_inputs(config.inputs, spec)


def test_bundle_labels_are_the_names_found_then_the_indices_of_the_rest():
    assert labels_for(Inputs(None, None, None, labels=("cat", "dog")), 2) == ["cat", "dog"]
    assert labels_for(Inputs(None, None, None), 3) == ["0", "1", "2"]
    assert labels_for(Inputs(None, None, None, labels=("cat", "dog")), 3) == ["cat", "dog", "2"]
    with pytest.raises(DataError, match="3 class folders for a model with 2 classes"):
        labels_for(Inputs(None, None, None, labels=("a", "b", "c")), 2)
