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

import contextlib
from collections.abc import Iterator
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


# The names tf.custom_gradient registers its gradient functions under while tracing.
_CUSTOM_GRADIENT = "CustomGradient-"


@contextlib.contextmanager
def releasing_traced_gradients() -> Iterator[None]:
    """Graphs traced inside (training, prediction, conversion) can be freed with their model afterwards.

    ``tf.custom_gradient`` registers a gradient function in TensorFlow's process-wide registry each time it is
    traced and never removes it, and the function holds the whole traced graph. ``tf.nn.silu`` (EfficientNet's
    swish) is one, and so is tf_keras's optimizer summing gradients: each fit of Keras 3 EfficientNetB0's
    translation kept about 130 MB for good, each conversion 300-450 MB, and a ``--prune --cluster 16 --qat`` run
    reached 17 GB. What was registered inside is removed on exit: a traced graph looks gradients up only while
    it is being traced.
    """
    registry = _gradient_registry()
    before = registered_custom_gradients()
    try:
        yield
    finally:
        for name in registered_custom_gradients() - before:
            del registry[name]


def registered_custom_gradients() -> set[str]:
    """The names of the gradient functions ``tf.custom_gradient`` has registered and TensorFlow still holds."""
    return {name for name in _gradient_registry() if name.startswith(_CUSTOM_GRADIENT)}


def _gradient_registry() -> dict[str, Any]:
    __getattr__("tf")  # TensorFlow set up before its internals are reached
    # Deferred: importing TensorFlow takes seconds; the registry has no public API.
    from tensorflow.python.framework import ops

    return ops._gradient_registry._registry


# The functions tf_keras traces for fit, evaluate and predict, kept on the model.
_TRACED_FUNCTIONS = ("train_function", "train_tf_function", "test_function", "predict_function")


def drop_traced_functions(model: Any) -> None:
    """Let go of the graphs tf_keras traced for ``model`` (they are traced again if needed).

    A fitted model keeps its training graph, and tf_keras's attribute tracking keeps it even after the attribute
    is cleared; a learning-rate trial kept while the next one trains would hold a second graph (a QAT graph of
    ResNet50V2 runs to gigabytes).
    """
    dependencies = model._self_unconditional_dependency_names  # tf_keras's tracking: no public way to forget
    for name in _TRACED_FUNCTIONS:
        setattr(model, name, None)
        dependencies.pop(name, None)
    model._self_unconditional_checkpoint_dependencies[:] = [
        dependency
        for dependency in model._self_unconditional_checkpoint_dependencies
        if dependency.name not in _TRACED_FUNCTIONS
    ]
