"""What fine-tuning made of a model: pruning, clustering and quantization-aware training, and how each was tuned."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tflite_opt.core.config import ClusterConfig, PruneConfig, QatConfig
from tflite_opt.core.variant import QatScheme


@dataclass(frozen=True)
class HeldOutScore:
    """A model's top-1 and mean cross-entropy on the held-out part of the training data."""

    top1: float
    loss: float

    @property
    def rank(self) -> tuple[float, float]:
        """Higher top-1 ranks higher; on equal top-1, lower loss."""
        return (self.top1, -self.loss)

    def better_than(self, other: HeldOutScore | None) -> bool:
        return other is None or self.rank > other.rank

    def to_dict(self) -> dict[str, float]:
        return {"top1": round(self.top1, 4), "loss": round(self.loss, 4)}


@dataclass(frozen=True)
class Trial:
    """One learning rate tried: the best epoch (1-based) and its held-out score."""

    learning_rate: float
    epoch: int
    score: HeldOutScore

    def to_dict(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate, "best_epoch": self.epoch, **self.score.to_dict()}


@dataclass(frozen=True)
class FineTuningRecord:
    """What fine-tuning did and why: the split, the settings, each learning rate tried, BatchNormalization."""

    fit_samples: int
    held_out_samples: int
    batch_size: int
    epochs: int
    learning_rate: float
    learning_rate_given: bool
    epoch: int
    trials: tuple[Trial, ...]
    before: HeldOutScore
    after: HeldOutScore
    batch_norm: str
    seconds: float

    def describe(self) -> str:
        """One line: the learning rate and epoch kept, on what evidence, and what BatchNormalization did."""
        how = "given" if self.learning_rate_given else "chosen on held-out training data"
        tried = ", ".join(f"{t.learning_rate:g}: {100 * t.score.top1:.1f}% (epoch {t.epoch})" for t in self.trials)
        return (
            f"learning rate {self.learning_rate:g} ({how}; tried {tried}), epoch {self.epoch} of {self.epochs} kept, "
            f"batch {self.batch_size}, {self.fit_samples} samples fitted, {self.held_out_samples} held out: "
            f"held-out top-1 {100 * self.before.top1:.1f}% before, {100 * self.after.top1:.1f}% after; "
            f"{self.batch_norm}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "fit_samples": self.fit_samples,
            "held_out_samples": self.held_out_samples,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "learning_rate_given": self.learning_rate_given,
            "best_epoch": self.epoch,
            "trials": [t.to_dict() for t in self.trials],
            "held_out_before": self.before.to_dict(),
            "held_out_after": self.after.to_dict(),
            "batch_normalization": self.batch_norm,
            "seconds": round(self.seconds, 1),
        }


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
    tuning: FineTuningRecord | None = None

    @property
    def pruned_layer_names(self) -> tuple[str, ...]:
        return tuple(layer.layer for layer in self.layers)


@dataclass(frozen=True)
class PruneResult:
    """A stripped pruned model and what pruning did to it."""

    model: Any
    stats: PruneStats


@dataclass(frozen=True)
class ClusterStats:
    """What clustering did: settings, time, the layers clustered and those skipped."""

    config: ClusterConfig
    seconds: float
    clustered: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]
    preserved_sparsity: bool
    tuning: FineTuningRecord | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.config.to_dict(),
            "seconds": round(self.seconds, 1),
            "clustered_layers": list(self.clustered),
            "preserved_sparsity": self.preserved_sparsity,
            "skipped": [{"layer": name, "reason": reason} for name, reason in self.skipped],
            "fine_tuning": self.tuning.to_dict() if self.tuning is not None else None,
        }


@dataclass(frozen=True)
class ClusterResult:
    """A stripped clustered model and what clustering did."""

    model: Any
    stats: ClusterStats


@dataclass(frozen=True)
class QatStats:
    """What quantization-aware training did: settings, time, layers left unannotated."""

    config: QatConfig
    seconds: float
    skipped: tuple[tuple[str, str], ...]
    tuning: FineTuningRecord | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.config.to_dict(),
            "seconds": round(self.seconds, 1),
            "skipped": [{"layer": name, "reason": reason} for name, reason in self.skipped],
            "fine_tuning": self.tuning.to_dict() if self.tuning is not None else None,
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
    def scheme(self) -> QatScheme:
        """The quantization-aware scheme that keeps what came before: ``qat``, ``pqat``, ``cqat`` or ``pcqat``."""
        return QatScheme.after(self.pruned is not None, self.clustered is not None)

    def seconds(self) -> dict[str, float]:
        """Fine-tuning seconds by step, for the steps that ran."""
        steps = {"pruning": self.pruned, "clustering": self.clustered, "qat": self.qat}
        return {step: round(result.stats.seconds, 1) for step, result in steps.items() if result is not None}


# Nothing fine-tuned: the model as it came.
NOT_TUNED = FineTuned()
