"""Measure variants as users can trust: accuracy on held-out data, latency, size, a verdict, and which ships."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from tqdm import tqdm

from tflite_opt.core.config import BenchmarkSettings
from tflite_opt.core.errors import DataError
from tflite_opt.core.interpreter import TfliteRunner
from tflite_opt.core.native_probe import peak_memory_in_child
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.core.tflite_file import TfliteFile
from tflite_opt.results.measures import (
    AccuracyStats,
    ClassStats,
    Fidelity,
    LatencyStats,
    SizeStats,
)
from tflite_opt.stages.data import DataSource, apply_preprocessing
from tflite_opt.stages.verdict import DEFAULT_SETTINGS, paired_drop

# Timed invokes per variant in a row, before the next variant's turn: enough to keep its caches warm,
# few enough that load coming and going on the machine falls on every variant alike.
TIMING_BLOCK = 10


def measure_latencies(
    contents: dict[str, bytes], samples: dict[str, np.ndarray], settings: BenchmarkSettings
) -> dict[str, LatencyStats]:
    """Time single-image invokes of every variant, interleaved: in rounds, each variant in turn runs one
    untimed invoke and then :data:`TIMING_BLOCK` timed ones; the order alternates between rounds. Then each
    variant's peak memory, in a process of its own (:func:`~tflite_opt.core.native_probe.peak_memory_in_child`).

    Args:
        contents: .tflite bytes by variant.
        samples: one image of each variant's float model input.
        settings: runs, warm-up runs, threads, XNNPACK.
    """
    runners = {
        name: TfliteRunner(content, batch_size=1, num_threads=settings.num_threads, use_xnnpack=settings.use_xnnpack)
        for name, content in contents.items()
    }
    for name, runner in runners.items():
        runner.load(samples[name])
        for _ in range(settings.warmup_runs):
            runner.invoke()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runners}
    order = list(runners)
    for round_index in range(-(-settings.num_runs // TIMING_BLOCK)):
        for name in order if round_index % 2 == 0 else reversed(order):
            runners[name].invoke()
            block = min(TIMING_BLOCK, settings.num_runs - len(times[name]))
            times[name] += [runners[name].invoke_timed() for _ in range(block)]
    stats = {name: _latency_stats(np.asarray(times[name]), runners[name], settings) for name in runners}

    # After the timing, which the child processes would disturb; side by side, each in its own process.
    def peak(content: bytes) -> int | None:
        return peak_memory_in_child(content, settings.num_threads, settings.use_xnnpack)

    with ThreadPoolExecutor(max_workers=max(1, len(contents))) as pool:
        peaks = dict(zip(contents, pool.map(peak, contents.values()), strict=True))
    return {name: replace(stats[name], peak_memory_bytes=peaks[name]) for name in stats}


def measure_latency(content: bytes, sample: np.ndarray, settings: BenchmarkSettings) -> LatencyStats:
    """One variant's latency (see :func:`measure_latencies`)."""
    return measure_latencies({"model": content}, {"model": sample}, settings)["model"]


def _latency_stats(times: np.ndarray, runner: TfliteRunner, settings: BenchmarkSettings) -> LatencyStats:
    """Percentiles interpolate linearly, as LiteRT's benchmark does. ``times``: (runs, 2) wall and CPU ms."""
    wall, cpu = times[:, 0], times[:, 1]
    p50, p90, p99 = np.percentile(wall, [50, 90, 99])
    single = settings.num_threads == 1  # other threads' work is not the calling thread's CPU time
    partitions, undelegated = runner.delegation()
    return LatencyStats(
        mean=float(wall.mean()),
        std=float(wall.std(ddof=1)),
        min=float(wall.min()),
        p50=float(p50),
        p90=float(p90),
        p99=float(p99),
        init_ms=runner.init_ms,
        num_threads=settings.num_threads,
        num_runs=settings.num_runs,
        warmup_runs=settings.warmup_runs,
        delegate=runner.delegate,
        partitions=partitions,
        undelegated=undelegated,
        cpu_p50=float(np.median(cpu)) if single else None,
        cpu_mean=float(cpu.mean()) if single else None,
    )


# Wall time this far above the invoking thread's CPU time (medians, one thread) means it waited for a core.
BUSY_RATIO = 1.2
# Below this CPU time per invoke (ms), reading the two clocks costs a noticeable share of the wall time.
TIMER_FLOOR_MS = 0.01


def busy_machine(latencies: dict[str, LatencyStats]) -> str | None:
    """Why the timing is not to be trusted as the speed of an idle machine, or None.

    With one interpreter thread, an invoke's wall time is its CPU time unless the thread had to wait for
    the processor; the median ratio over the variants says how much it waited.
    """
    ratios = [t.p50 / t.cpu_p50 for t in latencies.values() if t.cpu_p50 and t.cpu_p50 >= TIMER_FLOOR_MS]
    if not ratios:
        return None
    ratio = float(np.median(ratios))
    if ratio <= BUSY_RATIO:
        return None
    return (
        f"the machine was busy while timing: wall time was {ratio:.2f}x the CPU time of the invoking thread; "
        "the cpu ms column is closer to the model's own cost, and the ratios between variants (timed "
        "interleaved) still hold"
    )


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
    """The ``k`` best classes per row, best first; equal scores (common in int8 output) in class order, so the
    first is what ``argmax`` and an app's "first highest score" pick."""
    return np.argsort(-scores, axis=1, kind="stable")[:, : min(k, scores.shape[1])]


