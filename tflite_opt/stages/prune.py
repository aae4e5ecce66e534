"""Magnitude pruning with tensorflow-model-optimization, before conversion.

Keras model → ``prune_low_magnitude`` (layer by layer, skipping what cannot be
pruned) → fine-tuning with ``UpdatePruningStep`` → ``strip_pruning``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from tflite_opt.core import keras2
from tflite_opt.core.config import PruneConfig, Schedule
from tflite_opt.core.errors import UsageError
from tflite_opt.core.keras3 import is_keras3_model
from tflite_opt.core.tfmot import prunable_layer_class, prune_registry, pruning_wrapper_class, tfmot
from tflite_opt.results.tuning import LayerSparsity, PruneResult, PruneStats
from tflite_opt.stages.fine_tune import FineTuning, Wrapped, fine_tune, require_graph_network
from tflite_opt.stages.model_safety import TF_OP_LAYERS
from tflite_opt.stages.translate import restore_into_keras3, translate_for_tfmot

log = logging.getLogger(__name__)

# The weight tfmot prunes for each kind of layer, in the order to look for it
# (SeparableConv2D: its pointwise kernel, not its depthwise one).
PRUNABLE_KERNELS = ("kernel", "pointwise_kernel", "depthwise_kernel")
# Fine-tuning samples on which a Keras 3 model's translation must give the model's outputs.
TRANSLATION_CHECK_SAMPLES = 32


def prunable_kernel(layer: Any) -> Any | None:
    """The weight a conv or dense layer computes with (SeparableConv2D: its pointwise kernel), or None."""
    for name in PRUNABLE_KERNELS:
        kernel = getattr(layer, name, None)
        if kernel is not None:
            return kernel
    return None


def skip_reason(layer: Any, config: PruneConfig) -> str | None:
    """Why a layer is not pruned, or None when it is."""
    if isinstance(layer, prunable_layer_class()) or hasattr(layer, "get_prunable_weights"):
        return None
    registry = prune_registry()
    if not registry.supports(layer):
        return f"{type(layer).__name__} is not supported by tensorflow-model-optimization"
    kernel = prunable_kernel(layer)
    if kernel is None:
        return "has no weights to prune"
    if registry._LAYERS_WEIGHTS_MAP.get(type(layer)) == []:
        return f"tensorflow-model-optimization does not prune {type(layer).__name__} weights"
    if config.m_by_n is not None:
        # 2:4-style groups run along the input channels of the kernel.
        in_channels = int(kernel.shape[-2])
        n = config.m_by_n[1]
        if in_channels % n:
            return f"{in_channels} input channels cannot form groups of {n} for {config.m_by_n[0]}:{n} sparsity"
    return None


def layer_sparsity(model: Any, layer_names: Sequence[str] | None = None) -> tuple[LayerSparsity, ...]:
    """Weights and non-zero weights of each layer's kernel (all kernels, or the named layers)."""
    rows = []
    for layer in model.layers:
        kernel = prunable_kernel(layer)
        if kernel is None or (layer_names is not None and layer.name not in layer_names):
            continue
        values = np.asarray(kernel.numpy())
        rows.append(LayerSparsity(layer.name, int(values.size), int(np.count_nonzero(values))))
    return tuple(rows)


