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
from dataclasses import replace
from typing import Any

import numpy as np

from tflite_opt.core import keras2
from tflite_opt.core.config import QatConfig
from tflite_opt.core.errors import UsageError
from tflite_opt.core.text import by_reason
from tflite_opt.core.tfmot import tfmot
from tflite_opt.core.variant import QatScheme
from tflite_opt.results.tuning import FineTuned, QatResult, QatStats
from tflite_opt.stages.fine_tune import FineTuning, Wrapped, fine_tune
from tflite_opt.stages.prune import for_tfmot

log = logging.getLogger(__name__)


def quantization_aware(
    tuned: FineTuned,
    original: Any,
    train_x: np.ndarray,
    train_y: np.ndarray,
    config: QatConfig,
    progress: bool = False,
) -> FineTuned:
    """``tuned``, with its model fine-tuned quantization-aware in the scheme that keeps what came before."""
    # Pruned layers clustering skipped: the cluster-preserving schemes would lose their zeros.
    frozen = tuple(name for name, _ in tuned.clustered.stats.skipped) if tuned.clustered and tuned.pruned else ()
    qat = quantization_aware_model(tuned.model(original), train_x, train_y, config, tuned.scheme, frozen, progress)
    return replace(tuned, qat=qat)


def quantization_aware_model(
    model: Any,
    train_x: np.ndarray,
    train_y: np.ndarray,
    config: QatConfig,
    scheme: QatScheme = QatScheme.QAT,
    frozen: tuple[str, ...] = (),
    progress: bool = False,
) -> QatResult:
    """Fine-tune ``model`` (tf_keras, or Keras 3 through its checked translation) with int8 simulated.

    ``scheme``: ``qat`` (tfmot's default 8-bit), or for a pruned and/or clustered model the collaborative
    scheme that keeps their work through the fine-tuning: ``pqat`` (zeros), ``cqat`` (shared values),
    ``pcqat`` (both). ``frozen``: layers whose weights must not move (pruned layers clustering skipped: the
    cluster-preserving schemes would not keep their zeros). ``progress``: a bar of the fine-tuning's steps on a
    terminal.

    Raises:
        UsageError: too little training data, or a model tfmot cannot make quantization-aware (its message).
    """
    model, _ = for_tfmot(model, train_x)
    model = separable_as_depthwise_and_pointwise(model, train_x[:SEPARABLE_CHECK_SAMPLES])

    def wrap(copy: Any, steps: int) -> Wrapped:
        quantized, skipped = _quantization_aware(copy, scheme, frozen)
        return Wrapped(quantized, details=skipped)

    settings = FineTuning.of(config, "quantization-aware training", progress)
    tf_log = keras2.tf.get_logger()
    level = tf_log.level
    try:
        # The cluster-preserving schemes train the centroids, not the kernels: TensorFlow warns, by design.
        tf_log.setLevel(logging.ERROR)
        tuned = fine_tune(model, train_x, train_y, settings, wrap, lambda quantized: quantized)
    finally:
        tf_log.setLevel(level)
    return QatResult(tuned.model, QatStats(config, tuned.record.seconds, tuple(tuned.details), tuned.record))


# Training samples on which the model with its separable convolutions split must give the model's outputs.
SEPARABLE_CHECK_SAMPLES = 16
SEPARABLE_CLASSES = ("SeparableConv2D",)
DEPTHWISE_SUFFIX = "_depthwise"


