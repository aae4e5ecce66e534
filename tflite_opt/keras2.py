"""The one place that sets up Keras 2 for TensorFlow.

tensorflow-model-optimization only works with Keras 2, which since TF 2.16 ships
as the separate ``tf_keras`` package. ``TF_USE_LEGACY_KERAS=1`` must be set
before TensorFlow is first imported, so every module of tflite_opt imports
TensorFlow and Keras from here: ``from tflite_opt.keras2 import tf, keras``.
"""

from __future__ import annotations

import os
import sys

# Keep TensorFlow's C++ start-up chatter (CUDA probing on machines without a GPU)
# off the user's terminal unless they asked for it with --verbose.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
    import warnings

    warnings.warn(
        "TensorFlow was imported before tflite_opt could set TF_USE_LEGACY_KERAS=1; "
        "tf.keras may be Keras 3. tflite_opt uses tf_keras directly, but set "
        "TF_USE_LEGACY_KERAS=1 before importing TensorFlow to be safe.",
        stacklevel=2,
    )
os.environ["TF_USE_LEGACY_KERAS"] = "1"

from tflite_opt.quiet import native_stderr_silenced  # noqa: E402

with native_stderr_silenced():
    import tensorflow as tf
    import tf_keras as keras

__all__ = ["keras", "tf"]