def wrap_for_pruning(model: Any, config: PruneConfig, steps: int) -> tuple[Any, list[tuple[str, str]], int]:
    """``prune_low_magnitude`` on every layer that supports it; the others are left as they are.

    Returns:
        The wrapped model, (layer, reason) for each layer left as it is, and the step from which the layers are
        at the target sparsity.

    Raises:
        UsageError: a subclassed model, or no layer that can be pruned.
    """
    sparsity = tfmot().sparsity.keras
    require_graph_network(model, "pruning")
    if config.schedule is Schedule.CONSTANT:
        schedule = sparsity.ConstantSparsity(config.target_sparsity, begin_step=0, frequency=max(1, steps // 20))
        end_step = 0
    else:
        # Reach the target after 70% of fine-tuning and hold it for the rest, so accuracy can recover. The masks
        # change only every `frequency` steps, so the last change must fall on the end step to reach the target.
        end_step = max(1, int(0.7 * steps))
        frequency = max(1, end_step // 10)
        end_step -= end_step % frequency
        schedule = sparsity.PolynomialDecay(
            initial_sparsity=config.initial_sparsity,
            final_sparsity=config.target_sparsity,
            begin_step=0,
            end_step=end_step,
            frequency=frequency,
        )
    skipped: list[tuple[str, str]] = []
    params = {"pruning_schedule": schedule, "block_size": config.block_size, "sparsity_m_by_n": config.m_by_n}

    def wrap(layer):
        reason = skip_reason(layer, config)
        if reason is None:
            return sparsity.prune_low_magnitude(layer, **params)
        if prunable_kernel(layer) is not None or not _supported(layer):
            skipped.append((layer.name, reason))
        return layer

    wrapped = clone_wrapped(model, wrap)
    if not any(isinstance(layer, pruning_wrapper_class()) for layer in wrapped.layers):
        raise UsageError(f"{model.name} has no layer that can be pruned: " + "; ".join(f"{n}: {r}" for n, r in skipped))
    return wrapped, skipped, end_step


def clone_wrapped(model: Any, wrap: Any) -> Any:
    """A copy of ``model`` with ``wrap`` applied to each of its layers (a tfmot wrapper, or the layer as it is).

    The wrappers share the wrapped layers' variables, so they wrap a copy: the caller's model stays the reference.
    """
    keras = keras2.keras
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return keras.models.clone_model(copy, clone_function=wrap)


def _supported(layer: Any) -> bool:
    """Layers with nothing to prune (pooling, activations, BatchNorm, a TensorFlow op on a Keras tensor) are
    supported and need no note."""
    return type(layer).__name__ in TF_OP_LAYERS or prune_registry().supports(layer)


def prune_model(
    model: Any,
    train_x: np.ndarray,
    train_y: np.ndarray,
    config: PruneConfig | None = None,
    progress: bool = False,
) -> PruneResult:
    """Prune and fine-tune a Keras classifier (see :mod:`tflite_opt.stages.fine_tune`), then strip the wrappers.

    A Keras 3 model is translated to tf_keras (checked, see :mod:`tflite_opt.stages.translate`), pruned,
    and given back as a Keras 3 model carrying the pruned weights.

    Args:
        model: a Sequential or Functional classifier, tf_keras or Keras 3.
        train_x: float32 model input (N, H, W, C), already preprocessed.
        train_y: integer class labels (N,).
        config: sparsity target, schedule and fine-tuning settings.
        progress: a bar of the fine-tuning's steps on a terminal.

    Raises:
        UsageError: nothing to prune, a subclassed model, or too little training data.
    """
    sparsity = tfmot().sparsity.keras
    config = config or PruneConfig()
    model, keras3_model = for_tfmot(model, train_x)

    def wrap(copy: Any, steps: int) -> Wrapped:
        wrapped, skipped, ready = wrap_for_pruning(copy, config, steps)
        pruned = [layer.layer.name for layer in wrapped.layers if isinstance(layer, pruning_wrapper_class())]
        return Wrapped(wrapped, [sparsity.UpdatePruningStep()], ready, (pruned, skipped))

    settings = FineTuning.of(config, "pruning", progress)
    tuned = fine_tune(model, train_x, train_y, settings, wrap, sparsity.strip_pruning)
    pruned_names, skipped = tuned.details
    return PruneResult(
        model=tuned.model if keras3_model is None else restore_into_keras3(keras3_model, tuned.model),
        stats=PruneStats(
            config=config,
            layers=layer_sparsity(tuned.model, pruned_names),
            skipped=tuple(skipped),
            seconds=tuned.record.seconds,
            tuning=tuned.record,
        ),
    )


def for_tfmot(model: Any, train_x: np.ndarray) -> tuple[Any, Any | None]:
    """(a tf_keras model tfmot can wrap, the Keras 3 original or None). tfmot works on tf_keras models only:
    a Keras 3 model goes through its translation, checked on the first training samples."""
    if not is_keras3_model(model):
        return model, None
    return translate_for_tfmot(model, train_x[:TRANSLATION_CHECK_SAMPLES]).model, model
