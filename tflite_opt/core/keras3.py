"""Keras 3, the ``keras`` package most users save their models with since TensorFlow 2.16.

tflite_opt works in Keras 2 (tf_keras, see :mod:`tflite_opt.core.keras2`) because
tensorflow-model-optimization needs it, but it takes Keras 3 models in: they load
and convert as they are, and are translated to tf_keras only to be pruned. Both
packages live in one process; TensorFlow is set up by keras2 first either way.
"""

from __future__ import annotations

from typing import Any

from tflite_opt.core import keras2


def __getattr__(name: str) -> Any:
    if name != "keras":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    keras2.tf  # noqa: B018  (TF_USE_LEGACY_KERAS and TensorFlow's quiet start come first)
    import keras  # deferred: Keras 3 imports TensorFlow

    globals()["keras"] = keras
    return keras


def is_keras3_model(model: Any) -> bool:
    """True for a model built with Keras 3 (``import keras``), False for a tf_keras one."""
    return type(model).__module__.split(".")[0] == "keras"


def keras_of(model: Any) -> Any:
    """The Keras package ``model`` belongs to, to build layers that can call it."""
    if is_keras3_model(model):
        return __getattr__("keras")
    return keras2.keras
