"""The one place that sets up Keras 2 for TensorFlow.

tensorflow-model-optimization only works with Keras 2, which since TF 2.16 ships
as the separate ``tf_keras`` package. ``TF_USE_LEGACY_KERAS=1`` must be set
before TensorFlow is first imported, so every module of tflite_opt reaches
TensorFlow and Keras through here: ``from tflite_opt.core import keras2``, then
``keras2.tf`` and ``keras2.keras``.

Importing this module is cheap: TensorFlow is imported on the first use of
``keras2.tf`` or ``keras2.keras`` (a module ``__getattr__``, PEP 562), so
``--help`` and the version check do not wait seconds for it.
"""

from __future__ import annotations

from typing import Any

from tflite_opt.core.quiet import native_stderr_silenced
from tflite_opt.core.tf_env import prepare_tensorflow_environment

_LAZY = ("keras", "tf")


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    prepare_tensorflow_environment()
    with native_stderr_silenced():
        # Deferred: TensorFlow takes seconds to import and logs natively while it does.
        import tensorflow
        import tf_keras
    globals().update(tf=tensorflow, keras=tf_keras)
    return globals()[name]