def separable_as_depthwise_and_pointwise(model: Any, sample: np.ndarray) -> Any:
    """``model`` with each SeparableConv2D rebuilt as the DepthwiseConv2D and 1x1 Conv2D it computes.

    tfmot's 8-bit scheme has no layer rule for SeparableConv2D, so quantization-aware training left it (and the
    BatchNormalization after it) in float; both halves have rules, the pointwise one keeps the layer's name (the
    converter writes the same two operators either way) and a BatchNormalization after it folds into it. The
    rebuilt model must give the model's outputs on ``sample``; where it does not, or where the model is not a
    plain graph of layers (a shared or nested separable convolution), the model is used as it is.
    """
    keras = keras2.keras
    config = _graph_config(model)
    separable = [
        entry
        for entry in (config or {}).get("layers", [])
        if entry["class_name"] in SEPARABLE_CLASSES and len(entry.get("inbound_nodes") or []) == 1
    ]
    if not separable:
        return model
    layers = []
    for entry in config["layers"]:
        layers += _split_separable(entry) if entry in separable else [entry]
    rebuilt = keras.Model.from_config({**config, "layers": layers})
    for layer in (layer for layer in rebuilt.layers if layer.weights):
        source = layer.name.removesuffix(DEPTHWISE_SUFFIX)
        original = model.get_layer(source)
        if type(original).__name__ not in SEPARABLE_CLASSES:
            layer.set_weights(original.get_weights())
        elif layer.name == source:  # pointwise kernel and bias
            layer.set_weights(original.get_weights()[1:])
        else:
            layer.set_weights(original.get_weights()[:1])
    expected = np.asarray(model(sample, training=False))
    if not np.allclose(np.asarray(rebuilt(sample, training=False)), expected, rtol=1e-4, atol=1e-5):
        log.warning("quantization-aware training: splitting the separable convolutions changed the outputs; kept")
        return model
    log.info(
        "quantization-aware training: %s trained as depthwise and pointwise convolutions",
        ", ".join(entry["name"] for entry in separable),
    )
    return rebuilt


def _graph_config(model: Any) -> dict[str, Any] | None:
    """The model's functional config (a Sequential model's written as one), or None for a nested model."""
    config = model.get_config()
    if any(entry["class_name"] in ("Functional", "Sequential", "Model") for entry in config.get("layers", [])):
        return None
    if "input_layers" in config:
        return config
    entries = config.get("layers", [])
    if not entries or entries[0]["class_name"] != "InputLayer":
        return None
    chained = []
    for before, entry in zip([None, *entries], entries, strict=False):
        name = entry["config"]["name"]
        inbound = [[[before["config"]["name"], 0, 0, {}]]] if before is not None else []
        chained.append({**entry, "name": name, "inbound_nodes": inbound})
    first, last = entries[0]["config"]["name"], entries[-1]["config"]["name"]
    return {"name": config["name"], "layers": chained, "input_layers": [[first, 0, 0]], "output_layers": [[last, 0, 0]]}


