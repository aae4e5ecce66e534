"""Pruning: sparsity after strip, skipped layers, refusals, and the zeros surviving conversion."""

import logging

import numpy as np
import pytest
from helpers import INPUT_SIZE, build_functional, build_keras3_sequential, build_sequential, keras3, mnist_digits

from tflite_opt.core import keras2
from tflite_opt.core.config import IoType, Mode, PruneConfig, Schedule
from tflite_opt.core.errors import TranslationError, UsageError
from tflite_opt.core.keras3 import is_keras3_model
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.core.tflite_file import read_tflite
from tflite_opt.stages import prune
from tflite_opt.stages.convert import convert_keras
from tflite_opt.stages.data import ImageSize, load_dataset
from tflite_opt.stages.verify import file_layer_sparsity, sparsity_check

pytestmark = pytest.mark.slow
FAST = {"epochs": 2, "batch_size": 8, "learning_rate": 1e-3, "min_steps": 0}


@pytest.fixture(scope="module")
def digits(digit_folders):
    """Real labelled digits at the tiny models' input size."""
    _, evaluation = digit_folders
    data = load_dataset(evaluation, ImageSize(INPUT_SIZE, INPUT_SIZE, 1), require_labels=True)
    return data.model_input(Preprocessing()), data.labels


@pytest.mark.parametrize("schedule", list(Schedule))
@pytest.mark.parametrize("builder", [build_sequential, build_functional], ids=["sequential", "functional"])
def test_each_pruned_layer_is_within_one_point_of_the_target_after_strip(digits, builder, schedule):
    model = builder()
    result = prune.prune_model(model, *digits, PruneConfig(target_sparsity=0.6, schedule=schedule, **FAST))
    assert result.stats.layers, "no layer was pruned"
    for layer in result.stats.layers:
        assert abs(layer.sparsity - 0.6) <= 0.01, layer
    kept = {layer.name for layer in result.model.layers}
    assert not any(name.startswith("prune_low_magnitude") for name in kept)


def test_pruning_leaves_the_callers_model_untouched(digits):
    model = build_sequential()
    before = [w.copy() for w in model.get_weights()]
    prune.prune_model(model, *digits, PruneConfig(target_sparsity=0.5, **FAST))
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


def test_each_fine_tuning_epoch_is_logged_and_the_record_says_what_was_kept(digits, caplog):
    with caplog.at_level(logging.INFO, logger="tflite_opt"):
        result = prune.prune_model(build_sequential(), *digits, PruneConfig(target_sparsity=0.5, **FAST))
    record = result.stats.tuning
    lines = [r.getMessage() for r in caplog.records if r.name == "tflite_opt.stages.fine_tune"]
    epochs = [line for line in lines if ", epoch " in line and "loss" in line]
    assert [line.split(", epoch ")[1].split(" (")[0] for line in epochs] == [
        f"{e}/{record.epochs}" for e in range(1, record.epochs + 1)
    ]
    assert all(" s left): loss " in line for line in epochs) and "about 0 s left" in epochs[-1]
    assert lines[0].startswith(f"pruning: fine-tuning at learning rate 0.001, {record.epochs} epoch(s) of ")
    assert all(line.startswith("pruning: learning rate 0.001") for line in epochs)
    # The held-out part is scored once the schedule has reached the target: in the last epochs only.
    assert "held-out top-1" in epochs[-1] and "held-out top-1" not in epochs[0]
    assert lines[-1] == f"pruning: {record.describe()}"
    assert record.learning_rate_given and record.learning_rate == 1e-3 and len(record.trials) == 1
    assert record.fit_samples + record.held_out_samples == len(digits[0])
    assert result.stats.seconds == record.seconds > 0


def test_zeros_survive_into_the_int8_weights(digits):
    model = build_sequential()
    result = prune.prune_model(model, *digits, PruneConfig(target_sparsity=0.7, **FAST))
    parsed = read_tflite(convert_keras(result.model, Mode.FULL_INT8, digits[0], IoType.INT8, progress=False))
    in_file = file_layer_sparsity(parsed, result.stats.pruned_layer_names)
    assert set(in_file) == set(result.stats.pruned_layer_names)
    for layer in result.stats.layers:
        weights, nonzero = in_file[layer.layer]
        assert weights == layer.weights
        assert 1 - nonzero / weights >= layer.sparsity - 0.01
    assert sparsity_check(parsed, {layer.layer: layer.sparsity for layer in result.stats.layers}).passed


