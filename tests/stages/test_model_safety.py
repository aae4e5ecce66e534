"""Model files are programs: code they carry is refused before it can run, unless the user allows it."""

import json
import logging
import zipfile

import numpy as np
import pytest
from helpers import INPUT_SIZE, build_keras3_functional, keras3

from tflite_opt.core import keras2
from tflite_opt.stages.load import load_keras_model
from tflite_opt.stages.model_safety import UnsafeModelError, stored_configs, unsafe_objects


def model_whose_lambda_touches(marker):
    """A classifier whose Lambda layer creates ``marker`` whenever its code runs."""
    keras = keras2.keras
    touch = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]")  # noqa: S307
    keras.utils.set_random_seed(0)
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Lambda(touch, name="sneaky")(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


@pytest.fixture(params=[".keras", ".h5", "savedmodel"])
def lambda_model_file(request, tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / ("model" + ("" if request.param == "savedmodel" else request.param))
    model_whose_lambda_touches(marker).save(path, save_format="tf" if request.param == "savedmodel" else None)
    marker.unlink()  # building and saving the model ran the lambda; loading must not
    return path, marker


def test_lambda_models_are_refused_naming_the_layer_and_their_code_never_runs(lambda_model_file):
    path, marker = lambda_model_file
    with pytest.raises(UnsafeModelError) as refused:
        load_keras_model(path)
    assert "Lambda layer 'sneaky' (its Python code would run)" in str(refused.value)
    assert "Nothing was loaded" in str(refused.value) and "--allow-unsafe-deserialization" in str(refused.value)
    assert not marker.exists()


def test_allowing_unsafe_deserialization_loads_the_lambda_with_a_warning(tmp_path, caplog):
    marker = tmp_path / "code_ran"
    path = tmp_path / "model.h5"
    original = model_whose_lambda_touches(marker)
    original.save(path)
    marker.unlink()
    with caplog.at_level(logging.WARNING, logger="tflite_opt"):
        model = load_keras_model(path, allow_unsafe=True)
    assert marker.exists()  # the file's code ran, as the user allowed
    assert "sneaky" in [layer.name for layer in model.layers]
    sample = np.random.default_rng(0).random((2, INPUT_SIZE, INPUT_SIZE, 1), dtype=np.float32)
    np.testing.assert_allclose(model.predict(sample, verbose=0), original.predict(sample, verbose=0), rtol=1e-6)
    assert any("--allow-unsafe-deserialization was given" in r.getMessage() for r in caplog.records)


def test_an_unregistered_custom_layer_is_refused(tmp_path):
    keras = keras2.keras

    class Doubler(keras.layers.Layer):
        def call(self, inputs):
            return inputs * 2.0

    inputs = keras.Input((4,))
    path = tmp_path / "custom.h5"
    keras.Model(inputs, Doubler(name="doubler")(inputs)).save(path)
    with pytest.raises(UnsafeModelError, match="custom object 'Doubler' in layer 'doubler' is not registered"):
        load_keras_model(path)


def test_a_keras_config_naming_a_foreign_module_is_refused(saved_tiny_model, tmp_path):
    tampered = tmp_path / "tampered.keras"
    with zipfile.ZipFile(saved_tiny_model) as source, zipfile.ZipFile(tampered, "w") as target:
        for item in source.namelist():
            data = source.read(item)
            if item == "config.json":
                config = json.loads(data)
                config["config"]["layers"][1]["module"] = "os"
                data = json.dumps(config).encode()
            target.writestr(item, data)
    with pytest.raises(UnsafeModelError, match="imports module 'os'"):
        load_keras_model(tampered)


def test_tf_ops_on_keras_tensors_are_not_mistaken_for_lambdas(tmp_path):
    keras, tf = keras2.keras, keras2.tf
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    original = keras.Model(inputs, keras.layers.Dense(3)(tf.math.sin(inputs)))
    path = tmp_path / "ops.h5"
    original.save(path)
    assert unsafe_objects(stored_configs(path)) == []
    loaded = load_keras_model(path)
    sample = np.linspace(-3, 3, 8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_allclose(loaded.predict(sample, verbose=0), original.predict(sample, verbose=0), rtol=1e-6)


def test_a_plain_keras_model_has_nothing_unsafe(saved_tiny_model):
    configs = stored_configs(saved_tiny_model)
    assert len(configs) == 1 and configs[0]["class_name"] == "Sequential"
    assert unsafe_objects(configs) == []


# Keras 3 files: the same refusals, before Keras 3 runs anything.
def keras3_model_whose_lambda_touches(marker):
    keras = keras3()
    touch = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]")  # noqa: S307
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Lambda(touch, name="sneaky")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(10)(x))


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_keras3_lambda_model_is_refused_and_its_code_never_runs(tmp_path, suffix):
    marker = tmp_path / "code_ran"
    path = tmp_path / f"k3_lambda{suffix}"
    keras3_model_whose_lambda_touches(marker).save(path)
    marker.unlink(missing_ok=True)  # building the model ran the lambda; loading must not
    with pytest.raises(UnsafeModelError, match=r"Lambda layer 'sneaky' \(its Python code would run\)"):
        load_keras_model(path)
    assert not marker.exists()


def test_a_keras3_registered_function_is_refused_as_the_authors_code(tmp_path):
    keras = keras3()

    @keras.saving.register_keras_serializable(package="theirs")
    def doubled(x):
        return x * 2.0

    inputs = keras.Input((28, 28, 1))
    path = tmp_path / "registered.keras"
    keras.Model(inputs, keras.layers.Dense(3, activation=doubled, name="scores")(keras.layers.Flatten()(inputs))).save(
        path
    )
    with pytest.raises(
        UnsafeModelError, match="function 'theirs>doubled' in layer 'scores' is the model author's code"
    ):
        load_keras_model(path)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_plain_keras3_model_with_operation_nodes_has_nothing_unsafe(tmp_path, suffix):
    path = tmp_path / f"k3{suffix}"
    build_keras3_functional().save(path)  # x + 3.0 and friends: keras.src.ops nodes, no code of the file's own
    assert unsafe_objects(stored_configs(path), keras3_file=True) == []
