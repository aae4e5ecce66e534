"""Fine-tuning a trained model the way trained models are fine-tuned, for pruning, clustering and QAT.

A model someone else trained on tens of thousands of images, fine-tuned on the fifty a user has, must not
unlearn what it knew. So:

- BatchNormalization keeps the statistics it learnt and runs in inference mode while fine-tuning (its
  layers are frozen); re-estimating them is tried afterwards and kept only where held-out data shows it helps.
- A part of the training data is held out (a fifth, every class represented): after each epoch the model is
  scored on it and the best epoch is kept; the learning rate is measured on it too, starting from the step's
  default and dividing by ten while fine-tuning loses held-out top-1 against the model it started from and the
  smaller rate does better.
- The batch size and the number of epochs follow the size of the training set: at least four steps an epoch
  and at least ``MIN_STEPS`` steps in all.

What was done, and why, is a :class:`FineTuningRecord` the report shows.
"""

from __future__ import annotations

import gc
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from tflite_opt.core import keras2
from tflite_opt.core.config import MIN_FINE_TUNING_STEPS, ClusterConfig, PruneConfig, QatConfig
from tflite_opt.core.errors import UsageError
from tflite_opt.results.tuning import FineTuningRecord, HeldOutScore, Trial

log = logging.getLogger(__name__)

# Training samples BatchNormalization's statistics are re-estimated from.
SETTLE_SAMPLES = 256
# A fifth of the training data is held out to measure fine-tuning on (every fifth sample of each class).
HOLDOUT_EVERY = 5
# Fewer labelled samples than this cannot both fine-tune and measure the fine-tuning.
MIN_TRAINING_SAMPLES = 2 * HOLDOUT_EVERY
# At least this many optimizer steps an epoch: a smaller batch on a small training set.
MIN_STEPS_PER_EPOCH = 4
# Learning rates tried at most: the step's default, a tenth of it, a hundredth.
LEARNING_RATE_TRIALS = 3
# A held-out part this large tells a one-point loss: where fine-tuning at the default rate loses less, no smaller
# rate is tried. A smaller part is too coarse to trust (one sample of ten is ten points), and cheap to try more on.
MEASURED_SAMPLES = 100
KEPT_POINTS = 1.0


@dataclass(frozen=True)
class FineTuning:
    """How a step fine-tunes: its epochs, batch size, learning rate (None: measured, starting from
    ``start_learning_rate``), seed, the name its log lines carry, and whether a terminal gets a bar of its steps."""

    epochs: int
    batch_size: int
    learning_rate: float | None
    seed: int
    what: str
    start_learning_rate: float = 1e-4
    min_steps: int = MIN_FINE_TUNING_STEPS
    progress: bool = False

    @classmethod
    def of(cls, config: PruneConfig | ClusterConfig | QatConfig, what: str, progress: bool = False) -> FineTuning:
        """The fine-tuning a step's configuration asks for."""
        return cls(
            config.epochs,
            config.batch_size,
            config.learning_rate,
            config.seed,
            what,
            config.START_LEARNING_RATE,
            config.min_steps,
            progress,
        )


@dataclass(frozen=True)
class Wrapped:
    """A model inside tfmot's wrappers, ready to fit: the callbacks its wrappers need, the step from which it is
    what was asked (a pruning schedule reaches its target), and what wrapping found (skipped layers ...)."""

    model: Any
    callbacks: Sequence[Any] = ()
    ready_after_step: int = 0
    details: Any = None


@dataclass(frozen=True)
class Tuned:
    """A fine-tuned model after ``finish`` (wrappers stripped), what wrapping found, and the record."""

    model: Any
    details: Any
    record: FineTuningRecord


@dataclass(frozen=True)
class TrainingSplit:
    """Training data split into the part fitted and the part fine-tuning is measured on."""

    fit_x: np.ndarray
    fit_y: np.ndarray
    held_x: np.ndarray
    held_y: np.ndarray
    from_logits: bool = False


