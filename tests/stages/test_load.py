import json
import zipfile

import numpy as np
import pytest
from helpers import (
    INPUT_SIZE,
    build_functional,
    build_keras3_functional,
    build_keras3_sequential,
    build_sequential,
    keras3,
)

from tflite_opt.core import keras2
from tflite_opt.core.config import PruneConfig
from tflite_opt.core.errors import ModelLoadError
from tflite_opt.core.keras3 import is_keras3_model
from tflite_opt.core.tfmot import pruning_wrapper_class, tfmot
from tflite_opt.stages import prune
from tflite_opt.stages.load import describe_classifier, load_keras_model
from tflite_opt.stages.verify import layer_for_tensor_name


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


# Keras 3 cannot read back its own .h5 file of a model with operation nodes (x + 3.0): the .h5 uses Sequential.
@pytest.mark.parametrize(("suffix", "build"), [(".keras", build_keras3_functional), (".h5", build_keras3_sequential)])
def test_a_keras3_file_loads_as_a_keras3_model_with_its_weights(tmp_path, suffix, build):
    original = build()
    path = tmp_path / f"k3{suffix}"
    original.save(path)
    loaded = load_keras_model(path)
    assert is_keras3_model(loaded) and not is_keras3_model(build_functional())
    sample = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(loaded(sample)), np.asarray(original(sample)), rtol=1e-5, atol=1e-6)
    assert describe_classifier(loaded).input_shape == (28, 28, 1)


def test_a_file_of_an_unknown_keras_major_version_is_refused(tmp_path):
    path = tmp_path / "future.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "4.0.0"}))
        archive.writestr("config.json", "{}")
    with pytest.raises(ModelLoadError, match=r"saved by Keras 4\.0\.0; tflite_opt reads files of Keras 2 and 3"):
        load_keras_model(path)


def test_a_keras3_export_folder_is_refused_saying_which_file_to_pass(tmp_path):
    build_keras3_sequential().export(tmp_path / "exported", verbose=False)
    with pytest.raises(ModelLoadError, match=r"as Keras 3's model.export\(\) writes.*model\.save\('model\.keras'\)"):
        load_keras_model(tmp_path / "exported")


def test_keras3_layer_scopes_name_the_layer_that_computed_each_tensor():
    # Keras 3 traces layer conv2d_1 under the scope conv2d_1_2 and layer conv2d under conv2d_1.
    keras = keras3()
    keras.backend.clear_session()  # scope names count from zero again, whatever ran before in this process
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(2, 3, name="conv2d_1")(keras.layers.Conv2D(2, 3, name="conv2d")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(keras.layers.Flatten(name="flatten")(x)))
    scopes = describe_classifier(model).layer_scopes
    assert scopes["conv2d_1"] == "conv2d" and scopes["conv2d_1_2"] == "conv2d_1"
    assert layer_for_tensor_name("model_1/conv2d_1_2/BiasAdd;model_1/conv2d_1_2/convolution", scopes) == "conv2d_1"
    assert layer_for_tensor_name("model_1/conv2d_1/BiasAdd", scopes) == "conv2d"
    assert describe_classifier(build_functional()).layer_scopes["stem"] == "stem"  # tf_keras: names are scopes


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_model_saved_mid_pruning_reloads_stripped(tmp_path, suffix):
    keras = keras2.keras
    model = build_sequential()
    wrapped, _, _ = prune.wrap_for_pruning(model, PruneConfig(target_sparsity=0.5), steps=10)
    wrapped.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy())
    x = np.random.default_rng(0).random((16, INPUT_SIZE, INPUT_SIZE, 1), dtype=np.float32)
    y = np.arange(16) % 10
    wrapped.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[tfmot().sparsity.keras.UpdatePruningStep()])
    path = tmp_path / f"mid_pruning{suffix}"
    wrapped.save(path)
    loaded = load_keras_model(path)
    assert not any(isinstance(layer, pruning_wrapper_class()) for layer in loaded.layers)
    np.testing.assert_allclose(loaded.predict(x[:4], verbose=0), wrapped.predict(x[:4], verbose=0), atol=1e-5)
