"""Magnitude pruning with tensorflow-model-optimization, before conversion.

Keras model → ``prune_low_magnitude`` (layer by layer, skipping what cannot be
pruned) → fine-tuning with ``UpdatePruningStep`` → ``strip_pruning``.
``python -m tflite_opt.prune`` prunes and saves a stripped Keras model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tflite_opt.config import PruneConfig, Schedule
from tflite_opt.errors import UsageError

# The weight tfmot prunes for each kind of layer, in the order to look for it
# (SeparableConv2D: its pointwise kernel, not its depthwise one).
PRUNABLE_KERNELS = ("kernel", "pointwise_kernel", "depthwise_kernel")


@dataclass(frozen=True)
class LayerSparsity:
    layer: str
    weights: int
    nonzero: int

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero / self.weights if self.weights else 0.0


@dataclass(frozen=True)
class PruneStats:
    """What pruning did: settings, per-layer sparsity after strip, skipped layers, time."""

    config: PruneConfig
    layers: tuple[LayerSparsity, ...]
    skipped: tuple[tuple[str, str], ...]
    seconds: float

    @property
    def pruned_layer_names(self) -> tuple[str, ...]:
        return tuple(layer.layer for layer in self.layers)


@dataclass(frozen=True)
class PruneResult:
    """A stripped pruned model and what pruning did to it."""

    model: Any
    stats: PruneStats


def _tfmot():
    import tensorflow_model_optimization as tfmot

    from tflite_opt.keras2 import keras  # noqa: F401  (Keras 2 must be set up first)

    return tfmot


def _wrapper_class() -> type:
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude

    return PruneLowMagnitude


def tfmot_prune_scope():
    """The scope in which models saved mid-pruning (with PruneLowMagnitude wrappers) deserialize."""
    return _tfmot().sparsity.keras.prune_scope()


def strip_if_mid_pruning(model: Any) -> Any:
    """The model without pruning wrappers; unchanged when it has none."""
    if any(isinstance(layer, _wrapper_class()) for layer in model.layers):
        return _tfmot().sparsity.keras.strip_pruning(model)
    return model


def _prunable_kernel(layer: Any) -> Any | None:
    for name in PRUNABLE_KERNELS:
        kernel = getattr(layer, name, None)
        if kernel is not None:
            return kernel
    return None


def skip_reason(layer: Any, config: PruneConfig) -> str | None:
    """Why a layer is not pruned, or None when it is."""
    from tensorflow_model_optimization.python.core.sparsity.keras import prunable_layer, prune_registry

    if isinstance(layer, prunable_layer.PrunableLayer) or hasattr(layer, "get_prunable_weights"):
        return None
    registry = prune_registry.PruneRegistry
    if not registry.supports(layer):
        return f"{type(layer).__name__} is not supported by tensorflow-model-optimization"
    kernel = _prunable_kernel(layer)
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
        kernel = _prunable_kernel(layer)
        if kernel is None or (layer_names is not None and layer.name not in layer_names):
            continue
        values = np.asarray(kernel.numpy())
        rows.append(LayerSparsity(layer.name, int(values.size), int(np.count_nonzero(values))))
    return tuple(rows)


def output_is_probability(model: Any, sample: np.ndarray) -> bool:
    """True when the model ends in a softmax (rows are non-negative and sum to 1)."""
    scores = np.asarray(model(sample[:8], training=False))  # a direct call: no predict function to trace
    return bool(np.all(scores >= 0) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3))


def wrap_for_pruning(model: Any, config: PruneConfig, steps: int) -> tuple[Any, list[tuple[str, str]]]:
    """``prune_low_magnitude`` on every layer that supports it; the others are left as they are.

    Raises:
        UsageError: a subclassed model, or no layer that can be pruned.
    """
    from tflite_opt.keras2 import keras

    tfmot = _tfmot()
    sparsity = tfmot.sparsity.keras
    if not isinstance(model, keras.Sequential) and not getattr(model, "_is_graph_network", False):
        raise UsageError(f"{model.name} is a subclassed model; pruning needs a Sequential or Functional model")
    if config.schedule is Schedule.CONSTANT:
        schedule = sparsity.ConstantSparsity(config.target_sparsity, begin_step=0, frequency=max(1, steps // 20))
    else:
        # Reach the target after 70% of fine-tuning and hold it for the rest, so accuracy can recover.
        end_step = max(1, int(0.7 * steps))
        schedule = sparsity.PolynomialDecay(
            initial_sparsity=config.initial_sparsity,
            final_sparsity=config.target_sparsity,
            begin_step=0,
            end_step=end_step,
            frequency=max(1, end_step // 10),
        )
    skipped: list[tuple[str, str]] = []
    params = {"pruning_schedule": schedule, "block_size": config.block_size, "sparsity_m_by_n": config.m_by_n}

    def wrap(layer):
        reason = skip_reason(layer, config)
        if reason is None:
            return sparsity.prune_low_magnitude(layer, **params)
        if _prunable_kernel(layer) is not None or not _supported(layer):
            skipped.append((layer.name, reason))
        return layer

    # The wrappers share the wrapped layers' variables, so work on a copy: the caller's
    # model stays the unpruned reference.
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    wrapped = keras.models.clone_model(copy, clone_function=wrap)
    if not any(isinstance(layer, _wrapper_class()) for layer in wrapped.layers):
        raise UsageError(f"{model.name} has no layer that can be pruned: " + "; ".join(f"{n}: {r}" for n, r in skipped))
    return wrapped, skipped


def _supported(layer: Any) -> bool:
    """Layers with nothing to prune (pooling, activations, BatchNorm) are supported and need no note."""
    from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry

    return prune_registry.PruneRegistry.supports(layer)


def prune_model(
    model: Any,
    train_x: np.ndarray,
    train_y: np.ndarray,
    config: PruneConfig | None = None,
    verbose: int = 2,
) -> PruneResult:
    """Prune and fine-tune a Keras classifier, then strip the pruning wrappers.

    Args:
        model: a tf_keras Sequential or Functional classifier.
        train_x: float32 model input (N, H, W, C), already preprocessed.
        train_y: integer class labels (N,).
        config: sparsity target, schedule and fine-tuning settings.
        verbose: Keras's progress output during fine-tuning (0 silent, 1 bar, 2 a line per epoch).

    Raises:
        UsageError: nothing to prune, a subclassed model, or too little training data.
    """
    from tflite_opt.keras2 import keras, tf

    tfmot = _tfmot()
    config = config or PruneConfig()
    if len(train_x) < config.batch_size:
        raise UsageError(
            f"pruning needs at least --batch-size={config.batch_size} training samples, got {len(train_x)}"
        )
    steps_per_epoch = int(np.ceil(len(train_x) / config.batch_size))
    keras.utils.set_random_seed(config.seed)
    wrapped, skipped = wrap_for_pruning(model, config, steps_per_epoch * config.epochs)
    from_logits = not output_is_probability(model, train_x)
    wrapped.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        metrics=["accuracy"],
    )
    dataset = (
        tf.data.Dataset.from_tensor_slices((train_x.astype(np.float32), train_y))
        .shuffle(len(train_x), seed=config.seed, reshuffle_each_iteration=True)
        .batch(config.batch_size)
    )
    started = time.perf_counter()
    wrapped.fit(dataset, epochs=config.epochs, verbose=verbose, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    seconds = time.perf_counter() - started
    stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
    pruned_names = [layer.layer.name for layer in wrapped.layers if isinstance(layer, _wrapper_class())]
    return PruneResult(
        model=stripped,
        stats=PruneStats(
            config=config, layers=layer_sparsity(stripped, pruned_names), skipped=tuple(skipped), seconds=seconds
        ),
    )


def _pair(text: str | None, separator: str, flag: str) -> tuple[int, int] | None:
    if not text:
        return None
    parts = text.replace(" ", "").split(separator)
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise UsageError(f"--{flag} takes two integers as A{separator}B, got {text!r}")
    return int(parts[0]), int(parts[1])


def define_pruning_flags(flag_values) -> None:
    """The pruning flags shared by ``convert --prune`` and ``python -m tflite_opt.prune``."""
    from absl import flags

    group = {"flag_values": flag_values, "module_name": "Pruning (tensorflow-model-optimization)"}
    default = PruneConfig()
    flags.DEFINE_bool("prune", False, "Prune (magnitude) and fine-tune before converting.", **group)
    flags.DEFINE_float("target-sparsity", default.target_sparsity, "Fraction of weights set to zero.", **group)
    flags.DEFINE_enum(
        "pruning-schedule", default.schedule.value, [s.value for s in Schedule], "How sparsity ramps up.", **group
    )
    flags.DEFINE_integer("pruning-epochs", default.epochs, "Fine-tuning epochs.", **group)
    flags.DEFINE_integer("batch-size", default.batch_size, "Fine-tuning batch size.", **group)
    flags.DEFINE_float("learning-rate", default.learning_rate, "Fine-tuning learning rate (Adam).", **group)
    flags.DEFINE_string("block-size", "1,1", "Prune blocks of HxW weights together, e.g. 1,4.", **group)
    flags.DEFINE_string("sparsity-m-by-n", None, "Structured sparsity: m zeros in every n weights, e.g. 2:4.", **group)


def prune_config_from_flags(fv, always: bool = False) -> PruneConfig | None:
    """A PruneConfig when --prune is given (or ``always``), else None."""
    if not (always or fv["prune"].value):
        return None
    return PruneConfig(
        target_sparsity=fv["target-sparsity"].value,
        schedule=Schedule(fv["pruning-schedule"].value),
        epochs=fv["pruning-epochs"].value,
        batch_size=fv["batch-size"].value,
        learning_rate=fv["learning-rate"].value,
        block_size=_pair(fv["block-size"].value, ",", "block-size") or (1, 1),
        m_by_n=_pair(fv["sparsity-m-by-n"].value, ":", "sparsity-m-by-n"),
    )


def _define_cli_flags(flag_values) -> None:
    from absl import flags

    from tflite_opt.cli import define_preprocessing_flags, define_unsafe_flag

    define_pruning_flags(flag_values)
    define_preprocessing_flags(flag_values)
    define_unsafe_flag(flag_values, "Model and data")
    io = {"flag_values": flag_values, "module_name": "Model and data"}
    flags.DEFINE_string("model", None, "Keras model to prune. Default: the embedded MNIST CNN.", **io)
    flags.DEFINE_string("train-data", None, "Labelled training data: per-class folder or .npz with x and y.", **io)
    flags.DEFINE_string(
        "output", None, "Where to save the stripped model. Default: artifacts/<model>.pruned<N>.keras", **io
    )
    flags.DEFINE_bool("overwrite", False, "Replace an existing output file.", **io)
    flags.DEFINE_bool("verbose", False, "Show tracebacks and TensorFlow's own log.", **io)


def _run_cli(fv) -> int:
    from pathlib import Path

    from tflite_opt import default_model
    from tflite_opt.cli import preprocessing_from_flags
    from tflite_opt.config import Preprocessing
    from tflite_opt.fileio import atomic_save, refuse_existing
    from tflite_opt.load import describe_classifier, load_keras_model
    from tflite_opt.representative import ImageSize, load_dataset

    config = prune_config_from_flags(fv, always=True)
    if fv["model"].value:
        model_path = Path(fv["model"].value)
        if not fv["train-data"].value:
            raise UsageError(
                "pruning fine-tunes the model and needs labelled training data: pass --train-data "
                "(one subfolder per class, or an .npz file with arrays x and y)"
            )
        train_path = Path(fv["train-data"].value)
        preprocessing = preprocessing_from_flags(fv) or Preprocessing()
        name = model_path.name.split(".")[0]
    else:
        model_path, name = default_model.MODEL_PATH, default_model.MODEL_NAME
        train_path = Path(fv["train-data"].value) if fv["train-data"].value else default_model.TRAIN_FILE
        preprocessing = preprocessing_from_flags(fv) or default_model.PREPROCESSING
    output = Path(fv["output"].value or f"artifacts/{name}.pruned{config.percent}.keras")
    if output.suffix != ".keras":
        raise UsageError(f"--output must end in .keras, got {output}")
    refuse_existing([output], fv["overwrite"].value)
    model = load_keras_model(model_path, fv["allow-unsafe-deserialization"].value)
    spec = describe_classifier(model, name)
    train = load_dataset(train_path, ImageSize(spec.height, spec.width, spec.channels), require_labels=True)
    result = prune_model(model, train.model_input(preprocessing), train.labels, config)
    atomic_save(output, result.model.save, overwrite=fv["overwrite"].value)
    for layer in result.stats.layers:
        print(f"{layer.layer:<16} {layer.weights:>9} weights  {100 * layer.sparsity:5.1f}% zero")
    for layer, reason in result.stats.skipped:
        print(f"skipped {layer}: {reason}")
    print(f"pruned in {result.stats.seconds:.0f} s; saved the stripped model to {output}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tflite_opt.prune``: prune and fine-tune a model, save it stripped."""
    from tflite_opt.cli import run_cli

    return run_cli("tflite_opt.prune", argv, _define_cli_flags, _run_cli)


if __name__ == "__main__":
    import sys

    sys.exit(main())
