"""The environment TensorFlow must see before its first import (no TensorFlow import here)."""

from __future__ import annotations

import os
import sys
import warnings


def prepare_tensorflow_environment() -> None:
    """Select Keras 2 (tf_keras) and quiet TensorFlow's native start-up log.

    ``TF_USE_LEGACY_KERAS=1`` only works if set before TensorFlow is first imported.
    """
    # CUDA probing on machines without a GPU logs errors that are not errors; --verbose shows them.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        warnings.warn(
            "TensorFlow was imported before tflite_opt could set TF_USE_LEGACY_KERAS=1; "
            "tf.keras may be Keras 3. tflite_opt uses tf_keras directly, but set "
            "TF_USE_LEGACY_KERAS=1 before importing TensorFlow to be safe.",
            stacklevel=3,
        )
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
