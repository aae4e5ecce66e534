"""Rebuild a Keras 3 model in tf_keras, so that tensorflow-model-optimization can prune, cluster or train it.

tfmot only works with Keras 2 (tf_keras). A Keras 3 model's configuration is rewritten
into the one tf_keras writes (:mod:`tflite_opt.stages.tf_keras_config`, which lists each
rewrite and its reason), tf_keras rebuilds the model from it, and the weights are
copied layer by layer; after pruning they are copied back into a clone of the Keras 3
model, which is what the rest of the pipeline (and the user) gets. Only what is on the
allow-lists there is translated; anything else is refused by name.

Every translation is checked before use (:func:`translate_for_tfmot`): outputs within a
tight tolerance of the Keras 3 model's, and Dropout and BatchNormalization behaving in
training mode as in Keras 3.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from tflite_opt.core import keras2, keras3
from tflite_opt.core.errors import TranslationError
from tflite_opt.stages.tf_keras_config import WHAT_TO_DO, tf_keras_config

log = logging.getLogger(__name__)

# Keras 3 versions the translation was checked with (tests/stages/test_translate.py pins them).
TESTED_KERAS3 = ("3.15",)
# How far the translation's outputs may be from Keras 3's, relative to the largest output (float32 rounding).
OUTPUT_TOLERANCE = 1e-4
# Or this many times what float32 rounding alone moves the Keras 3 model's outputs by (measured against the same
# model in float64): each Keras rounds its own way, and a deep model's rounding can pass OUTPUT_TOLERANCE. Keras 3
# EfficientNetB0 fine-tuned to a peaked softmax: 8.8e-5 from float64, its faithful translation 1.7e-4 from it.
# A wrong translation (one bias off by 0.05, a BatchNormalization epsilon) is orders of magnitude further.
ROUNDING_MARGIN = 4.0
# In training mode: the share of the training flag's own effect on the outputs the two models may differ by.
TRAINING_SHARE = 0.02


@dataclass(frozen=True)
class Translation:
    """A tf_keras model computing what a Keras 3 model computes, and how that was checked."""

    model: Any
    notes: tuple[str, ...]
    max_difference: float
    samples: int


def translate_for_tfmot(model3: Any, samples: np.ndarray) -> Translation:
    """The Keras 3 ``model3`` rebuilt in tf_keras with its weights, checked on ``samples``.

    Raises:
        TranslationError: something off the allow-lists (named, with what to do), or a translation
            whose outputs or training-mode behaviour differ from the Keras 3 model's.
    """
    config, notes = tf_keras_config(model3)
    model2 = keras2.keras.Model.from_config(config)
    copy_weights(model3, model2)
    inferred = np.asarray(model3(samples, training=False))
    difference = _check_outputs(model3, model2, samples, training=False, expected=inferred)
    _check_training_mode(model3, model2, samples, inferred)
    log.info(
        "translated the Keras 3 model to tf_keras for tensorflow-model-optimization: %d layers, outputs within %.2g "
        "on %d samples",
        len(model2.layers),
        difference,
        len(samples),
    )
    for note in notes:
        log.debug("translation: %s", note)
    return Translation(model2, tuple(dict.fromkeys(notes)), difference, len(samples))


def restore_into_keras3(model3: Any, model2: Any) -> Any:
    """A clone of the Keras 3 ``model3`` carrying the weights of its translation ``model2`` (after pruning)."""
    clone = keras3.keras.models.clone_model(model3)
    for layer3 in _leaf_layers(clone):
        layer3.set_weights(model2.get_layer(layer3.name).get_weights())
    return clone


def copy_weights(model3: Any, model2: Any) -> None:
    """Every Keras 3 layer's weights into the tf_keras layer of the same name, checked by count and shape.

    Raises:
        TranslationError: a layer whose weights do not match.
    """
    for layer3 in _leaf_layers(model3):
        layer2 = model2.get_layer(layer3.name)
        shapes3 = [tuple(w.shape) for w in layer3.weights]
        shapes2 = [tuple(w.shape) for w in layer2.weights]
        if shapes3 != shapes2:
            raise TranslationError(
                f"layer {layer3.name!r}: Keras 3 weights {shapes3} do not match the tf_keras layer's {shapes2}"
            )
        layer2.set_weights(layer3.get_weights())


def _leaf_layers(model3: Any) -> Iterator[Any]:
    """The layers with weights of a Keras 3 model and of the models nested in it."""
    model_class = keras3.keras.Model
    layers = model3._flatten_layers(include_self=False)
    # Layers without weights (an Activation expanded into several) need no counterpart of the same name.
    return (layer for layer in layers if not isinstance(layer, model_class) and layer.weights)


# ------------------------------------------------------------------------------------------- checks
def _check_outputs(
    model3: Any,
    model2: Any,
    samples: np.ndarray,
    training: bool,
    allowed: float = 0.0,
    expected: np.ndarray | None = None,
) -> float:
    """The largest difference between the two models' outputs; refused above the tolerance (or ``allowed``). In
    inference, a difference above the tolerance is still accepted within ``ROUNDING_MARGIN`` times the Keras 3
    model's own float32 rounding.

    ``expected``: the Keras 3 model's outputs on ``samples`` in this mode, where already computed.
    """
    expected = np.asarray(model3(samples, training=training)) if expected is None else expected
    found = np.asarray(model2(samples, training=training))
    difference = float(np.max(np.abs(expected - found)))
    allowed = max(allowed, OUTPUT_TOLERANCE * max(1.0, float(np.max(np.abs(expected)))))
    why = ""
    if not difference <= allowed and not training:
        rounding = float32_rounding(model3, samples, expected)
        if rounding is not None:
            allowed = max(allowed, ROUNDING_MARGIN * rounding)
            why = f", {ROUNDING_MARGIN:g} times the {rounding:.2g} float32 rounding alone moves the Keras 3 model's"
            if difference <= allowed:
                log.info(
                    "the tf_keras translation differs from the Keras 3 model by up to %.2g, within %g times the "
                    "%.2g float32 rounding alone moves the Keras 3 model's outputs by (against float64)",
                    difference,
                    ROUNDING_MARGIN,
                    rounding,
                )
    if not difference <= allowed:
        mode = "in training mode" if training else "in inference"
        raise TranslationError(
            f"the tf_keras translation of {model3.name} differs from the Keras 3 model {mode} by up to "
            f"{difference:.3g} on {len(samples)} samples (allowed {allowed:.2g}{why}); tensorflow-model-optimization "
            f"would work on another model. {WHAT_TO_DO}"
        )
    return difference


def float32_rounding(model3: Any, samples: np.ndarray, expected: np.ndarray | None = None) -> float | None:
    """How far float32 rounding alone moves the Keras 3 ``model3``'s inference outputs on ``samples``: the largest
    difference from the same model built and computed in float64. None where it cannot be built in float64.

    ``expected``: ``model3``'s float32 outputs on ``samples``, where already computed.
    """
    keras = keras3.keras
    try:
        config = _in_float64(keras.saving.serialize_keras_object(model3))
        model64 = keras.saving.deserialize_keras_object(config, safe_mode=True)
        model64.set_weights([np.asarray(w, dtype=np.float64) for w in model3.get_weights()])
        exact = np.asarray(model64(samples.astype(np.float64), training=False), dtype=np.float64)
    except Exception as error:  # noqa: BLE001 - an op without a float64 kernel leaves only the fixed tolerance
        log.debug("float32 rounding not measured: the model could not be computed in float64 (%s)", error)
        return None
    expected = np.asarray(model3(samples, training=False)) if expected is None else expected
    return float(np.max(np.abs(expected.astype(np.float64) - exact)))


def _in_float64(config: Any) -> Any:
    """A serialized Keras 3 model's configuration with every float32 dtype (policy) made float64."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and config.get("config", {}).get("name") == "float32":
            return {**config, "config": {**config["config"], "name": "float64"}}
        return {
            key: "float64" if key == "dtype" and value == "float32" else _in_float64(value)
            for key, value in config.items()
        }
    if isinstance(config, list):
        return [_in_float64(value) for value in config]
    return config


