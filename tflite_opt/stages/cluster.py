"""Weight clustering with tensorflow-model-optimization, after pruning (if any) and before conversion.

Each clusterable layer's weights are replaced by the nearest of N shared values (k-means++ centroids,
fine-tuned), so the int8 file holds at most N distinct values per output channel and compresses well.
After pruning, the sparsity-preserving variant keeps the zeros. Keras model → ``cluster_weights`` layer
by layer (what tfmot cannot cluster is skipped with a note) → fine-tuning → ``strip_clustering``.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np

from tflite_opt.core.config import ClusterConfig
from tflite_opt.core.errors import UsageError
from tflite_opt.core.tfmot import tfmot
from tflite_opt.results.tuning import ClusterResult, ClusterStats, FineTuned
from tflite_opt.stages.fine_tune import FineTuning, Wrapped, fine_tune
from tflite_opt.stages.prune import clone_wrapped, for_tfmot, prunable_kernel
from tflite_opt.stages.translate import restore_into_keras3

log = logging.getLogger(__name__)

# Weights (non-zero ones, keeping sparsity) a layer needs per cluster for k-means++ to place its centroids.
MIN_POINTS_PER_CLUSTER = 2


def cluster_model(
    model: Any,
    train_x: np.ndarray,
    train_y: np.ndarray,
    config: ClusterConfig,
    preserve_sparsity: bool = False,
    progress: bool = False,
) -> ClusterResult:
    """Cluster each layer's weights to ``config.clusters`` shared values and fine-tune.

    Args:
        model: tf_keras, or Keras 3 (through its checked translation; given back in Keras 3).
        preserve_sparsity: keep the zeros of a pruned model (tfmot's sparsity-preserving clustering).
        progress: a bar of the fine-tuning's steps on a terminal.

    Raises:
        UsageError: too little training data, no layer tfmot can cluster, or a model it cannot wrap.

    Fine-tuning: :mod:`tflite_opt.stages.fine_tune`.
    """
    model, keras3_model = for_tfmot(model, train_x)

    def wrap(copy: Any, steps: int) -> Wrapped:
        wrapped, clustered, skipped = _clusterable(copy, config.clusters, preserve_sparsity)
        return Wrapped(wrapped, details=(clustered, skipped))

    settings = FineTuning.of(config, "clustering", progress)
    tuned = fine_tune(model, train_x, train_y, settings, wrap, tfmot().clustering.keras.strip_clustering)
    clustered, skipped = tuned.details
    clustered, unclustered = _really_clustered(tuned.model, clustered, config.clusters + preserve_sparsity)
    result = tuned.model if keras3_model is None else restore_into_keras3(keras3_model, tuned.model)
    stats = ClusterStats(
        config, tuned.record.seconds, clustered, tuple(skipped + unclustered), preserve_sparsity, tuned.record
    )
    return ClusterResult(result, stats)


def clustered_with(
    tuned: FineTuned,
    original: Any,
    train_x: np.ndarray,
    train_y: np.ndarray,
    config: ClusterConfig,
    progress: bool = False,
) -> FineTuned:
    """``tuned``, with its model clustered (keeping the zeros of a pruned one)."""
    clustered = cluster_model(
        tuned.model(original), train_x, train_y, config, preserve_sparsity=tuned.pruned is not None, progress=progress
    )
    return replace(tuned, clustered=clustered)


def _really_clustered(model: Any, names: tuple[str, ...], limit: int) -> tuple[tuple[str, ...], list]:
    """The layers whose kernel holds at most ``limit`` values, and (layer, reason) for those tfmot wrapped but
    left as they were (a DepthwiseConv2D's kernel, in tfmot 0.8)."""
    kept, left = [], []
    for name in names:
        values = len(np.unique(np.asarray(prunable_kernel(model.get_layer(name)))))
        if values <= limit:
            kept.append(name)
        else:
            left.append((name, f"tensorflow-model-optimization left its kernel unclustered ({values} values)"))
    for name, reason in left:
        log.info("clustering: %s: %s", name, reason)
    return tuple(kept), left


def _clusterable(model: Any, clusters: int, preserve_sparsity: bool) -> tuple[Any, tuple[str, ...], list]:
    """The model with every layer tfmot can cluster wrapped; the names clustered; (layer, reason) skipped."""
    clustering = tfmot().clustering.keras
    from tensorflow_model_optimization.python.core.clustering.keras.experimental import (  # deferred: TensorFlow
        cluster as experimental,  # sparsity-preserving clustering has no public name
    )

    wrap = experimental.cluster_weights if preserve_sparsity else clustering.cluster_weights
    params = {
        "number_of_clusters": clusters,
        "cluster_centroids_init": clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
    }
    if preserve_sparsity:
        params["preserve_sparsity"] = True
    clustered, skipped = [], []

    def cluster(layer: Any) -> Any:
        kernel = prunable_kernel(layer)
        if kernel is None:  # only kernels are clustered: BatchNormalization's gamma stays
            return layer
        # k-means++ needs points to spread its centroids over (tfmot fails deep inside training otherwise).
        points = int(np.count_nonzero(np.asarray(kernel))) if preserve_sparsity else int(np.prod(kernel.shape))
        if points < MIN_POINTS_PER_CLUSTER * clusters:
            # Frozen while the others are fine-tuned, so that a pruned layer keeps its zeros.
            layer.trainable = not preserve_sparsity
            skipped.append(
                (layer.name, f"{points} {'non-zero ' * preserve_sparsity}weights are too few for {clusters} clusters")
            )
            return layer
        try:
            wrapped = wrap(layer, **params)
        except (ValueError, TypeError) as exc:  # tfmot refuses a layer it has no clustering rule for
            skipped.append(
                (layer.name, str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__)
            )
            return layer
        clustered.append(layer.name)
        return wrapped

    with clustering.cluster_scope():
        wrapped_model = clone_wrapped(model, cluster)
    if not clustered:
        raise UsageError(f"{model.name} has no layer tensorflow-model-optimization can cluster")
    for name, reason in skipped:
        log.info("clustering: skipped %s: %s", name, reason)
    return wrapped_model, tuple(clustered), skipped
