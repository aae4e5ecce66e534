"""Weight clustering: at most N shared values per layer, the zeros of a pruned model kept, read back from the file."""

import numpy as np
import pytest
from helpers import build_functional, build_keras3_sequential, mnist_digits

from tflite_opt.core.config import ClusterConfig, IoType, Mode, PruneConfig
from tflite_opt.core.errors import UsageError
from tflite_opt.core.keras3 import is_keras3_model
from tflite_opt.core.tflite_file import read_tflite
from tflite_opt.stages.cluster import cluster_model
from tflite_opt.stages.convert import convert_keras
from tflite_opt.stages.load import describe_classifier
from tflite_opt.stages.prune import prune_model
from tflite_opt.stages.verify import clusters_kept_check, file_layer_clusters, pruning_kept_check

pytestmark = pytest.mark.slow
FAST = {"epochs": 1, "batch_size": 16, "learning_rate": 1e-4, "min_steps": 0}


@pytest.fixture(scope="module")
def digits12():
    images, labels = mnist_digits(160)
    small = images[:, ::2, ::2][:, 1:13, 1:13]  # 12x12, the tiny models' input
    return small[..., np.newaxis].astype(np.float32) / 255.0, labels


def test_every_kernel_keeps_at_most_n_values_per_channel_in_the_int8_file(digits12):
    model = build_functional()
    result = cluster_model(model, *digits12, ClusterConfig(clusters=8, **FAST))
    assert set(result.stats.clustered) == {"stem", "hidden", "logits"}  # kernels only: BatchNorm's gamma stays
    assert "left its kernel unclustered" in dict(result.stats.skipped)["dw"]  # tfmot 0.8 on a DepthwiseConv2D
    for name in result.stats.clustered:
        kernel = result.model.get_layer(name).get_weights()[0]
        assert len(np.unique(kernel)) <= 8
    content = convert_keras(result.model, Mode.FULL_INT8, digits12[0][:32], IoType.INT8, progress=False)
    spec = describe_classifier(result.model)
    assert clusters_kept_check(read_tflite(content), result.stats, spec).passed
    found = file_layer_clusters(read_tflite(content), spec.scopes_for(result.stats.clustered))
    assert found.keys() == set(result.stats.clustered) and max(found.values()) <= 8


def test_the_check_fails_naming_the_layer_when_a_file_has_more_values_than_clusters(digits12):
    model = build_functional()
    result = cluster_model(model, *digits12, ClusterConfig(clusters=4, **FAST))
    unclustered = convert_keras(model, Mode.FULL_INT8, digits12[0][:32], IoType.INT8, progress=False)
    check = clusters_kept_check(read_tflite(unclustered), result.stats, describe_classifier(model))
    assert not check.passed and "clustering did not survive conversion (at most 4): stem" in check.detail


def test_clustering_a_pruned_model_keeps_its_zeros(digits12):
    pruned = prune_model(
        build_functional(), *digits12, PruneConfig(target_sparsity=0.5, epochs=2, batch_size=16, min_steps=0)
    )
    result = cluster_model(pruned.model, *digits12, ClusterConfig(clusters=8, **FAST), preserve_sparsity=True)
    content = convert_keras(result.model, Mode.FULL_INT8, digits12[0][:32], IoType.INT8, progress=False)
    spec = describe_classifier(result.model)
    assert pruning_kept_check(read_tflite(content), pruned.stats, spec).passed
    assert clusters_kept_check(read_tflite(content), result.stats, spec).passed


def test_a_keras3_model_is_clustered_through_its_translation_and_given_back_in_keras3():
    images, labels = mnist_digits(64)
    result = cluster_model(build_keras3_sequential(), images[..., None] / 255.0, labels, ClusterConfig(**FAST))
    assert is_keras3_model(result.model)
    assert len(np.unique(result.model.get_layer("hidden").get_weights()[0])) <= 16


def test_bad_cluster_counts_and_too_little_data_are_refused(digits12):
    with pytest.raises(UsageError, match="--cluster takes 2 to 256"):
        ClusterConfig(clusters=1)
    with pytest.raises(UsageError, match="at least 10 labelled training samples"):
        cluster_model(build_functional(), digits12[0][:8], digits12[1][:8], ClusterConfig())