def _check_training_mode(model3: Any, model2: Any, samples: np.ndarray, inferred: np.ndarray | None = None) -> None:
    """Dropout and BatchNormalization follow the training flag in the translation as in Keras 3.

    With every dropout rate at 0, training-mode outputs (BatchNormalization on batch statistics)
    must match; with the rates back, Dropout must change the translation's training-mode output.
    Weights are restored afterwards: a training-mode call updates BatchNormalization's moving statistics.
    ``inferred``: the Keras 3 model's inference outputs on ``samples``, where already computed.
    """
    inferred = np.asarray(model3(samples)) if inferred is None else inferred
    weights3, weights2 = model3.get_weights(), model2.get_weights()
    rates = [(layer, layer.rate) for layer in _dropouts(model3) + _dropouts(model2)]
    try:
        with_dropout = np.asarray(model2(samples, training=True))
        for layer, _ in rates:
            layer.rate = 0.0
        # Batch statistics of a few samples differ in float rounding between the two Keras, and deep models
        # add it up; what is checked is that BatchNormalization switches as in Keras 3, a far larger effect.
        trained = np.asarray(model3(samples, training=True))
        allowed = TRAINING_SHARE * float(np.max(np.abs(trained - inferred)))
        _check_outputs(model3, model2, samples, training=True, allowed=allowed, expected=trained)
        without_dropout = np.asarray(model2(samples, training=True))
    finally:
        for layer, rate in rates:
            layer.rate = rate
        model3.set_weights(weights3)
        model2.set_weights(weights2)
    if any(rate > 0 for _, rate in rates) and np.array_equal(with_dropout, without_dropout):
        raise TranslationError(
            f"Dropout in the tf_keras translation of {model3.name} does nothing in training mode, unlike Keras 3; "
            f"fine-tuning would differ. {WHAT_TO_DO}"
        )


def _dropouts(model: Any) -> list[Any]:
    return [layer for layer in model._flatten_layers(include_self=False) if "Dropout" in type(layer).__name__]
