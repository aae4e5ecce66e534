"""Keras 3 config → tf_keras config: every rewrite and trap checked against Keras 3's own outputs, refusals by name."""

import numpy as np
import pytest
from helpers import build_keras3_functional, build_keras3_sequential, build_keras3_transfer, keras3

from tflite_opt.core import keras2
from tflite_opt.core.errors import TranslationError
from tflite_opt.stages.load import load_keras_model
from tflite_opt.stages.translate import translate_for_tfmot

RNG = np.random.default_rng(0)
DIGITS = RNG.random((16, 28, 28, 1), dtype=np.float32)


def outputs(model, x, training=False):
    return np.asarray(model(x, training=training))


def single_activation_model(activation, as_layer):
    keras = keras3()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    if as_layer:
        x = keras.layers.Activation(activation, name="act")(keras.layers.Dense(5, name="dense")(inputs))
    else:
        x = keras.layers.Dense(5, activation=activation, name="dense")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(x))


@pytest.mark.parametrize("as_layer", [True, False], ids=["Activation layer", "layer argument"])
@pytest.mark.parametrize(
    "activation", ["hard_sigmoid", "hard_silu", "hard_swish", "relu6", "leaky_relu", "log_softmax"]
)
def test_activations_tf_keras_lacks_or_computes_otherwise_are_expanded_into_built_in_layers(activation, as_layer):
    model3 = single_activation_model(activation, as_layer)
    x = np.linspace(-5, 5, 60, dtype=np.float32).reshape(10, 6)
    translation = translate_for_tfmot(model3, x)
    np.testing.assert_allclose(outputs(translation.model, x), outputs(model3, x), rtol=1e-5, atol=1e-6)
    classes = {type(layer).__name__ for layer in translation.model.layers}
    assert classes <= {"InputLayer", "Dense", "ReLU", "LeakyReLU", "TFOpLambda", "Multiply", "Activation"}
    assert not any(
        getattr(layer, "activation", None) and "k3" in str(layer.activation) for layer in translation.model.layers
    )


def test_tf_keras_hard_sigmoid_of_the_same_name_would_be_wrong_by_up_to_0_08():
    # The trap the expansion avoids: same name, other maths.
    x = np.linspace(-4, 4, 801, dtype=np.float32)
    keras3_values = np.asarray(keras3().activations.hard_sigmoid(x))
    tf_keras_values = np.asarray(keras2.keras.activations.hard_sigmoid(keras2.tf.constant(x)))
    assert np.max(np.abs(keras3_values - tf_keras_values)) == pytest.approx(1 / 12, abs=2e-3)


def test_the_translation_saves_and_reloads_through_the_safety_check_without_registered_functions(tmp_path):
    translation = translate_for_tfmot(build_keras3_sequential(), DIGITS)
    path = tmp_path / "translated.keras"
    translation.model.save(path)
    reloaded = load_keras_model(path)  # model_safety refuses registered functions ("imports module 'builtins'")
    np.testing.assert_allclose(outputs(reloaded, DIGITS), outputs(translation.model, DIGITS), rtol=1e-6)


def test_operation_nodes_become_tensorflow_op_and_merge_layers():
    keras = keras3()
    inputs = keras.Input((4,))
    x = keras.layers.Dense(4, name="dense")(inputs)
    y = (x + 3.0) * 0.5 - 1.0
    z = 2.0 * x + x / 4.0
    model3 = keras.Model(inputs, keras.layers.Concatenate(name="joined")([y, z, x * y]))
    sample = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    translation = translate_for_tfmot(model3, sample)
    np.testing.assert_allclose(outputs(translation.model, sample), outputs(model3, sample), rtol=1e-5, atol=1e-6)
    assert any("operation Add(tensor, 3.0)" in note for note in translation.notes)


