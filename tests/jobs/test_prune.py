"""The prune job: a stripped, sparse model saved where asked, never over an existing file."""

import json
import zipfile

import pytest

from tflite_opt.core.config import PruneConfig
from tflite_opt.core.errors import OutputExistsError, UsageError
from tflite_opt.core.keras3 import is_keras3_model
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.jobs.prune import default_output, run_prune
from tflite_opt.stages.load import load_keras_model
from tflite_opt.stages.prune import layer_sparsity

pytestmark = pytest.mark.slow
FAST = PruneConfig(target_sparsity=0.5, epochs=2, batch_size=8, learning_rate=5e-4, min_steps=0)


def test_the_saved_model_is_stripped_and_as_sparse_as_reported(saved_tiny_model, digit_folders, tmp_path):
    _, evaluation = digit_folders
    stats, output = run_prune(FAST, saved_tiny_model, evaluation, output=tmp_path / "tiny.pruned.keras")
    assert output == tmp_path / "tiny.pruned.keras"
    reloaded = {layer.layer: layer.sparsity for layer in layer_sparsity(load_keras_model(output))}
    assert reloaded.pop("depthwise") == 0.0  # tfmot does not prune DepthwiseConv2D
    assert reloaded == pytest.approx({layer.layer: layer.sparsity for layer in stats.layers})
    assert all(abs(sparsity - 0.5) <= 0.01 for sparsity in reloaded.values())
    with pytest.raises(OutputExistsError, match="exists; pass --overwrite"):
        run_prune(FAST, saved_tiny_model, evaluation, output=output)


def test_a_user_model_needs_training_data_and_a_keras_file_name(saved_tiny_model, tmp_path):
    with pytest.raises(UsageError, match="pass --train-data"):
        run_prune(FAST, saved_tiny_model, output=tmp_path / "x.keras")
    with pytest.raises(UsageError, match="--output must end in .keras"):
        run_prune(FAST, saved_tiny_model, tmp_path, output=tmp_path / "x.h5")


def test_the_default_output_is_named_after_the_model_and_sparsity(saved_tiny_model):
    assert str(default_output(saved_tiny_model, PruneConfig(target_sparsity=0.8))) == "artifacts/tiny.pruned80.keras"
    assert str(default_output(None, PruneConfig(target_sparsity=0.5))) == "artifacts/mnist_cnn.pruned50.keras"


def test_a_keras3_model_comes_back_as_a_keras3_file_pruned(keras3_models, outlier_data, tmp_path):
    stats, output = run_prune(
        FAST, keras3_models["sequential"], outlier_data / "train.npz", Preprocessing(), tmp_path / "k3.pruned50.keras"
    )
    with zipfile.ZipFile(output) as archive:
        assert json.loads(archive.read("metadata.json"))["keras_version"].startswith("3.")
    reloaded = load_keras_model(output)
    assert is_keras3_model(reloaded)
    found = {layer.layer: layer.sparsity for layer in layer_sparsity(reloaded)}
    assert found == pytest.approx({layer.layer: layer.sparsity for layer in stats.layers})
    assert set(found) == {"conv", "conv2", "hidden", "scores"} and min(found.values()) >= 0.49