def split_training(train_x: np.ndarray, train_y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices fitted, indices held out): every ``HOLDOUT_EVERY``-th sample of each class, in a seeded order.

    Raises:
        UsageError: too few samples to fine-tune and measure it.
    """
    if len(train_x) < MIN_TRAINING_SAMPLES:
        raise UsageError(
            f"fine-tuning needs at least {MIN_TRAINING_SAMPLES} labelled training samples (a fifth is held out to "
            f"measure it), got {len(train_x)}"
        )
    order = np.random.default_rng(seed).permutation(len(train_x))
    order = order[np.argsort(np.asarray(train_y)[order], kind="stable")]
    held = np.zeros(len(order), dtype=bool)
    held[order[::HOLDOUT_EVERY]] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def output_is_probability(model: Any, sample: np.ndarray) -> bool:
    """True when the model ends in a softmax (rows are non-negative and sum to 1)."""
    scores = np.asarray(model(sample[:8], training=False))  # a direct call: no predict function to trace
    return bool(np.all(scores >= 0) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3))


def held_out_score(model: Any, split: TrainingSplit) -> HeldOutScore:
    """``model``'s top-1 and mean cross-entropy on the held-out samples, in inference mode."""
    outputs = np.asarray(model.predict(split.held_x, batch_size=256, verbose=0), dtype=np.float64)
    if split.from_logits:
        shifted = outputs - outputs.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    else:
        log_probs = np.log(np.clip(outputs, 1e-12, 1.0))
    labels = np.asarray(split.held_y, dtype=np.int64)
    loss = float(-log_probs[np.arange(len(labels)), labels].mean())
    return HeldOutScore(float(np.mean(np.argmax(outputs, axis=1) == labels)), loss)


