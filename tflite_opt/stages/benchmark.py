"""Measure variants as users can trust: accuracy on held-out data, latency, size, a verdict, and which ships."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from tflite_opt.core.config import BenchmarkSettings, Preprocessing, within_budget
from tflite_opt.core.errors import DataError
from tflite_opt.core.interpreter import TfliteRunner
from tflite_opt.core.tflite_file import TfliteFile
from tflite_opt.stages.data import DataSource, apply_preprocessing
from tflite_opt.stages.verify import Verified

DEFAULT_SETTINGS = BenchmarkSettings()


@dataclass(frozen=True)
class LatencyStats:
    """Single-image invoke latency in ms, as LiteRT's own benchmark reports it."""

    mean: float
    std: float
    min: float
    p50: float
    p90: float
    p99: float
    init_ms: float
    num_threads: int
    num_runs: int
    warmup_runs: int
    delegate: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": round(self.mean, 4),
            "std": round(self.std, 4),
            "min": round(self.min, 4),
            "p50": round(self.p50, 4),
            "p90": round(self.p90, 4),
            "p99": round(self.p99, 4),
        }


def measure_latency(content: bytes, sample: np.ndarray, settings: BenchmarkSettings) -> LatencyStats:
    """Warm up, then time single-image invokes; percentiles interpolate linearly, as LiteRT's benchmark does."""
    runner = TfliteRunner(content, batch_size=1, num_threads=settings.num_threads, use_xnnpack=settings.use_xnnpack)
    times = runner.time_invokes(sample, settings.num_runs, settings.warmup_runs)
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    return LatencyStats(
        mean=float(times.mean()),
        std=float(times.std(ddof=1)),
        min=float(times.min()),
        p50=float(p50),
        p90=float(p90),
        p99=float(p99),
        init_ms=runner.init_ms,
        num_threads=settings.num_threads,
        num_runs=settings.num_runs,
        warmup_runs=settings.warmup_runs,
        delegate=runner.delegate,
    )


@dataclass(frozen=True)
class SizeStats:
    bytes: int
    gzip_bytes: int
    params_by_dtype: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "gzip_bytes": self.gzip_bytes, "params_by_dtype": dict(self.params_by_dtype)}


def gzip_size(content: bytes) -> int:
    """Size after gzip -9: where pruning's zeros show."""
    return len(gzip.compress(content, compresslevel=9, mtime=0))


def measure_size(content: bytes, parsed: TfliteFile) -> SizeStats:
    """Bytes, gzip bytes, and stored parameters (constant tensor elements) by dtype."""
    params: dict[str, int] = {}
    for tensor in parsed.tensors:
        if tensor.is_constant:
            params[tensor.dtype.lower()] = params.get(tensor.dtype.lower(), 0) + int(np.prod(tensor.shape))
    return SizeStats(len(content), gzip_size(content), dict(sorted(params.items())))


@dataclass(frozen=True)
class ClassStats:
    label: int
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class AccuracyStats:
    """Accuracy of one model on the held-out set."""

    samples: int
    top1: float
    top5: float | None
    per_class: tuple[ClassStats, ...]
    confusion: np.ndarray
    agreement: float | None
    dominant_class: int
    dominant_share: float

    @property
    def degenerate(self) -> bool:
        """One class predicted for nearly everything (90%), far beyond its share of the labels."""
        label_share = self.confusion[self.dominant_class].sum() / max(1, self.samples)
        return bool(self.dominant_share >= 0.9 and self.dominant_share - label_share >= 0.3)

    def to_dict(self) -> dict[str, Any]:
        return {
            "top1": self.top1,
            "top5": self.top5,
            "agreement": self.agreement,
            "per_class": [c.__dict__ for c in self.per_class],
            "confusion_matrix": self.confusion.tolist(),
            "degenerate": self.degenerate,
        }


def accuracy_stats(
    labels: np.ndarray, top_k: np.ndarray, num_classes: int, reference: np.ndarray | None = None
) -> AccuracyStats:
    """Metrics from the labels and each sample's top-k predictions (best first).

    Args:
        labels: (N,) true classes.
        top_k: (N, k) predicted classes, best first; k >= 5 gives top-5.
        num_classes: number of classes the model scores.
        reference: (N,) top-1 of the float reference model, for agreement.
    """
    predicted = top_k[:, 0]
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = []
    for c in range(num_classes):
        true_positive = int(confusion[c, c])
        predicted_c, actual_c = int(confusion[:, c].sum()), int(confusion[c].sum())
        precision = true_positive / predicted_c if predicted_c else 0.0
        recall = true_positive / actual_c if actual_c else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append(ClassStats(c, round(precision, 4), round(recall, 4), round(f1, 4), actual_c))
    counts = np.bincount(predicted, minlength=num_classes)
    return AccuracyStats(
        samples=len(labels),
        top1=float(np.mean(predicted == labels)),
        top5=float(np.mean((top_k[:, :5] == labels[:, None]).any(axis=1))) if top_k.shape[1] >= 5 else None,
        per_class=tuple(per_class),
        confusion=confusion,
        agreement=float(np.mean(predicted == reference)) if reference is not None else None,
        dominant_class=int(np.argmax(counts)),
        dominant_share=float(counts.max() / max(1, len(labels))),
    )


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, scores.shape[1])
    best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, best, axis=1), axis=1, kind="stable")
    return np.take_along_axis(best, order, axis=1)


