"""tensorflow-model-optimization, imported only after Keras 2 is set up (it needs tf_keras).

Both the loader (a model saved mid-pruning) and the pruning stage need it; here
they share it without importing each other.
"""

from __future__ import annotations

from typing import Any

from tflite_opt.core import keras2


def tfmot() -> Any:
    """The ``tensorflow_model_optimization`` package."""
    keras2.keras  # noqa: B018  (Keras 2 must be set up before tfmot is imported)
    # Deferred: tfmot imports TensorFlow.
    import tensorflow_model_optimization

    return tensorflow_model_optimization


def pruning_wrapper_class() -> type:
    """tfmot's ``PruneLowMagnitude`` layer wrapper."""
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import (  # deferred: TensorFlow
        PruneLowMagnitude,
    )

    return PruneLowMagnitude


def prune_registry() -> Any:
    """tfmot's ``PruneRegistry``: which layers it can prune, and which of their weights (no public name)."""
    tfmot()
    from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry as registry  # deferred

    return registry.PruneRegistry


def prunable_layer_class() -> type:
    """tfmot's ``PrunableLayer``: a custom layer that names its own prunable weights."""
    tfmot()
    from tensorflow_model_optimization.python.core.sparsity.keras import prunable_layer  # deferred

    return prunable_layer.PrunableLayer


def prune_scope() -> Any:
    """The scope in which models saved mid-pruning (with PruneLowMagnitude wrappers) deserialize."""
    return tfmot().sparsity.keras.prune_scope()


def strip_if_mid_pruning(model: Any) -> Any:
    """The model without pruning wrappers; unchanged when it has none."""
    if any(isinstance(layer, pruning_wrapper_class()) for layer in model.layers):
        return tfmot().sparsity.keras.strip_pruning(model)
    return model