@keras2.releasing_traced_gradients()  # each trial's fit releases its own too, before the next trial
def fine_tune(
    model: Any,
    train_x: np.ndarray,
    train_y: np.ndarray,
    settings: FineTuning,
    wrap: Callable[[Any, int], Wrapped],
    finish: Callable[[Any], Any],
) -> Tuned:
    """Fine-tune ``model`` (tf_keras) inside the wrappers ``wrap`` puts around a copy of it, and ``finish`` it.

    Args:
        model: the model to start from; left untouched.
        train_x, train_y: model input (already preprocessed) and integer labels.
        settings: epochs, batch size, learning rate (None: measured), seed.
        wrap: (a copy of the model with BatchNormalization frozen, total steps) → the wrapped model.
        finish: the wrapped model, fitted → the model to convert (tfmot's strip, or the model itself).

    Raises:
        UsageError: too little training data.
    """
    started = time.perf_counter()
    require_graph_network(model, settings.what)
    fit, held = split_training(train_x, train_y, settings.seed)
    split = TrainingSplit(
        train_x[fit].astype(np.float32),
        train_y[fit],
        train_x[held].astype(np.float32),
        train_y[held],
        from_logits=not output_is_probability(model, train_x[:8].astype(np.float32)),
    )
    batch_size = max(1, min(settings.batch_size, len(fit) // MIN_STEPS_PER_EPOCH))
    steps_per_epoch = math.ceil(len(fit) / batch_size)
    epochs = max(settings.epochs, math.ceil(settings.min_steps / steps_per_epoch))
    trials, best, before = _measured_rates(model, split, settings, wrap, batch_size, epochs)
    trial, wrapped, details = best
    finished = finish(wrapped)
    after, batch_norm = _settle_if_better(finished, split, settings, trial.score)
    _unfreeze_batch_norm(finished, model)
    record = FineTuningRecord(
        fit_samples=len(fit),
        held_out_samples=len(held),
        batch_size=batch_size,
        epochs=epochs,
        learning_rate=trial.learning_rate,
        learning_rate_given=settings.learning_rate is not None,
        epoch=trial.epoch,
        trials=trials,
        before=before,
        after=after,
        batch_norm=batch_norm,
        seconds=time.perf_counter() - started,
    )
    log.info("%s: %s", settings.what, record.describe())
    return Tuned(finished, details, record)


def _measured_rates(
    model: Any,
    split: TrainingSplit,
    settings: FineTuning,
    wrap: Callable[[Any, int], Wrapped],
    batch_size: int,
    epochs: int,
) -> tuple[tuple[Trial, ...], tuple[Trial, Any, Any], HeldOutScore]:
    """The given learning rate, or the default then a tenth of the last while that helps; returns every trial,
    the best one (trial, wrapped model, what wrapping found) and the held-out score of the model before
    fine-tuning."""
    trials: list[Trial] = []
    best: tuple[Trial, Any, Any] | None = None
    before: HeldOutScore | None = None
    rate = settings.learning_rate or settings.start_learning_rate
    for _ in range(1 if settings.learning_rate else LEARNING_RATE_TRIALS):
        newest = _trial(model, split, settings, wrap, rate, batch_size, epochs)
        trials.append(newest[0])
        # Scored after the first wrap: wrapping refuses a model with nothing to fine-tune first.
        before = before or held_out_score(model, split)
        improved = best is None or newest[0].score.better_than(best[0].score)
        if improved:
            best = newest
        # A losing trial's model is let go at once: each holds its weights, optimizer state and traced graphs,
        # and three of a large model's QAT trials kept alive together took a 24 GB machine to its limit.
        del newest
        gc.collect()
        if not improved or _kept(best[0].score, before, len(split.held_y)):
            break  # the smaller rate did no better, or fine-tuning kept what the model knew
        rate /= 10
    assert best is not None and before is not None
    return tuple(trials), best, before


def _kept(score: HeldOutScore, before: HeldOutScore, held_out: int) -> bool:
    """Fine-tuning kept what the model knew: at most ``KEPT_POINTS`` of held-out top-1 lost, measured on enough
    samples to tell."""
    return held_out >= MEASURED_SAMPLES and score.top1 >= before.top1 - KEPT_POINTS / 100


def _trial(
    model: Any,
    split: TrainingSplit,
    settings: FineTuning,
    wrap: Callable[[Any, int], Wrapped],
    rate: float,
    batch_size: int,
    epochs: int,
) -> tuple[Trial, Any, Any]:
    """Fit a fresh wrapped copy at ``rate``; the best epoch's weights are put back. Returns (trial, wrapped
    model, what wrapping found)."""
    keras = keras2.keras
    keras.utils.set_random_seed(settings.seed)
    steps_per_epoch = math.ceil(len(split.fit_x) / batch_size)
    wrapped = wrap(frozen_batch_norm_copy(model), steps_per_epoch * epochs)
    wrapped.model.compile(
        optimizer=keras.optimizers.Adam(rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=split.from_logits),
        metrics=["accuracy"],
    )
    dataset = (
        keras2.tf.data.Dataset.from_tensor_slices((split.fit_x, split.fit_y))
        .shuffle(len(split.fit_x), seed=settings.seed, reshuffle_each_iteration=True)
        .batch(batch_size)
    )
    best = _BestEpoch(wrapped.model, split, steps_per_epoch, wrapped.ready_after_step, settings.what, epochs, rate)
    log.info(
        "%s: fine-tuning at learning rate %g, %d epoch(s) of %d steps on %d samples",
        settings.what,
        rate,
        epochs,
        steps_per_epoch,
        len(split.fit_x),
    )
    bar = _step_bar(settings, rate, steps_per_epoch, epochs)
    with keras2.releasing_traced_gradients():
        wrapped.model.fit(dataset, epochs=epochs, verbose=0, callbacks=[*wrapped.callbacks, best.callback(), bar])
    if best.weights is not None:
        wrapped.model.set_weights(best.weights)
    keras2.drop_traced_functions(wrapped.model)
    score = best.score or held_out_score(wrapped.model, split)
    return Trial(rate, best.epoch or epochs, score), wrapped.model, wrapped.details


def _step_bar(settings: FineTuning, rate: float, steps_per_epoch: int, epochs: int) -> Any:
    """A callback drawing a bar of the fine-tuning's steps (epoch, steps, ETA) on a terminal (nothing in logs or
    pipes: ``disable=None``), closed when the fit ends."""
    bar = tqdm(
        total=steps_per_epoch * epochs,
        desc=f"{settings.what} (learning rate {rate:g})",
        unit="step",
        disable=None if settings.progress else True,
        leave=False,
    )

    def on_epoch_begin(epoch: int, logs: dict | None) -> None:
        bar.set_postfix_str(f"epoch {epoch + 1}/{epochs}", refresh=False)

    return keras2.keras.callbacks.LambdaCallback(
        on_epoch_begin=on_epoch_begin,
        on_train_batch_end=lambda batch, logs: bar.update(1),
        on_epoch_end=lambda epoch, logs: bar.refresh(),  # the epoch's last step, whatever tqdm's throttle skipped
        on_train_end=lambda logs: bar.close(),
    )


@dataclass
class _BestEpoch:
    """Scores the model on the held-out samples after each epoch (once it is what was asked) and keeps the best
    epoch's weights; logs each epoch."""

    model: Any
    split: TrainingSplit
    steps_per_epoch: int
    ready_after_step: int
    what: str
    epochs: int
    rate: float
    score: HeldOutScore | None = None
    epoch: int | None = None
    weights: list | None = None
    started: float = field(default_factory=time.monotonic)

    def callback(self) -> Any:
        return keras2.keras.callbacks.LambdaCallback(on_epoch_end=self._on_epoch_end)

    def _on_epoch_end(self, epoch: int, logs: dict | None) -> None:
        logs = logs or {}
        model = self.model
        ready = (epoch + 1) * self.steps_per_epoch > self.ready_after_step
        score = held_out_score(model, self.split) if ready else None
        if score is not None and score.better_than(self.score):
            self.score, self.epoch, self.weights = score, epoch + 1, model.get_weights()
        elapsed = time.monotonic() - self.started
        left = elapsed / (epoch + 1) * (self.epochs - epoch - 1)
        log.info(
            "%s: learning rate %g, epoch %d/%d (%.0f s, about %.0f s left): loss %.4f, accuracy %.4f%s",
            self.what,
            self.rate,
            epoch + 1,
            self.epochs,
            elapsed,
            left,
            logs.get("loss", float("nan")),
            logs.get("accuracy", float("nan")),
            f", held-out top-1 {100 * score.top1:.1f}%" if score is not None else "",
        )


def require_graph_network(model: Any, what: str) -> None:
    """Raises UsageError for a subclassed model: tfmot wraps the layers of Sequential and Functional models only."""
    keras = keras2.keras
    if not isinstance(model, keras.Sequential) and not getattr(model, "_is_graph_network", False):
        raise UsageError(f"{model.name} is a subclassed model; {what} needs a Sequential or Functional model")


def frozen_batch_norm_copy(model: Any) -> Any:
    """A copy of ``model`` whose BatchNormalization layers are frozen: inference mode, statistics kept."""
    keras = keras2.keras
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for layer in _batch_norms(copy):
        layer.trainable = False
    return copy


def _batch_norms(model: Any) -> list[Any]:
    return [
        layer
        for layer in model._flatten_layers(include_self=False)
        if type(layer).__name__ in ("BatchNormalization", "SyncBatchNormalization")
    ]


def _unfreeze_batch_norm(finished: Any, original: Any) -> None:
    """Give the finished model's BatchNormalization layers the trainable flags they had in ``original``."""
    trainable = {layer.name: layer.trainable for layer in _batch_norms(original)}
    for layer in _batch_norms(finished):
        layer.trainable = trainable.get(layer.name, True)


def _settle_if_better(
    model: Any, split: TrainingSplit, settings: FineTuning, score: HeldOutScore
) -> tuple[HeldOutScore, str]:
    """Re-estimate BatchNormalization's statistics on fitted samples and keep them only where the held-out
    score improves. Returns the held-out score kept and a sentence saying what was done."""
    layers = _batch_norms(model)
    if not layers:
        return score, "no BatchNormalization layer"
    kept = model.get_weights()
    for layer in layers:
        layer.trainable = True
    try:
        used = settle_batch_statistics(model, split.fit_x, settings.seed, settings.what)
    finally:
        for layer in layers:
            layer.trainable = False
    settled = held_out_score(model, split)
    change = f"held-out top-1 {100 * score.top1:.1f}% as learnt, {100 * settled.top1:.1f}% re-estimated"
    if settled.better_than(score):
        return settled, f"BatchNormalization in inference mode, statistics re-estimated on {used} samples ({change})"
    model.set_weights(kept)
    return score, f"BatchNormalization in inference mode, statistics as learnt ({change})"


def settle_batch_statistics(model: Any, train_x: np.ndarray, seed: int, after: str = "fine-tuning") -> int:
    """Set every trainable BatchNormalization layer's moving statistics to those of a random draw of training samples.

    A short training moves BatchNormalization's moving statistics only part of the way (momentum 0.99: a third of
    the way in 40 steps), so a briefly trained model can collapse in inference while it scores well in training
    mode. Frozen layers (trainable=False) keep theirs. ``after``: the step the log line names.

    Returns:
        The number of samples the statistics were taken from (0: the model has no such layer).
    """
    layers = [layer for layer in _batch_norms(model) if layer.trainable]
    if not layers:
        return 0
    chosen = np.random.default_rng(seed).choice(len(train_x), size=min(SETTLE_SAMPLES, len(train_x)), replace=False)
    momenta = [layer.momentum for layer in layers]
    try:
        for layer in layers:
            layer.momentum = 0.0  # the next training-mode call sets the statistics to the batch's
        model(train_x[np.sort(chosen)].astype(np.float32), training=True)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    log.info("%s: BatchNormalization statistics re-estimated on %d training samples", after, len(chosen))
    return len(chosen)
