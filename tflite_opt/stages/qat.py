"""Quantization-aware training (QAT) with tensorflow-model-optimization, before full-int8 conversion.

Where post-training quantization loses too much (an activation with an outlier stretches a layer's single
int8 range), fine-tuning with int8 simulated in every layer lets the other weights adapt to the ranges
int8 will have, and the model stays full-integer: no layer kept in float, which an NPU, DSP or Edge TPU
could not run. Keras model → ``quantize_annotate_layer`` on every layer tfmot's 8-bit scheme supports (the
others are skipped with a note) → ``quantize_apply`` → fine-tuning → a tf_keras model carrying the
learnt ranges, which the converter turns into full int8.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tflite_opt.core import keras2
from tflite_opt.core.config import ClusterConfig, QatConfig
from tflite_opt.core.errors import UsageError
from tflite_opt.core.tfmot import tfmot
from tflite_opt.stages.cluster import ClusterResult, cluster_model
from tflite_opt.stages.prune import FineTuning, PruneResult, fine_tune, for_tfmot, settle_batch_statistics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QatStats:
    """What quantization-aware training did: settings, time, layers left unannotated."""

    config: QatConfig
    seconds: float
    skipped: tuple[tuple[str, str], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.config.to_dict(),
            "seconds": round(self.seconds, 1),
            "skipped": [{"layer": name, "reason": reason} for name, reason in self.skipped],
        }


@dataclass(frozen=True)
class QatResult:
    """A quantization-aware tf_keras model (it converts to full int8) and what training it did."""

    model: Any
    stats: QatStats


@dataclass(frozen=True)
class FineTuned:
    """What fine-tuning made of a model, in the order it runs: pruned, then clustered, then quantization-aware
    (each optional)."""

    pruned: PruneResult | None = None
    clustered: ClusterResult | None = None
    qat: QatResult | None = None

    def model(self, original: Any) -> Any:
        """The model post-training quantization converts: clustered, else pruned, else ``original``."""
        if self.clustered is not None:
            return self.clustered.model
        return self.pruned.model if self.pruned is not None else original

    @property
    def clusters(self) -> int | None:
        """Shared values per layer, where the model was clustered."""
        return self.clustered.stats.config.clusters if self.clustered is not None else None

    @property
    def scheme(self) -> str:
        """The quantization-aware scheme that keeps what came before: ``qat``, ``pqat``, ``cqat`` or ``pcqat``."""
        return ("p" if self.pruned else "") + ("c" if self.clustered else "") + "qat"

    def seconds(self) -> dict[str, float]:
        """Fine-tuning seconds by step, for the steps that ran."""
        steps = {"pruning": self.pruned, "clustering": self.clustered, "qat": self.qat}
        return {step: round(result.stats.seconds, 1) for step, result in steps.items() if result is not None}

    def clustered_with(
        self, original: Any, train_x: np.ndarray, train_y: np.ndarray, config: ClusterConfig
    ) -> FineTuned:
        """This, with the model clustered (keeping the zeros of a pruned one)."""
        clustered = cluster_model(
            self.model(original), train_x, train_y, config, preserve_sparsity=self.pruned is not None
        )
        return replace(self, clustered=clustered)

    def quantization_aware(
        self, original: Any, train_x: np.ndarray, train_y: np.ndarray, config: QatConfig
    ) -> FineTuned:
        """This, with the model fine-tuned quantization-aware in the scheme that keeps what came before."""
        # Pruned layers clustering skipped: the cluster-preserving schemes would lose their zeros.
        frozen = tuple(name for name, _ in self.clustered.stats.skipped) if self.clustered and self.pruned else ()
        qat = quantization_aware_model(self.model(original), train_x, train_y, config, self.scheme, frozen)
        return replace(self, qat=qat)


def quantization_aware_model(
    model: Any,
    train_x: np.ndarray,
    train_y: np.ndarray,
    config: QatConfig,
    scheme: str = "qat",
    frozen: tuple[str, ...] = (),
) -> QatResult:
    """Fine-tune ``model`` (tf_keras, or Keras 3 through its checked translation) with int8 simulated.

    ``scheme``: ``qat`` (tfmot's default 8-bit), or for a pruned and/or clustered model the collaborative
    scheme that keeps their work through the fine-tuning: ``pqat`` (zeros), ``cqat`` (shared values),
    ``pcqat`` (both). ``frozen``: layers whose weights must not move (pruned layers clustering skipped: the
    cluster-preserving schemes would not keep their zeros).

    Raises:
        UsageError: too little training data, or a model tfmot cannot make quantization-aware (its message).
    """
    keras = keras2.keras
    if len(train_x) < config.batch_size:
        raise UsageError(f"quantization-aware training needs at least --batch-size={config.batch_size} samples")
    model, _ = for_tfmot(model, train_x)
    keras.utils.set_random_seed(config.seed)
    quantized, skipped = _quantization_aware(model, scheme, frozen)
    settings = FineTuning(
        config.epochs, config.batch_size, config.learning_rate, config.seed, "quantization-aware training"
    )
    tf_log = keras2.tf.get_logger()
    level = tf_log.level
    try:
        # The cluster-preserving schemes train the centroids, not the kernels: TensorFlow warns, by design.
        tf_log.setLevel(logging.ERROR)
        seconds = fine_tune(quantized, model, train_x, train_y, settings, [])
    finally:
        tf_log.setLevel(level)
    settle_batch_statistics(quantized, train_x, config.seed, "quantization-aware training")
    return QatResult(quantized, QatStats(config, seconds, tuple(skipped)))


def _scheme(name: str) -> Any:
    """tfmot's quantization scheme for ``qat``, ``pqat``, ``cqat`` or ``pcqat``."""
    if name == "qat":
        return None  # quantize_apply's default: Default8BitQuantizeScheme
    combine = tfmot().experimental.combine
    if name == "pqat":
        return combine.Default8BitPrunePreserveQuantizeScheme()
    return combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=name == "pcqat")


