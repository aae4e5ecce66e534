"""Measure variants as users can trust: accuracy on held-out data, latency, size, and a verdict."""

from __future__ import annotations

import gzip
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tflite_opt.config import BenchmarkSettings, Preprocessing, within_budget
from tflite_opt.errors import DataError, ModelLoadError, UsageError
from tflite_opt.representative import DataSource, apply_preprocessing
from tflite_opt.tflite_file import TfliteFile

DEFAULT_SETTINGS = BenchmarkSettings()
_INTEGER_LIMITS = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255), np.dtype(np.int16): (-32768, 32767)}


def quantize(values: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    """Float model input to an integer tensor: ``round(x / scale) + zero_point``, clipped."""
    low, high = _INTEGER_LIMITS[np.dtype(dtype)]
    return np.clip(np.round(values / scale) + zero_point, low, high).astype(dtype)


def dequantize(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Integer model output back to float: ``(q - zero_point) * scale``."""
    return (values.astype(np.float32) - zero_point) * scale


def interpreter_class() -> tuple[type, Any]:
    """LiteRT's Interpreter and OpResolverType; TensorFlow's deprecated tf.lite ones where LiteRT is missing."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        from tflite_opt.keras2 import tf

        return tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    return Interpreter, OpResolverType


class TfliteRunner:
    """Runs a .tflite classifier on float input in batches, quantizing I/O as the model says.

    XNNPACK (the default delegate) is used where it can prepare the model; where it
    cannot (sparse FULLY_CONNECTED weights from EXPERIMENTAL_SPARSITY), the runner
    falls back to the built-in kernels and says so in ``delegate``.
    """

    def __init__(
        self, model_content: bytes, batch_size: int = 64, num_threads: int | None = None, use_xnnpack: bool = True
    ):
        from tflite_opt.quiet import native_stderr_silenced

        started = time.perf_counter()
        with native_stderr_silenced():
            if not use_xnnpack:
                detail = self._prepare(model_content, batch_size, num_threads, default_delegates=False)
                self.delegate = "none"
            else:
                try:
                    detail = self._prepare(model_content, batch_size, num_threads, default_delegates=True)
                    self.delegate = "xnnpack"
                except RuntimeError:
                    detail = self._prepare(model_content, batch_size, num_threads, default_delegates=False)
                    self.delegate = "none (XNNPACK could not prepare this model)"
        self.init_ms = 1000.0 * (time.perf_counter() - started)
        self._input_index = detail["index"]
        self._input_dtype = np.dtype(detail["dtype"])
        self._input_quant = detail["quantization"]
        output = self._interpreter.get_output_details()[0]
        self._output_index = output["index"]
        self._output_quant = output["quantization"]
        self._output_integer = np.dtype(output["dtype"]).kind in "iu"

    def _prepare(self, content: bytes, batch_size: int, num_threads: int | None, default_delegates: bool) -> dict:
        interpreter_type, resolver = interpreter_class()
        options = (
            {} if default_delegates else {"experimental_op_resolver_type": resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
        )
        self._interpreter = interpreter_type(model_content=content, num_threads=num_threads, **options)
        detail = self._interpreter.get_input_details()[0]
        # A dynamic batch dimension lets one invoke score many images at once.
        dynamic = len(detail["shape_signature"]) > 0 and detail["shape_signature"][0] == -1
        self.batch_size = batch_size if dynamic else int(detail["shape"][0])
        if dynamic:
            self._interpreter.resize_tensor_input(detail["index"], [self.batch_size, *detail["shape"][1:]])
        self._interpreter.allocate_tensors()
        return detail

    def time_invokes(self, sample: np.ndarray, runs: int, warmup: int) -> np.ndarray:
        """Wall time in ms of ``runs`` invokes on ``sample`` (one image of float model input), after ``warmup``."""
        batch = np.repeat(sample[np.newaxis], self.batch_size, axis=0)
        self._interpreter.set_tensor(self._input_index, self._to_input(batch))
        for _ in range(warmup):
            self._interpreter.invoke()
        times = np.empty(runs)
        for i in range(runs):
            started = time.perf_counter()
            self._interpreter.invoke()
            times[i] = time.perf_counter() - started
        return 1000.0 * times

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Float scores for float32 model input of shape (N, H, W, C)."""
        results = []
        for start in range(0, len(inputs), self.batch_size):
            batch = inputs[start : start + self.batch_size]
            count = len(batch)
            if count < self.batch_size:
                padding = np.zeros((self.batch_size - count, *batch.shape[1:]), dtype=batch.dtype)
                batch = np.concatenate([batch, padding])
            self._interpreter.set_tensor(self._input_index, self._to_input(batch))
            self._interpreter.invoke()
            scores = self._interpreter.get_tensor(self._output_index)[:count]
            results.append(dequantize(scores, *self._output_quant) if self._output_integer else scores.copy())
        return np.concatenate(results) if results else np.zeros((0,), dtype=np.float32)

    def _to_input(self, batch: np.ndarray) -> np.ndarray:
        if self._input_dtype.kind in "iu":
            scale, zero_point = self._input_quant
            return quantize(batch, scale, zero_point, self._input_dtype)
        return batch.astype(self._input_dtype)


def top1(scores: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose highest score is their label."""
    return float(np.mean(np.argmax(scores, axis=1) == labels))


def keras_scores(model: Any, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class scores of a Keras model."""
    return np.asarray(model.predict(inputs, batch_size=batch_size, verbose=0))


def tflite_scores(model_content: bytes, inputs: np.ndarray) -> np.ndarray:
    """Class scores of a .tflite model through the LiteRT interpreter."""
    return TfliteRunner(model_content).predict(inputs)


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
    from tqdm import tqdm

    runners = {
        name: TfliteRunner(content, settings.batch_size, settings.num_threads, settings.use_xnnpack)
        for name, content in models.items()
    }
    labels = source.labels
    top_ks: dict[str, list[np.ndarray]] = {name: [] for name in [*runners, *(["keras"] if keras_model else [])]}
    num_classes = None
    batches = tqdm(
        source.batches(settings.batch_size),
        total=-(-len(source) // settings.batch_size),
        desc="evaluating",
        unit="batch",
        disable=None if progress else True,
        leave=False,
    )
    for raw, indices in batches:
        if held_out_from:
            _refuse_seen(raw, indices, source, held_out_from)
        inputs = apply_preprocessing(raw, preprocessing)
        for name, runner in runners.items():
            scores = runner.predict(inputs)
            num_classes = scores.shape[1]
            top_ks[name].append(_top_k(scores, 5))
        if keras_model is not None:
            scores = np.asarray(keras_model(inputs, training=False))
            num_classes = scores.shape[1]
            top_ks["keras"].append(_top_k(scores, 5))
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise DataError(
            f"{source.path}: labels run from {labels.min()} to {labels.max()}; the models have {num_classes} classes"
        )
    predictions = {name: np.concatenate(parts) for name, parts in top_ks.items()}
    reference_top1 = (
        predictions["keras"][:, 0]
        if keras_model is not None
        else (predictions[reference][:, 0] if reference in predictions else None)
    )
    stats = {name: accuracy_stats(labels, top_k, num_classes, reference_top1) for name, top_k in predictions.items()}
    return stats.pop("keras", None), stats


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


def _names(paths: list[Path]) -> tuple[str, list[str]]:
    """(model name, variant per file) from ``<model>.<variant>.tflite`` names."""
    stems = [p.name[: -len(".tflite")] if p.name.endswith(".tflite") else p.stem for p in paths]
    models = {s.split(".")[0] for s in stems}
    if len(models) == 1 and all("." in s for s in stems):
        variants = [s.split(".", 1)[1] for s in stems]
        if len(set(variants)) == len(variants):
            return models.pop(), variants
    if len(set(stems)) != len(stems):
        raise UsageError("two --model files have the same name; give each variant its own file name")
    return "benchmark", stems


def _float_reference(converted: dict[str, tuple[bytes, TfliteFile]]) -> str | None:
    """The float model the others are compared with: 'float32' if given, else one without quantized weights."""
    if "float32" in converted:
        return "float32"
    for name, (_, parsed) in converted.items():
        if {t.dtype for t in parsed.tensors if t.is_constant} <= {"FLOAT32", "INT32"}:
            return name
    return None


def _define_flags(flag_values) -> None:
    from absl import flags

    from tflite_opt.cli import define_preprocessing_flags, define_unsafe_flag

    models = {"flag_values": flag_values, "module_name": "Models"}
    define_unsafe_flag(flag_values, "Models")
    flags.DEFINE_multi_string("model", None, ".tflite file to benchmark; repeat for each variant.", **models)
    flags.DEFINE_string("keras-model", None, "The float Keras model: the top-1 and agreement reference.", **models)
    data = {"flag_values": flag_values, "module_name": "Data (held-out evaluation; others only to refuse overlap)"}
    flags.DEFINE_string("eval-data", None, "Labelled held-out data; without it, latency and size only.", **data)
    flags.DEFINE_string("calibration-data", None, "The calibration data, refused if it overlaps --eval-data.", **data)
    flags.DEFINE_string("train-data", None, "The training data, refused if it overlaps --eval-data.", **data)
    define_preprocessing_flags(flag_values)
    default = BenchmarkSettings()
    timing = {"flag_values": flag_values, "module_name": "Measurement"}
    flags.DEFINE_integer("num-runs", default.num_runs, "Timed single-image invokes per variant.", **timing)
    flags.DEFINE_integer("warmup-runs", default.warmup_runs, "Untimed invokes before timing.", **timing)
    flags.DEFINE_integer("num-threads", default.num_threads, "Interpreter threads.", **timing)
    flags.DEFINE_bool("xnnpack", True, "Use the XNNPACK delegate (--noxnnpack: built-in kernels only).", **timing)
    flags.DEFINE_integer(
        "eval-batch-size", default.batch_size, "Images per interpreter invoke in evaluation.", **timing
    )
    flags.DEFINE_float("accuracy-budget", default.accuracy_budget, "Top-1 points a 'good' variant may lose.", **timing)
    output = {"flag_values": flag_values, "module_name": "Output"}
    flags.DEFINE_string("output-dir", "artifacts/benchmark", "Folder for report.json, report.md and plots.", **output)
    flags.DEFINE_bool("overwrite", False, "Replace existing report files.", **output)
    flags.DEFINE_bool("verbose", False, "Show tracebacks and TensorFlow's own log.", **output)


def settings_from_flags(fv) -> BenchmarkSettings:
    return BenchmarkSettings(
        num_runs=fv["num-runs"].value,
        warmup_runs=fv["warmup-runs"].value,
        num_threads=fv["num-threads"].value,
        use_xnnpack=fv["xnnpack"].value,
        batch_size=fv["eval-batch-size"].value,
        accuracy_budget=fv["accuracy-budget"].value,
    )


def run_benchmark(
    model_paths: list[Path],
    output_dir: Path,
    eval_data: Path | None = None,
    keras_model_path: Path | None = None,
    preprocessing: Preprocessing | None = None,
    settings: BenchmarkSettings = DEFAULT_SETTINGS,
    seen_data: dict[str, Path] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    allow_unsafe: bool = False,
) -> Any:
    """Benchmark existing .tflite files and write report.json, report.md and the plots.

    Raises:
        TfliteOptError: unreadable models, mismatched inputs, overlapping data.
    """
    from tflite_opt.fileio import refuse_existing
    from tflite_opt.native_probe import check_size, probe_in_child
    from tflite_opt.pipeline import assemble_results, latency_sample, measure_variants, seen_digests
    from tflite_opt.report import ConvertReport, report_paths, write_report_files
    from tflite_opt.representative import ImageSize, load_dataset, open_source
    from tflite_opt.tflite_file import read_tflite
    from tflite_opt.verify import Verification

    if not model_paths:
        raise UsageError("pass at least one --model file.tflite")
    refuse_existing(report_paths(output_dir), overwrite)
    model_name, variants = _names(model_paths)
    converted = {}
    for variant, path in zip(variants, model_paths, strict=True):
        if not path.is_file():
            raise ModelLoadError(f"{path} does not exist")
        check_size(path)
        content = path.read_bytes()
        converted[variant] = (content, read_tflite(content, source=str(path)))
        probe_in_child(path)  # files from elsewhere: a native crash must not take this process down
    shapes = {tuple(parsed.input_tensors()[0].shape[1:]) for _, parsed in converted.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3:
        raise UsageError(
            f"the models take different or non-image inputs {sorted(shapes)}; benchmark one model's variants"
        )
    height, width, channels = next(iter(shapes))
    size = ImageSize(height, width, channels)
    preprocessing = preprocessing or Preprocessing()

    keras_model = None
    if keras_model_path is not None:
        from tflite_opt.load import describe_classifier, load_keras_model

        keras_model = load_keras_model(keras_model_path, allow_unsafe)
        if describe_classifier(keras_model).input_shape != (height, width, channels):
            raise UsageError(f"{keras_model_path} takes a different input than the .tflite files")
    evaluation = open_source(eval_data, size, require_labels=True) if eval_data is not None else None
    seen = seen_digests(**{what: load_dataset(path, size) for what, path in (seen_data or {}).items()})
    sample = latency_sample(None, evaluation, (height, width, channels), preprocessing)
    reference = _float_reference(converted)
    keras_accuracy, accuracy, latency, sizes = measure_variants(
        converted, evaluation, preprocessing, keras_model, settings, seen, sample, reference, progress
    )
    baseline = keras_accuracy.top1 if keras_accuracy else (accuracy[reference].top1 if reference in accuracy else None)
    results = assemble_results(
        converted,
        dict(zip(variants, model_paths, strict=True)),
        {name: Verification(name, ()) for name in variants},
        accuracy,
        latency,
        sizes,
        reference,
        baseline,
        settings,
    )
    report = ConvertReport(
        model=model_name,
        output_dir=Path(output_dir),
        keras_top1=keras_accuracy.top1 if keras_accuracy else None,
        eval_samples=len(evaluation) if evaluation is not None else 0,
        calibration_samples=0,
        preprocessing=preprocessing,
        variants=tuple(results),
        reference=reference,
    )
    write_report_files(report, overwrite=overwrite)
    return report


def _run(fv) -> int:
    from tflite_opt.cli import preprocessing_from_flags
    from tflite_opt.report import format_table

    def path(name: str) -> Path | None:
        return Path(fv[name].value) if fv[name].value else None

    seen = {what: path(flag) for what, flag in (("calibration", "calibration-data"), ("training", "train-data"))}
    report = run_benchmark(
        [Path(p) for p in fv["model"].value or []],
        Path(fv["output-dir"].value),
        eval_data=path("eval-data"),
        keras_model_path=path("keras-model"),
        preprocessing=preprocessing_from_flags(fv),
        settings=settings_from_flags(fv),
        seen_data={what: p for what, p in seen.items() if p is not None},
        overwrite=fv["overwrite"].value,
        progress=True,
        allow_unsafe=fv["allow-unsafe-deserialization"].value,
    )
    print(format_table(report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tflite_opt.benchmark --model a.tflite [--model b.tflite ...]``."""
    from tflite_opt.cli import run_cli

    return run_cli("tflite_opt.benchmark", argv, _define_flags, _run)


if __name__ == "__main__":
    import sys

    sys.exit(main())
