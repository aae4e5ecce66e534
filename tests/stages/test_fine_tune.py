"""Fine-tuning as trained models are fine-tuned: BatchNormalization kept, rate and epoch measured on held-out data."""

import contextlib
import gc
import io
import weakref

import numpy as np
import pytest
from helpers import INPUT_SIZE, build_functional, build_sequential, mnist_digits

from tflite_opt.core import keras2
from tflite_opt.core.config import PruneConfig
from tflite_opt.core.errors import UsageError
from tflite_opt.stages import fine_tune
from tflite_opt.stages.prune import prune_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits12():
    images, labels = mnist_digits(1200, seed=3)
    small = images[:, ::2, ::2][:, 1:13, 1:13]  # 12x12, the tiny models' input
    return small[..., np.newaxis].astype(np.float32) / 255.0, labels


@pytest.fixture(scope="module")
def pretrained(digits12):
    """build_sequential trained to a decisive model on 1,000 digits, its BatchNormalization statistics settled:
    a stand-in for someone else's pretrained classifier."""
    x, y = digits12
    model = build_sequential()
    keras = keras2.keras
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x[:1000], y[:1000], epochs=8, batch_size=32, verbose=0)
    fine_tune.settle_batch_statistics(model, x[:1000], seed=0)
    return model


def test_the_held_out_part_is_a_fifth_of_each_class_and_never_fitted():
    labels = np.repeat(np.arange(5), [10, 20, 5, 15, 50])
    fit, held = fine_tune.split_training(np.zeros((len(labels), 1)), labels, seed=0)
    assert set(fit).isdisjoint(held) and len(fit) + len(held) == len(labels)
    for label, count in zip(range(5), [10, 20, 5, 15, 50], strict=True):
        assert np.sum(labels[held] == label) == pytest.approx(count / 5, abs=1)


def test_too_few_samples_to_fine_tune_and_measure_are_refused():
    with pytest.raises(UsageError, match="at least 10 labelled training samples"):
        fine_tune.split_training(np.zeros((9, 1)), np.zeros(9), seed=0)


def test_a_softmax_output_is_told_from_logits():
    sample = np.random.default_rng(0).random((8, INPUT_SIZE, INPUT_SIZE, 1), dtype=np.float32)
    assert fine_tune.output_is_probability(build_sequential(), sample)
    assert not fine_tune.output_is_probability(build_functional(), sample)


def test_batch_normalization_keeps_its_statistics_while_fine_tuning(pretrained, digits12):
    x, y = digits12
    bn_before = [w.copy() for w in pretrained.get_layer("bn").get_weights()]
    result = prune_model(pretrained, x[1000:1060], y[1000:1060], PruneConfig(target_sparsity=0.5, learning_rate=1e-3))
    record = result.stats.tuning
    bn_after = result.model.get_layer("bn").get_weights()
    if "statistics as learnt" in record.batch_norm:
        # gamma, beta and the moving statistics are what the pretrained model learnt
        for found, expected in zip(bn_after, bn_before, strict=True):
            np.testing.assert_array_equal(found, expected)
    else:
        assert "statistics re-estimated" in record.batch_norm and record.after.better_than(record.trials[0].score)
        np.testing.assert_array_equal(bn_after[0], bn_before[0])  # gamma was frozen all the same
    assert result.model.get_layer("bn").trainable  # given back as it came


def test_statistics_re_estimated_on_a_biased_draw_are_refused_and_the_weights_restored(pretrained, digits12):
    x, y = digits12
    ones = x[:1000][y[:1000] == 1]
    held = x[1000:1200]
    split = fine_tune.TrainingSplit(ones, np.ones(len(ones), dtype=np.int64), held, y[1000:1200], from_logits=False)
    model = fine_tune.frozen_batch_norm_copy(pretrained)
    weights = [w.copy() for w in model.get_weights()]
    score = fine_tune.held_out_score(model, split)
    settings = fine_tune.FineTuning(1, 8, 1e-3, 0, "test")
    kept, sentence = fine_tune._settle_if_better(model, split, settings, score)
    assert kept == score and "statistics as learnt" in sentence
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights(), strict=True))


def test_statistics_that_lag_are_re_estimated_where_held_out_data_shows_it_helps(pretrained, digits12):
    x, y = digits12
    model = fine_tune.frozen_batch_norm_copy(pretrained)
    bn = model.get_layer("bn")
    gamma, beta, mean, variance = bn.get_weights()
    bn.set_weights([gamma, beta, mean + 5.0 * np.sqrt(variance), variance])  # statistics far behind
    split = fine_tune.TrainingSplit(x[:1000], y[:1000], x[1000:1200], y[1000:1200], from_logits=False)
    score = fine_tune.held_out_score(model, split)
    kept, sentence = fine_tune._settle_if_better(model, split, fine_tune.FineTuning(1, 8, 1e-3, 0, "test"), score)
    assert "re-estimated on 256 samples" in sentence and kept.top1 > score.top1
    assert not bn.trainable  # frozen again: the caller unfreezes the finished model