def _split_separable(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """A SeparableConv2D's config entry as a DepthwiseConv2D's and a 1x1 Conv2D's that takes its output."""
    name, c = entry["name"], entry["config"]
    depthwise = {
        key: c[key] for key in ("kernel_size", "strides", "padding", "data_format", "dilation_rate", "depth_multiplier")
    }
    depthwise.update(name=name + DEPTHWISE_SUFFIX, use_bias=False, activation="linear", trainable=c["trainable"])
    pointwise = {
        "name": name,
        "filters": c["filters"],
        "kernel_size": (1, 1),
        "use_bias": c["use_bias"],
        "activation": c["activation"],
        "data_format": c["data_format"],
        "trainable": c["trainable"],
    }
    return [
        {"class_name": "DepthwiseConv2D", "name": depthwise["name"], "config": depthwise,
         "inbound_nodes": entry["inbound_nodes"]},
        {"class_name": "Conv2D", "name": name, "config": pointwise,
         "inbound_nodes": [[[depthwise["name"], 0, 0, {}]]]},
    ]  # fmt: skip


def _scheme(scheme: QatScheme) -> Any:
    """tfmot's quantization scheme for ``qat``, ``pqat``, ``cqat`` or ``pcqat``, each with :func:`_relu_layout`."""
    combine = tfmot().experimental.combine
    if scheme is QatScheme.QAT:
        return _with_relu_layout(tfmot().quantization.keras.default_8bit.Default8BitQuantizeScheme)()
    if scheme is QatScheme.PQAT:
        return _with_relu_layout(combine.Default8BitPrunePreserveQuantizeScheme)()
    return _ClusterPreserving(preserve_sparsity=scheme is QatScheme.PCQAT)


def _with_relu_layout(scheme_class: type) -> type:
    """``scheme_class`` (one of tfmot's default 8-bit schemes) with :func:`_relu_layout` as its layout transform."""

    class Scheme(scheme_class):
        def get_layout_transformer(self) -> Any:
            return _relu_layout()

    return Scheme


def _relu_layout() -> Any:
    """tfmot's default 8-bit layout transform, with a Conv2D, DepthwiseConv2D or Dense right before a ReLU layer
    trained the way it is before a BatchNormalization and a ReLU: its kernel quantized, no int8 step before the ReLU.

    tfmot's rule for that pair (``LayerReLUQuantize``) gives the layer no quantization at all, kernel included:
    its weights trained without the int8 they will have, and the prune- and cluster-preserving schemes kept
    neither its zeros nor its shared values (MobileNetV3's squeeze-and-excite, Conv2D then ReLU, lost most of its
    zeros). No other rule of the transform gives a layer with a kernel that configuration.
    """
    from tensorflow_model_optimization.python.core.quantization.keras import (  # deferred: TensorFlow
        quantize_aware_activation,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # deferred: TensorFlow
        default_8bit_quantize_configs,
        default_8bit_quantize_layout_transform,
    )

    no_quantization = default_8bit_quantize_configs.NoOpQuantizeConfig
    weighted = (keras2.keras.layers.Conv2D, keras2.keras.layers.DepthwiseConv2D, keras2.keras.layers.Dense)

    class Layout(default_8bit_quantize_layout_transform.Default8BitQuantizeLayoutTransform):
        def apply(self, model: Any, layer_quantize_map: dict[str, Any]) -> Any:
            transformed, quantize_map = super().apply(model, layer_quantize_map)
            for layer in transformed.layers:
                settings = quantize_map.get(layer.name, {})
                if isinstance(layer, weighted) and isinstance(settings.get("quantize_config"), no_quantization):
                    del settings["quantize_config"]  # the scheme's registry gives it its kernel quantizer
                    if layer.activation is keras2.keras.activations.linear:
                        layer.activation = quantize_aware_activation.NoOpActivation()  # fused into the ReLU
            return transformed, quantize_map

    return Layout()


def _ClusterPreserving(preserve_sparsity: bool) -> Any:  # noqa: N802 (stands for the class it builds)
    """tfmot's cluster-preserving scheme, with two of its registry's habits changed.

    It quantizes the output of a layer outside the annotated ones only where the default 8-bit registry can:
    tfmot's own takes every layer without trainable weights as supported, so a frozen BatchNormalization after a
    layer left out (pruned, not clustered) was asked for a configuration it has none of, and the whole model was
    refused. And each layer has a kernel quantizer of its own: tfmot's registry shares one among all the layers of
    a kind, and the first without zeros (an unpruned first convolution) turned zero-keeping off for all the others.
    """
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (  # deferred
        cluster_preserve_quantize_registry as cluster_registry,  # (TensorFlow)
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # deferred: TensorFlow
        default_8bit_quantize_registry,
    )

    default = default_8bit_quantize_registry.Default8BitQuantizeRegistry()

    class Registry(cluster_registry.Default8bitClusterPreserveQuantizeRegistry):
        def supports(self, layer: Any) -> bool:
            return super().supports(layer) and default.supports(layer)

        def get_quantize_config(self, layer: Any) -> Any:
            config = super().get_quantize_config(layer)
            shared = getattr(config, "weight_quantizer", None)
            if any(shared is quantizer for quantizer in self._config_quantizer_map.values()):
                config.weight_quantizer = type(shared)(preserve_sparsity)
            return config

    class Scheme(_with_relu_layout(tfmot().experimental.combine.Default8BitClusterPreserveQuantizeScheme)):
        def get_quantize_registry(self) -> Any:
            return Registry(self.preserve_sparsity)

    return Scheme(preserve_sparsity=preserve_sparsity)


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


def _same_scale_layers() -> tuple[type, ...]:
    """Layers TFLite computes with their input's int8 scale (deferred: tf_keras loads TensorFlow)."""
    return (keras2.keras.layers.AveragePooling2D, keras2.keras.layers.AveragePooling1D)


# TFLite's AVERAGE_POOL_2D takes the same int8 scale in and out; a range learnt for its output conflicts with that
# where a Concatenate ties the scales too (DenseNet's transitions): the converter then refuses the model.
SAME_SCALE_REASON = "average pooling keeps its input's int8 scale in TFLite: no range of its own is learnt"


# The activations tfmot's Default8BitActivationQuantizeConfig has a rule for; it refuses an Activation of any other.
ACTIVATIONS_WITH_RULE = frozenset({"relu", "swish", "gelu", "relu6", "linear", "softmax", "sigmoid", "tanh"})


def _activation_without_rule(layer: Any) -> bool:
    """An Activation layer computing a function tfmot's 8-bit scheme has no rule for (hard_sigmoid, hard_swish)."""
    function = getattr(layer, "activation", None)
    return isinstance(layer, keras2.keras.layers.Activation) and (
        getattr(function, "__name__", None) not in ACTIVATIONS_WITH_RULE
    )


def _quantization_aware(model: Any, scheme: QatScheme, frozen: tuple[str, ...]) -> tuple[Any, list[tuple[str, str]]]:
    """``model`` with every layer tfmot's 8-bit scheme supports annotated, then quantize_apply'd with ``scheme``."""
    keras, quantization = keras2.keras, tfmot().quantization.keras
    same_scale = _same_scale_layers()
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # deferred: TensorFlow
        default_8bit_quantize_configs,
        default_8bit_quantize_registry,
    )

    output_only = default_8bit_quantize_configs.Default8BitOutputQuantizeConfig

    registry = default_8bit_quantize_registry.Default8BitQuantizeRegistry()
    annotated_layers = {
        layer.name
        for layer in model.layers
        if registry.supports(layer)
        and layer.name not in frozen
        and not isinstance(layer, same_scale)
        and not _activation_without_rule(layer)
    }
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
        if isinstance(layer, keras.layers.Multiply) or _activation_without_rule(layer):
            # tfmot's 8-bit scheme leaves Multiply out, so no range is learnt for its product; where a
            # squeeze-and-excite shares a hard-swish (x * hard_sigmoid(x)), the converter then leaves that MUL in float.
            # An Activation it has no rule for (hard_sigmoid, hard_swish) it takes, then refuses the whole model.
            return quantization.quantize_annotate_layer(layer, quantize_config=output_only())
        if foldable.get(layer.name) in frozen:
            skipped.append((layer.name, f"follows {foldable[layer.name]}, left out: folded into it at conversion"))
            return layer
        if isinstance(layer, same_scale):
            skipped.append((layer.name, SAME_SCALE_REASON))
        elif not isinstance(layer, keras.layers.InputLayer):
            # A weightless one too (x + 3 of a hard-swish, Rescaling): it computes in float while training, and
            # the converter calibrates its range after training.
            skipped.append((layer.name, f"{type(layer).__name__} is not supported by tfmot's 8-bit scheme"))
        return layer

    try:
        annotated = keras.models.clone_model(model, clone_function=annotate)
        with quantization.quantize_scope({"Default8BitOutputQuantizeConfig": output_only}):
            quantized = quantization.quantize_apply(annotated, _scheme(scheme))
    except (ValueError, TypeError, RuntimeError) as exc:  # tfmot's refusals of a model it cannot wrap
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"tensorflow-model-optimization cannot make {model.name} quantization-aware: {first_line}"
        ) from exc
    for line in by_reason(skipped):
        log.info("quantization-aware training: left in float arithmetic while training: %s", line)
    return quantized, skipped