@dataclass(frozen=True)
class Scorer:
    """A model's scoring function (model input batch → class scores) and the preprocessing of its input."""

    predict: Callable[[np.ndarray], np.ndarray]
    preprocessing: Preprocessing

    @classmethod
    def tflite(cls, content: bytes, preprocessing: Preprocessing, settings: BenchmarkSettings = DEFAULT_SETTINGS):
        """A .tflite file, run by the LiteRT interpreter in batches."""
        runner = TfliteRunner(content, settings.batch_size, settings.num_threads, settings.use_xnnpack)
        return cls(runner.predict, preprocessing)

    @classmethod
    def keras(cls, model: Any, preprocessing: Preprocessing) -> Scorer:
        """A Keras model, in inference mode."""
        return cls(lambda inputs: np.asarray(model(inputs, training=False)), preprocessing)


def evaluate(
    source: DataSource,
    scorers: Mapping[str, Scorer],
    reference: str | None = None,
    settings: BenchmarkSettings = DEFAULT_SETTINGS,
    held_out_from: dict[str, set[str]] | None = None,
    progress: bool = False,
) -> dict[str, AccuracyStats]:
    """Stream the evaluation set once, in batches, through every model at the same time.

    Without labels the reference's top-1 predictions are the labels: every model is then measured by
    its agreement with the reference (fidelity), not by accuracy.

    Args:
        source: held-out data, read batch by batch; labelled or not.
        scorers: the models by name (.tflite files, Keras models), each with the preprocessing of its input.
        reference: the model whose top-1 is the agreement reference (the float Keras model, where there is one).
        settings: the batch size.
        held_out_from: content digests of data the models saw ("calibration", "training");
            an evaluation sample among them is refused.
        progress: a progress bar on a terminal.

    Returns:
        Each model's stats, by name.

    Raises:
        DataError: an evaluation sample appears in ``held_out_from``, labels out of range, or unlabelled
            data without a reference to compare with.
    """
    if source.labels is None and reference not in scorers:
        raise DataError(f"{source.path} has no labels, and there is no float model to measure fidelity against")
    stream = _score_stream(source, scorers, reference, settings.batch_size, held_out_from, progress)
    top_k = stream.top_k
    labels = source.labels if source.labels is not None else top_k[reference][:, 0]
    if int(labels.min()) < 0 or int(labels.max()) >= stream.num_classes:
        raise DataError(
            f"{source.path}: labels run from {labels.min()} to {labels.max()}; the models have {stream.num_classes} "
            "classes"
        )
    reference_top1 = top_k[reference][:, 0] if reference in top_k else None
    labelled = source.labels is not None
    return {
        name: replace(
            accuracy_stats(labels, predicted, stream.num_classes, reference_top1),
            labelled=labelled,
            fidelity=stream.fidelity(name, top_k),
            paired=None
            if reference_top1 is None or name == reference
            else paired_drop(reference_top1 == labels, predicted[:, 0] == labels, labelled),
        )
        for name, predicted in top_k.items()
    }


class _ScoreStream:
    """Each model's five best classes per sample, and its running fidelity sums against the reference."""

    def __init__(self, names: list[str], reference: str | None) -> None:
        self.reference = reference if reference in names else None
        self.parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
        self.overlap = dict.fromkeys(names, 0.0)
        self.kl = dict.fromkeys(names, 0.0)
        self.samples = 0
        self.num_classes = 0

    def add(self, scores: dict[str, np.ndarray]) -> None:
        """One batch's scores of every model."""
        self.samples += len(next(iter(scores.values())))
        for name, values in scores.items():
            self.num_classes = values.shape[1]
            self.parts[name].append(_top_k(values, 5))
        if self.reference is None:
            return
        expected, best = _probabilities(scores[self.reference]), self.parts[self.reference][-1]
        for name, values in scores.items():
            mine = self.parts[name][-1]
            self.overlap[name] += sum(len(set(a) & set(b)) / len(a) for a, b in zip(best, mine, strict=True))
            self.kl[name] += float(_kl_divergence(expected, _probabilities(values)).sum())

    @property
    def top_k(self) -> dict[str, np.ndarray]:
        return {name: np.concatenate(parts) for name, parts in self.parts.items()}

    def fidelity(self, name: str, top_k: dict[str, np.ndarray]) -> Fidelity | None:
        """``name``'s fidelity to the reference, or None without a reference or samples."""
        if self.reference is None or not self.samples:
            return None
        agreement = float(np.mean(top_k[name][:, 0] == top_k[self.reference][:, 0]))
        return Fidelity(agreement, self.overlap[name] / self.samples, self.kl[name] / self.samples)


def _score_stream(
    source: DataSource,
    scorers: Mapping[str, Scorer],
    reference: str | None,
    batch_size: int,
    held_out_from: dict[str, set[str]] | None,
    progress: bool,
) -> _ScoreStream:
    """Score every batch with every model (each with its own preprocessing)."""
    stream = _ScoreStream(list(scorers), reference)
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
        stream.add({name: s.predict(apply_preprocessing(raw, s.preprocessing)) for name, s in scorers.items()})
    return stream


def _probabilities(scores: np.ndarray) -> np.ndarray:
    """Scores as class probabilities: as they are where they already are (a softmax output), else softmaxed."""
    scores = scores.astype(np.float64)
    if np.all(scores >= 0) and np.allclose(scores.sum(axis=1), 1.0, atol=0.02):
        return scores / scores.sum(axis=1, keepdims=True)
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _kl_divergence(expected: np.ndarray, found: np.ndarray, floor: float = 1e-7) -> np.ndarray:
    """KL(expected || found) per row, in nats; probabilities floored so an int8 zero is not infinitely wrong."""
    p, q = np.clip(expected, floor, 1.0), np.clip(found, floor, 1.0)
    return np.sum(p * (np.log(p) - np.log(q)), axis=1)


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
