"""Model files are programs: code they carry is refused before it can run, unless the user allows it."""

import json
import zipfile

import pytest
from conftest import INPUT_SIZE

from tflite_opt.convert import main as convert_main
from tflite_opt.load import load_keras_model
from tflite_opt.model_safety import UnsafeModelError


def model_whose_lambda_touches(marker):
    """A classifier whose Lambda layer creates ``marker`` whenever its code runs."""
    from tflite_opt.keras2 import keras

    touch = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]")  # noqa: S307
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


def test_lambda_models_are_refused_naming_the_layer_and_their_code_never_runs(lambda_model_file, tmp_path, capsys):
    path, marker = lambda_model_file
    args = ["--model", str(path), "--representative-data", "unused", "--float32", "--output-dir", str(tmp_path / "o")]
    assert convert_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "Lambda layer 'sneaky'" in err and "--allow-unsafe-deserialization" in err
    assert not marker.exists()


def test_allowing_unsafe_deserialization_loads_the_lambda_with_a_warning(tmp_path, capsys):
    marker = tmp_path / "code_ran"
    path = tmp_path / "model.h5"
    model_whose_lambda_touches(marker).save(path)
    marker.unlink()
    model = load_keras_model(path, allow_unsafe=True)
    assert model is not None and marker.exists()
    assert "--allow-unsafe-deserialization was given" in capsys.readouterr().err


def test_an_unregistered_custom_layer_is_refused(tmp_path):
    from tflite_opt.keras2 import keras

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
    from tflite_opt.keras2 import keras, tf

    inputs = keras.Input((4,))
    path = tmp_path / "ops.h5"
    keras.Model(inputs, keras.layers.Dense(3)(tf.math.sin(inputs))).save(path)
    assert load_keras_model(path) is not None
