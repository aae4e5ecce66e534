"""The one place that sets up Keras 2 for TensorFlow.

tensorflow-model-optimization only works with Keras 2, which since TF 2.16 ships
as the separate ``tf_keras`` package. ``TF_USE_LEGACY_KERAS=1`` must be set
before TensorFlow is first imported, so every module of tflite_opt imports
TensorFlow and Keras from here: ``from tflite_opt.keras2 import tf, keras``.
"""

from __future__ import annotations

from tflite_opt.quiet import native_stderr_silenced
from tflite_opt.tf_env import prepare_tensorflow_environment

prepare_tensorflow_environment()

with native_stderr_silenced():
    import tensorflow as tf
    import tf_keras as keras

__all__ = ["keras", "tf"]