def evaluate(
    source: DataSource,
    preprocessing: Preprocessing,
    models: dict[str, bytes],
    keras_model: Any | None = None,
    reference: str | None = None,
    settings: BenchmarkSettings = DEFAULT_SETTINGS,
    held_out_from: dict[str, set[str]] | None = None,
    progress: bool = False,
) -> tuple[AccuracyStats | None, dict[str, AccuracyStats]]:
    """Stream the evaluation set once, in batches, through every model at the same time.

    Args:
        source: labelled held-out data, read batch by batch.
        preprocessing: pixels to model input.
        models: .tflite bytes by variant name.
        keras_model: the float Keras model, scored too and used as the agreement reference.
        reference: without a Keras model, the variant whose top-1 is the agreement reference.
        settings: batch size and threads.
        held_out_from: content digests of data the models saw ("calibration", "training");
            an evaluation sample among them is refused.
        progress: a progress bar on a terminal.

    Returns:
        (Keras model's stats or None, stats by variant).

    Raises:
        DataError: an evaluation sample appears in ``held_out_from``, or labels out of range.
    """
    scorers = {
        name: TfliteRunner(content, settings.batch_size, settings.num_threads, settings.use_xnnpack).predict
        for name, content in models.items()
    }
    if keras_model is not None:
        scorers["keras"] = lambda inputs: np.asarray(keras_model(inputs, training=False))
    predictions, num_classes = _top_five(source, preprocessing, scorers, settings.batch_size, held_out_from, progress)
    labels = source.labels
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise DataError(
            f"{source.path}: labels run from {labels.min()} to {labels.max()}; the models have {num_classes} classes"
        )
    reference_name = "keras" if keras_model is not None else reference
    reference_top1 = predictions[reference_name][:, 0] if reference_name in predictions else None
    stats = {name: accuracy_stats(labels, top_k, num_classes, reference_top1) for name, top_k in predictions.items()}
    return stats.pop("keras", None), stats


def _top_five(
    source: DataSource,
    preprocessing: Preprocessing,
    scorers: dict[str, Any],
    batch_size: int,
    held_out_from: dict[str, set[str]] | None,
    progress: bool,
) -> tuple[dict[str, np.ndarray], int]:
    """Each scorer's five best classes per sample (best first), and the number of classes scored."""
    top_ks: dict[str, list[np.ndarray]] = {name: [] for name in scorers}
    num_classes = 0
    batches = tqdm(
        source.batches(batch_size),
        total=-(-len(source) // batch_size),
        desc="evaluating",
        unit="batch",
        disable=None if progress else True,
        leave=False,
    )
    for raw, indices in batches:
        if held_out_from:
            _refuse_seen(raw, indices, source, held_out_from)
        inputs = apply_preprocessing(raw, preprocessing)
        for name, score in scorers.items():
            scores = score(inputs)
            num_classes = scores.shape[1]
            top_ks[name].append(_top_k(scores, 5))
    return {name: np.concatenate(parts) for name, parts in top_ks.items()}, num_classes


def content_digests(raw: np.ndarray) -> list[str]:
    """A content hash per raw sample, to tell whether two sets share an image."""
    return [hashlib.sha256(np.ascontiguousarray(sample).tobytes()).hexdigest() for sample in raw]


def _refuse_seen(raw: np.ndarray, indices: np.ndarray, source: DataSource, seen: dict[str, set[str]]) -> None:
    for digest, index in zip(content_digests(raw), indices, strict=True):
        for what, digests in seen.items():
            if digest in digests:
                raise DataError(
                    f"{source.name(int(index))} is also in the {what} data; accuracy must be measured on held-out data"
                )


@dataclass(frozen=True)
class Verdict:
    label: str
    reason: str


def verdict(
    drop_points: float | None,
    size_ratio: float | None,
    degenerate: bool,
    settings: BenchmarkSettings = DEFAULT_SETTINGS,
) -> Verdict:
    """good: drop ≤ budget and size at least halved; bad: drop > 5 points or degenerate; else marginal."""
    if degenerate:
        return Verdict("bad", "predicts one class for nearly every image")
    if drop_points is None:
        return Verdict("unknown", "no evaluation data, so no accuracy to judge")
    if size_ratio is None:
        size_ratio = 1.0
        size = "an unknown share of the float32 size (no float32 model to compare with)"
    else:
        size = f"{100 * size_ratio:.0f}% of the float32 size"
    if drop_points > settings.bad_drop:
        return Verdict(
            "bad", f"top-1 drops {drop_points:.2f} points, more than {settings.bad_drop:g}, however small or fast"
        )
    within = within_budget(drop_points, settings.accuracy_budget)
    if within and size_ratio <= 0.5:
        return Verdict("good", f"top-1 drops {drop_points:.2f} points (budget {settings.accuracy_budget:g}) at {size}")
    if not within:
        return Verdict(
            "marginal", f"top-1 drops {drop_points:.2f} points, over the {settings.accuracy_budget:g}-point budget"
        )
    return Verdict("marginal", f"top-1 holds ({drop_points:.2f} points) but the file is {size}, not halved")


@dataclass(frozen=True)
class Measured:
    """A converted, verified file and what was measured of it."""

    file: Verified
    latency: LatencyStats
    size: SizeStats
    accuracy: AccuracyStats | None = None


@dataclass(frozen=True)
class ShipOption:
    """What the choice of the variant to ship looks at."""

    name: str
    passes: bool
    gzip_bytes: int
    drop: float
    top1: float


def choose_to_ship(options: Sequence[ShipOption]) -> str:
    """The one rule for the variant to ship: the smallest (gzip) of those that pass, the more accurate on a tie;
    when none passes, the one that loses the least top-1, then the smallest.

    Raises:
        ValueError: no options.
    """
    passing = [o for o in options if o.passes]
    if passing:
        return min(passing, key=lambda o: (o.gzip_bytes, -o.top1)).name
    return min(options, key=lambda o: (o.drop, o.gzip_bytes)).name
