import json
import zipfile

import numpy as np
import pytest
from helpers import INPUT_SIZE, build_functional, build_sequential

from tflite_opt.core import keras2
from tflite_opt.core.config import PruneConfig
from tflite_opt.core.errors import ModelLoadError
from tflite_opt.core.tfmot import pruning_wrapper_class, tfmot
from tflite_opt.stages import prune
from tflite_opt.stages.load import describe_classifier, load_keras_model


def test_keras_file_loads_and_is_described(saved_tiny_model):
    spec = describe_classifier(load_keras_model(saved_tiny_model))
    assert spec.input_shape == (12, 12, 1)
    assert spec.num_classes == 10
    assert "depthwise" in spec.layer_names


@pytest.mark.parametrize("suffix", [".h5", ""])
def test_h5_and_savedmodel_load_with_their_weights(tmp_path, suffix):
    path = tmp_path / f"functional{suffix}"
    original = build_functional()
    original.save(path, save_format="h5" if suffix else "tf")
    loaded = load_keras_model(path)
    assert describe_classifier(loaded).num_classes == 10
    sample = np.random.default_rng(0).random((3, 12, 12, 1), dtype=np.float32)
    np.testing.assert_allclose(loaded.predict(sample, verbose=0), original.predict(sample, verbose=0), rtol=1e-5)


def test_keras3_file_is_refused_with_resave_instructions(tmp_path):
    path = tmp_path / "new.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.writestr("config.json", "{}")
    with pytest.raises(ModelLoadError, match=r"saved by Keras 3\.15\.1.*model\.save_weights"):
        load_keras_model(path)


def test_missing_and_unsupported_files_are_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_keras_model(tmp_path / "absent.keras")
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    with pytest.raises(ModelLoadError, match="expected a .keras or .h5 file"):
        load_keras_model(tmp_path / "model.onnx")


def test_a_model_that_is_not_an_image_classifier_is_refused():
    keras = keras2.keras
    inputs = keras.Input((16,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs), name="tabular")
    with pytest.raises(ModelLoadError, match=r"expected \(batch, height, width, channels\)"):
        describe_classifier(model)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_model_saved_mid_pruning_reloads_stripped(tmp_path, suffix):
    keras = keras2.keras
    model = build_sequential()
    wrapped, _ = prune.wrap_for_pruning(model, PruneConfig(target_sparsity=0.5), steps=10)
    wrapped.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy())
    x = np.random.default_rng(0).random((16, INPUT_SIZE, INPUT_SIZE, 1), dtype=np.float32)
    y = np.arange(16) % 10
    wrapped.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[tfmot().sparsity.keras.UpdatePruningStep()])
    path = tmp_path / f"mid_pruning{suffix}"
    wrapped.save(path)
    loaded = load_keras_model(path)
    assert not any(isinstance(layer, pruning_wrapper_class()) for layer in loaded.layers)
    np.testing.assert_allclose(loaded.predict(x[:4], verbose=0), wrapped.predict(x[:4], verbose=0), atol=1e-5)