def test_a_nested_backbone_is_inlined_so_its_layers_can_be_pruned_and_stays_frozen():
    model3 = build_keras3_transfer()
    model3.get_layer("backbone").trainable = False
    translation = translate_for_tfmot(model3, DIGITS)
    names = [layer.name for layer in translation.model.layers]
    assert "backbone" not in names and {"backbone_conv1", "backbone_conv2", "head"} <= set(names)
    assert not translation.model.get_layer("backbone_conv1").trainable
    assert translation.model.get_layer("head").trainable


def test_recorded_training_false_is_dropped_so_dropout_and_batch_norm_train_as_in_keras3():
    model3 = build_keras3_functional()  # Keras 3 records training=False on the Dropout and BatchNorm calls
    translation = translate_for_tfmot(model3, DIGITS)
    for layer in translation.model.layers:
        for node in layer.inbound_nodes:
            assert "training" not in node.call_kwargs, layer.name
    keras3().utils.set_random_seed(1)
    assert not np.array_equal(outputs(translation.model, DIGITS, True), outputs(translation.model, DIGITS))


@pytest.mark.parametrize(
    ("build", "refusal"),
    [
        (lambda k: k.layers.Resizing(8, 8, name="resize"), r"layer 'resize' \(Resizing\) is not on the list"),
        (lambda k: k.layers.GaussianNoise(0.1, name="noise"), r"layer 'noise' \(GaussianNoise\) is not on the list"),
    ],
)  # fmt: skip
def test_a_layer_off_the_allow_list_is_refused_by_name_with_what_to_do(build, refusal):
    keras = keras3()
    inputs = keras.Input((16, 16, 1))
    x = build(keras)(inputs)
    model3 = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    with pytest.raises(TranslationError, match=refusal) as refused:
        translate_for_tfmot(model3, RNG.random((2, 16, 16, 1), dtype=np.float32))
    assert "convert without --prune" in str(refused.value)


def test_an_operation_off_the_allow_list_is_refused_by_name():
    keras = keras3()
    inputs = keras.Input((4,))
    model3 = keras.Model(inputs, keras.layers.Dense(2)(keras.ops.sin(inputs)))
    with pytest.raises(TranslationError, match=r"Keras 3 operation keras\.src\.ops\.numpy\.Sin"):
        translate_for_tfmot(model3, RNG.random((2, 4), dtype=np.float32))


def test_a_nested_model_called_twice_is_refused():
    keras = keras3()
    shared_input = keras.Input((4,))
    shared = keras.Model(shared_input, keras.layers.Dense(4, name="inner")(shared_input), name="shared")
    inputs = keras.Input((4,))
    model3 = keras.Model(inputs, keras.layers.Add()([shared(inputs), shared(inputs * 2.0)]))
    with pytest.raises(TranslationError, match="nested model 'shared' is called 2 times"):
        translate_for_tfmot(model3, RNG.random((2, 4), dtype=np.float32))


@pytest.mark.parametrize("adapted", [True, False], ids=["adapted", "mean and variance given"])
def test_a_normalization_layer_as_efficientnet_has_it_translates_with_its_statistics(adapted):
    keras = keras3()
    keras.utils.set_random_seed(0)
    pixels = RNG.random((16, 8, 8, 3), dtype=np.float32) * 255
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Rescaling(1 / 255, name="rescale")(inputs)
    if adapted:
        normalize = keras.layers.Normalization(axis=-1, name="normalize")
        normalize.adapt(pixels / 255)
    else:
        normalize = keras.layers.Normalization(axis=-1, mean=[0.485, 0.456, 0.406], variance=[0.05, 0.05, 0.06])
    x = keras.layers.Conv2D(4, 3, name="conv")(normalize(x))
    outputs3 = keras.layers.Dense(3, name="out")(keras.layers.GlobalAveragePooling2D(name="pool")(x))
    model3 = keras.Model(inputs, outputs3)
    translation = translate_for_tfmot(model3, pixels)
    assert "Normalization" in {type(layer).__name__ for layer in translation.model.layers}
    np.testing.assert_allclose(outputs(translation.model, pixels), outputs(model3, pixels), rtol=1e-5, atol=1e-5)