def _foldable_batch_norms(model: Any) -> dict[str, str]:
    """BatchNormalization layers right after a convolution or dense layer without activation, with that layer.

    tfmot's 8-bit layout transforms train such a pair, both annotated, as one operation (no int8 step between
    them) and the converter folds the normalization into the kernel; left unannotated, the normalization would
    stay a float multiply-add the converter quantizes as two more operators.
    """
    layers = {layer.name: layer for layer in model.layers}
    foldable = {}
    for name, source in _predecessors(model).items():
        layer, before = layers[name], layers.get(source)
        if (
            type(layer).__name__ in ("BatchNormalization", "SyncBatchNormalization")
            and type(before).__name__ in ("Conv2D", "DepthwiseConv2D", "Dense")
            and before.get_config().get("activation") == "linear"
        ):
            foldable[name] = source
    return foldable


def _predecessors(model: Any) -> dict[str, str]:
    """Each single-input layer's input layer, by name, read from the model's own config (a layer shared by the
    models pruning and clustering built has inbound nodes in each of them)."""
    config = model.get_config()
    if "input_layers" not in config:  # Sequential: each layer takes the one before it
        names = [entry["config"]["name"] for entry in config["layers"] if entry["class_name"] != "InputLayer"]
        return dict(zip(names[1:], names[:-1], strict=True))
    found = {}
    for entry in config["layers"]:
        nodes = entry.get("inbound_nodes") or []
        if len(nodes) == 1 and len(nodes[0]) == 1:
            found[entry["name"]] = nodes[0][0][0]
    return found


def _quantization_aware(model: Any, scheme: str, frozen: tuple[str, ...]) -> tuple[Any, list[tuple[str, str]]]:
    """``model`` with every layer tfmot's 8-bit scheme supports annotated, then quantize_apply'd with ``scheme``."""
    keras, quantization = keras2.keras, tfmot().quantization.keras
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # deferred: TensorFlow
        default_8bit_quantize_registry,
    )

    registry = default_8bit_quantize_registry.Default8BitQuantizeRegistry()
    annotated_layers = {layer.name for layer in model.layers if registry.supports(layer) and layer.name not in frozen}
    foldable = _foldable_batch_norms(model)
    skipped: list[tuple[str, str]] = []

    def annotate(layer: Any) -> Any:
        if layer.name in frozen:
            # Left out and frozen: the converter quantizes it after training, its zeros untouched.
            layer.trainable = False
            skipped.append((layer.name, "pruned but not clustered: kept as it is, quantized after training"))
            return layer
        if layer.name in annotated_layers or foldable.get(layer.name) in annotated_layers:
            return quantization.quantize_annotate_layer(layer)
        if foldable.get(layer.name) in frozen:
            skipped.append((layer.name, f"follows {foldable[layer.name]}, left out: folded into it at conversion"))
            return layer
        if layer.weights:
            skipped.append((layer.name, f"{type(layer).__name__} is not supported by tfmot's 8-bit scheme"))
        return layer

    try:
        annotated = keras.models.clone_model(model, clone_function=annotate)
        chosen = _scheme(scheme)
        with quantization.quantize_scope():
            quantized = quantization.quantize_apply(annotated, *([chosen] if chosen is not None else []))
    except (ValueError, TypeError, RuntimeError) as exc:  # tfmot's refusals of a model it cannot wrap
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"tensorflow-model-optimization cannot make {model.name} quantization-aware: {first_line}"
        ) from exc
    for name, reason in skipped:
        log.info("quantization-aware training: %s left in float arithmetic while training: %s", name, reason)
    return quantized, skipped
