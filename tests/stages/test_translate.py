"""Keras 3 → tf_keras for pruning: the translation computes what the Keras 3 model computes, its weights go back
into Keras 3, and the checks catch a translation that is wrong."""

import numpy as np
import pytest
from helpers import build_keras3_functional, build_keras3_sequential, build_keras3_transfer, keras3

from tflite_opt.core import keras2
from tflite_opt.core.errors import TranslationError
from tflite_opt.stages import translate
from tflite_opt.stages.translate import copy_weights, restore_into_keras3, translate_for_tfmot

RNG = np.random.default_rng(0)
DIGITS = RNG.random((16, 28, 28, 1), dtype=np.float32)


def outputs(model, x, training=False):
    return np.asarray(model(x, training=training))


def test_the_tests_ran_with_a_keras3_version_the_translation_was_checked_with():
    # A new Keras 3 release must be checked (this suite) before it is listed.
    assert ".".join(keras3().__version__.split(".")[:2]) in translate.TESTED_KERAS3


@pytest.mark.parametrize("build", [build_keras3_sequential, build_keras3_functional, build_keras3_transfer])
def test_a_translation_computes_what_the_keras3_model_computes(build):
    model3 = build()
    translation = translate_for_tfmot(model3, DIGITS)
    assert type(translation.model).__module__.startswith("tf_keras")
    np.testing.assert_allclose(outputs(translation.model, DIGITS), outputs(model3, DIGITS), rtol=1e-5, atol=1e-6)
    assert translation.max_difference <= 1e-5 and translation.samples == len(DIGITS)


def frozen_dropout_translation(model3):
    """What a translation that kept the recorded training=False would build: Dropout frozen in inference."""
    keras = keras2.keras
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = keras.layers.Dropout(0.5, name="dropout")(x, training=False)
    model2 = keras.Model(inputs, keras.layers.Dense(10, name="scores")(x))
    copy_weights(model3, model2)
    return model2


def test_the_training_mode_check_refuses_a_translation_whose_dropout_is_frozen():
    keras = keras3()
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Dropout(0.5, name="dropout")(keras.layers.Flatten(name="flatten")(inputs))
    model3 = keras.Model(inputs, keras.layers.Dense(10, name="scores")(x))
    with pytest.raises(TranslationError, match="Dropout .* does nothing in training mode"):
        translate._check_training_mode(model3, frozen_dropout_translation(model3), DIGITS)


def test_the_output_check_refuses_a_translation_that_differs_and_says_by_how_much():
    model3 = build_keras3_sequential()
    model2 = translate_for_tfmot(model3, DIGITS).model
    kernel, bias = model2.get_layer("scores").get_weights()
    bias[0] += 0.05  # one class: a softmax ignores a shift of all of them
    model2.get_layer("scores").set_weights([kernel, bias])
    with pytest.raises(TranslationError, match=r"differs from the Keras 3 model in inference by up to 0\.0"):
        translate._check_outputs(model3, model2, DIGITS, training=False)


def test_float32_rounding_is_measured_against_the_same_model_in_float64():
    model3 = build_keras3_functional()
    rounding = translate.float32_rounding(model3, DIGITS)
    assert rounding is not None and 0 < rounding < 1e-5
    assert model3.dtype_policy.name == "float32"  # the model itself is left as it was


def test_a_translation_off_by_float32_rounding_is_accepted_where_the_fixed_tolerance_is_passed(monkeypatch):
    """Stands in for a deep model (Keras 3 EfficientNetB0 fine-tuned: 1.7e-4 between the two Keras, 8.8e-5 from
    float64): no tolerance of its own, every weight of the translation one float32 step off."""
    monkeypatch.setattr(translate, "OUTPUT_TOLERANCE", 0.0)
    model3 = build_keras3_sequential()
    model2 = translate_for_tfmot(model3, DIGITS).model
    model2.set_weights([np.nextafter(w, np.float32(np.inf)) for w in model2.get_weights()])
    difference = translate._check_outputs(model3, model2, DIGITS, training=False)
    assert 0 < difference <= translate.ROUNDING_MARGIN * translate.float32_rounding(model3, DIGITS)


def test_a_translation_off_by_more_than_rounding_is_refused_with_both_figures(monkeypatch):
    monkeypatch.setattr(translate, "OUTPUT_TOLERANCE", 0.0)
    model3 = build_keras3_sequential()
    model2 = translate_for_tfmot(model3, DIGITS).model
    kernel, bias = model2.get_layer("scores").get_weights()
    bias[0] += 1e-5  # below the fixed tolerance, hundreds of times the model's rounding
    model2.get_layer("scores").set_weights([kernel, bias])
    with pytest.raises(TranslationError, match=r"in inference by up to .*4 times the .* float32 rounding alone"):
        translate._check_outputs(model3, model2, DIGITS, training=False)


def test_batch_norm_statistics_survive_the_training_mode_check():
    model3 = build_keras3_functional()
    before = [w.copy() for w in model3.get_weights()]
    translation = translate_for_tfmot(model3, DIGITS)
    for found, expected in zip(model3.get_weights(), before, strict=True):
        np.testing.assert_array_equal(found, expected)
    np.testing.assert_allclose(outputs(translation.model, DIGITS), outputs(model3, DIGITS), rtol=1e-5, atol=1e-6)


def test_pruned_weights_go_back_into_a_keras3_clone():
    model3 = build_keras3_transfer()
    model2 = translate_for_tfmot(model3, DIGITS).model
    kernel, bias = model2.get_layer("backbone_conv2").get_weights()
    kernel[..., :4] = 0.0
    model2.get_layer("backbone_conv2").set_weights([kernel, bias])
    restored = restore_into_keras3(model3, model2)
    assert type(restored).__module__.startswith("keras.")
    np.testing.assert_array_equal(restored.get_layer("backbone").get_layer("backbone_conv2").get_weights()[0], kernel)
    np.testing.assert_allclose(outputs(restored, DIGITS), outputs(model2, DIGITS), rtol=1e-5, atol=1e-6)
    assert model3.get_layer("backbone").get_layer("backbone_conv2").get_weights()[0][..., :4].any()  # untouched


def test_the_training_mode_check_refuses_a_translation_whose_batch_norm_is_frozen():
    keras, keras_2 = keras3(), keras2.keras
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.BatchNormalization(name="bn")(keras.layers.Conv2D(4, 3, name="conv")(inputs))
    model3 = keras.Model(inputs, keras.layers.Dense(3, name="scores")(keras.layers.Flatten(name="flatten")(x)))
    inputs2 = keras_2.Input((28, 28, 1))
    x2 = keras_2.layers.BatchNormalization(name="bn")(keras_2.layers.Conv2D(4, 3, name="conv")(inputs2), training=False)
    model2 = keras_2.Model(inputs2, keras_2.layers.Dense(3, name="scores")(keras_2.layers.Flatten(name="flatten")(x2)))
    copy_weights(model3, model2)
    with pytest.raises(TranslationError, match="differs from the Keras 3 model in training mode"):
        translate._check_training_mode(model3, model2, DIGITS)
