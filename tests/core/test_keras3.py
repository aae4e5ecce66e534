"""Keras 3 beside tf_keras in one process: which package a model belongs to."""

from helpers import build_functional, build_keras3_functional, keras3

from tflite_opt.core import keras2
from tflite_opt.core.keras3 import is_keras3_model, keras_of


def test_a_model_is_told_keras3_or_tf_keras_and_gets_its_own_package():
    model3, model2 = build_keras3_functional(), build_functional()
    assert is_keras3_model(model3) and not is_keras3_model(model2)
    assert keras_of(model3) is keras3() and keras_of(model2) is keras2.keras
    assert keras3().__version__.startswith("3.") and keras2.keras.__version__.startswith("2.")