def test_two_by_four_skips_the_single_channel_first_conv_with_a_note(digits):
    result = prune.prune_model(build_sequential(), *digits, PruneConfig(m_by_n=(2, 4), **FAST))
    skipped = dict(result.stats.skipped)
    assert "1 input channels cannot form groups of 4" in skipped["conv"]
    assert "conv" not in result.stats.pruned_layer_names
    assert result.stats.config.target_sparsity == 0.5
    hidden = next(layer for layer in result.model.layers if layer.name == "hidden").kernel.numpy()
    groups = hidden.T.reshape(-1, 4)  # groups run along the input channels
    assert np.all((groups == 0).sum(axis=1) >= 2)


def test_an_unsupported_layer_is_skipped_with_a_note(digits):
    keras = keras2.keras

    class Doubler(keras.layers.Layer):
        def call(self, inputs):
            return inputs * 2.0

    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 1))
    x = keras.layers.Flatten()(inputs)
    x = Doubler(name="doubler")(x)
    x = keras.layers.Dense(32, name="hidden")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, name="scores")(x))
    result = prune.prune_model(model, *digits, PruneConfig(target_sparsity=0.5, **FAST))
    assert "Doubler is not supported" in dict(result.stats.skipped)["doubler"]
    assert set(result.stats.pruned_layer_names) == {"hidden", "scores"}


def test_depthwise_convolutions_are_skipped_because_tfmot_prunes_none_of_their_weights(digits):
    result = prune.prune_model(build_sequential(), *digits, PruneConfig(target_sparsity=0.5, **FAST))
    assert "does not prune DepthwiseConv2D" in dict(result.stats.skipped)["depthwise"]
    assert set(result.stats.pruned_layer_names) == {"conv", "hidden", "scores"}


def test_a_model_with_nothing_to_prune_is_refused_with_the_reasons(digits):
    keras = keras2.keras
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 1))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))
    with pytest.raises(UsageError, match="no layer that can be pruned"):
        prune.prune_model(model, *digits, PruneConfig(**FAST))


def test_too_little_training_data_to_fine_tune_and_measure_it_is_refused(digits):
    x, y = digits
    with pytest.raises(UsageError, match="at least 10 labelled training samples .* got 5"):
        prune.prune_model(build_sequential(), x[:5], y[:5], PruneConfig(batch_size=64))


def test_a_training_set_smaller_than_the_batch_size_is_fine_tuned_in_smaller_batches(digits):
    x, y = digits
    result = prune.prune_model(build_sequential(), x[:40], y[:40], PruneConfig(target_sparsity=0.5, batch_size=64))
    record = result.stats.tuning
    assert record.fit_samples + record.held_out_samples == 40
    assert record.batch_size == record.fit_samples // 4  # four steps an epoch at least
    steps_per_epoch = -(-record.fit_samples // record.batch_size)
    assert record.epochs * steps_per_epoch >= PruneConfig().min_steps  # and enough steps in all


@pytest.fixture(scope="module")
def digits28():
    """Real labelled digits at the Keras 3 test models' input size, 28x28."""
    images, labels = mnist_digits(64)
    return images[..., np.newaxis].astype(np.float32) / 255.0, labels


def test_a_keras3_model_is_pruned_through_its_translation_and_given_back_in_keras3(digits28):
    model = build_keras3_sequential()
    images, labels = digits28
    result = prune.prune_model(model, images, labels, PruneConfig(target_sparsity=0.5, **FAST))
    assert is_keras3_model(result.model) and result.model is not model
    assert {layer.layer for layer in result.stats.layers} == {"conv", "conv2", "hidden", "scores"}
    kept = {layer.name: layer.get_weights()[0] for layer in result.model.layers if layer.name in ("conv", "hidden")}
    assert all(abs(np.mean(kernel == 0) - 0.5) <= 0.01 for kernel in kept.values())
    assert not np.any(model.get_layer("conv").get_weights()[0] == 0)  # the caller's model is the unpruned reference


def test_a_keras3_model_the_translation_refuses_is_not_pruned_and_the_refusal_names_the_layer(digits28):
    keras = keras3()
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Flatten()(keras.layers.GaussianNoise(0.1, name="noise")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10, name="scores")(x))
    with pytest.raises(TranslationError, match=r"layer 'noise' \(GaussianNoise\) is not on the list"):
        prune.prune_model(model, *digits28, PruneConfig(target_sparsity=0.5, **FAST))
