import json
import zipfile

import pytest
from conftest import build_functional

from tflite_opt.errors import ModelLoadError
from tflite_opt.load import describe_classifier, load_keras_model


def test_keras_file_loads_and_is_described(saved_tiny_model):
    spec = describe_classifier(load_keras_model(saved_tiny_model))
    assert spec.input_shape == (12, 12, 1)
    assert spec.num_classes == 10
    assert "depthwise" in spec.layer_names


@pytest.mark.parametrize("suffix", [".h5", ""])
def test_h5_and_savedmodel_load(tmp_path, suffix):
    path = tmp_path / f"functional{suffix}"
    build_functional().save(path, save_format="h5" if suffix else "tf")
    assert describe_classifier(load_keras_model(path)).num_classes == 10


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
    from tflite_opt.keras2 import keras

    inputs = keras.Input((16,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs), name="tabular")
    with pytest.raises(ModelLoadError, match=r"expected \(batch, height, width, channels\)"):
        describe_classifier(model)