def test_the_learning_rate_is_measured_on_a_small_set_and_the_best_one_is_kept(pretrained, digits12):
    x, y = digits12
    result = prune_model(pretrained, x[1000:1064], y[1000:1064], PruneConfig(target_sparsity=0.5))
    record = result.stats.tuning
    rates = [t.learning_rate for t in record.trials]
    # Thirteen held-out samples cannot tell a one-point loss: a smaller rate is always tried.
    assert record.held_out_samples < fine_tune.MEASURED_SAMPLES and len(rates) >= 2
    assert rates == pytest.approx([PruneConfig.START_LEARNING_RATE / 10**i for i in range(len(rates))])
    best = max(record.trials, key=lambda t: (t.score.top1, -t.score.loss))
    assert record.learning_rate == best.learning_rate and not record.learning_rate_given
    assert record.after.top1 >= best.score.top1
    assert f"learning rate {record.learning_rate:g} (chosen on held-out training data" in record.describe()


def test_one_rate_is_enough_where_a_large_held_out_part_shows_nothing_was_lost(pretrained, digits12):
    x, y = digits12
    result = prune_model(pretrained, x[:1000], y[:1000], PruneConfig(target_sparsity=0.3, epochs=2))
    record = result.stats.tuning
    assert record.held_out_samples >= fine_tune.MEASURED_SAMPLES
    assert record.trials[0].score.top1 >= record.before.top1 - fine_tune.KEPT_POINTS / 100
    assert len(record.trials) == 1


def test_a_losing_trial_model_is_let_go_before_the_next_rate_is_tried(pretrained, digits12):
    """Three trials of a large model kept alive together took a 24 GB machine to its limit: when a trial starts,
    at most the best earlier one may still be alive."""
    x, y = digits12
    created, alive_at_start = [], []
    noise = iter([1.0, 0.5, 0.0])  # each trial starts closer to the pretrained weights: each one does better

    def wrap(copy, steps):
        gc.collect()
        alive_at_start.append(sum(ref() is not None for ref in created))
        created.append(weakref.ref(copy))
        scale = next(noise)
        rng = np.random.default_rng(0)
        kernels = [w + (w.ndim > 1) * scale * w.std() * rng.standard_normal(w.shape) for w in copy.get_weights()]
        copy.set_weights(kernels)
        return fine_tune.Wrapped(copy)

    settings = fine_tune.FineTuning(1, 16, None, 0, "test", start_learning_rate=1e-6, min_steps=4)
    gradients_before = keras2.registered_custom_gradients()
    tuned = fine_tune.fine_tune(pretrained, x[1000:1064], y[1000:1064], settings, wrap, lambda model: model)
    assert [t.learning_rate for t in tuned.record.trials] == pytest.approx([1e-6, 1e-7, 1e-8]), tuned.record.trials
    assert alive_at_start == [0, 1, 1]
    gc.collect()
    assert [ref() for ref in created if ref() is not None] == [tuned.model]
    # nor does TensorFlow keep the graphs traced for them (tests/core/test_keras2.py)
    assert keras2.registered_custom_gradients() == gradients_before


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("progress", [True, False])
def test_a_terminal_gets_a_bar_of_the_fine_tuning_steps_and_a_pipe_gets_none(pretrained, digits12, progress):
    x, y = digits12
    terminal = _Terminal()
    with contextlib.redirect_stderr(terminal):
        result = prune_model(
            pretrained, x[:200], y[:200], PruneConfig(0.5, epochs=2, learning_rate=1e-4, min_steps=0), progress
        )
    record = result.stats.tuning
    steps = record.epochs * -(-record.fit_samples // record.batch_size)
    drawn = terminal.getvalue()
    if progress:
        assert "pruning (learning rate 0.0001)" in drawn and f"{steps}/{steps}" in drawn
        assert f"epoch {record.epochs}/{record.epochs}" in drawn
    else:
        assert drawn == ""
    # Where stderr is a pipe, tqdm draws nothing even when asked (disable=None).
    piped = io.StringIO()
    with contextlib.redirect_stderr(piped):
        prune_model(pretrained, x[:200], y[:200], PruneConfig(0.5, epochs=1, learning_rate=1e-4, min_steps=0), True)
    assert piped.getvalue() == ""
