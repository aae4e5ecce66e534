"""The environment TensorFlow must see before its first import (no TensorFlow import here)."""

from __future__ import annotations

import os
import sys
import warnings

ONEDNN = "TF_ENABLE_ONEDNN_OPTS"


def prepare_tensorflow_environment() -> None:
    """Select Keras 2 (tf_keras), turn TensorFlow's oneDNN kernels off and quiet its native start-up log.

    Both variables only work if set before TensorFlow is first imported.
    """
    # CUDA probing on machines without a GPU logs errors that are not errors; --verbose shows them.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # TensorFlow 2.21's oneDNN Conv2DBackpropFilter corrupts the heap for a 1x1 stride-2 convolution of fewer than
    # 16 input channels (an Xception-style residual on a grey stem) on AVX-512 CPUs: fine-tuning died with SIGSEGV
    # or "double free" and no message. Conversion, the interpreter and the figures do not use these kernels. A user
    # who sets the variable keeps their choice.
    os.environ.setdefault(ONEDNN, "0")
    if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        warnings.warn(
            "TensorFlow was imported before tflite_opt could set TF_USE_LEGACY_KERAS=1; "
            "tf.keras may be Keras 3. tflite_opt uses tf_keras directly, but set "
            "TF_USE_LEGACY_KERAS=1 before importing TensorFlow to be safe.",
            stacklevel=3,
        )
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
