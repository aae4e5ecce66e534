"""Measuring variants, shared by the convert, benchmark and search jobs: one streamed evaluation pass for all,
latency, size, and each variant's result with its verdict."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tflite_opt.core.config import BenchmarkSettings
from tflite_opt.core.preprocessing import Preprocessing, app_input
from tflite_opt.core.tflite_file import Tensor
from tflite_opt.results.files import Verified
from tflite_opt.results.measures import (
    AccuracyStats,
    Measured,
    Scored,
    Verdict,
    VerdictLabel,
    drop_points,
    paired_drop_of,
)
from tflite_opt.results.report import TensorInfo, VariantResult
from tflite_opt.stages.benchmark import Scorer, evaluate, measure_latencies, measure_size
from tflite_opt.stages.data import Dataset, DataSource, apply_preprocessing
from tflite_opt.stages.metadata import clients
from tflite_opt.stages.verdict import verdict
from tflite_opt.stages.verify import overall_sparsity

# The name the float Keras model's scores go by: the reference of top-1 drops and of agreement.
KERAS = "keras"


@dataclass(frozen=True)
class Bench:
    """What every variant of a run is measured on, and how.

    Attributes:
        evaluation: held-out data, or None for latency and size only.
        preprocessing: pixels to model input.
        settings: latency runs, threads, batch size, verdict thresholds.
        pixels: one image (pixels 0..255, as the data holds it), for timing.
        seen: content digests of the data the model saw; an evaluation image among them is refused.
        keras_model: the float Keras model, the top-1 and agreement reference.
        reference: without a Keras model, the variant that is the agreement reference.
        progress: a progress bar on a terminal.
    """

    evaluation: DataSource | None
    preprocessing: Preprocessing
    settings: BenchmarkSettings
    pixels: np.ndarray
    seen: dict[str, set[str]]
    keras_model: Any | None = None
    reference: str | None = None
    progress: bool = False

    def measure(
        self, files: dict[str, Verified], keras_models: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, AccuracyStats], dict[str, Measured]]:
        """Accuracy (one streamed pass for all variants and Keras models), latency (timed interleaved) and size of
        every file.

        A file that takes pixels as they are (``pixel_input``) gets them; the others get the preprocessing.

        Args:
            files: the variants.
            keras_models: more Keras models to score in the same pass (the pruned Keras model), by name.

        Returns:
            (the accuracy of the Keras model, under :data:`KERAS`, and of ``keras_models``; each variant measured).
        """
        models = {**({KERAS: self.keras_model} if self.keras_model is not None else {}), **(keras_models or {})}
        accuracy = self.accuracy(files, models)
        keras_accuracy = {name: accuracy.pop(name) for name in models if name in accuracy}
        return keras_accuracy, self.timed(self.scored(files, accuracy))

    def scored(self, files: dict[str, Verified], accuracy: dict[str, AccuracyStats] | None = None) -> dict[str, Scored]:
        """Size and accuracy of every file (``accuracy``: already measured, else measured here in one pass)."""
        accuracy = self.accuracy(files) if accuracy is None else accuracy
        return {
            name: Scored(file, measure_size(file.content, file.parsed), accuracy.get(name))
            for name, file in files.items()
        }

    def timed(self, scored: dict[str, Scored]) -> dict[str, Measured]:
        """Every scored file with its latency, the files timed interleaved on this machine (a file that takes pixels as
        they are is fed them)."""
        inputs = {name: app_input(s.file.pixel_input, self.preprocessing) for name, s in scored.items()}
        samples = {name: apply_preprocessing(self.pixels[np.newaxis], prep)[0] for name, prep in inputs.items()}
        latency = measure_latencies({name: s.file.content for name, s in scored.items()}, samples, self.settings)
        return {name: s.timed(latency[name]) for name, s in scored.items()}

    def accuracy(self, files: dict[str, Verified], keras_models: Mapping[str, Any] | None = None) -> dict:
        """The accuracy of every file and Keras model, by name, in one streamed pass; empty without evaluation
        data. A file that takes pixels as they are gets them."""
        if self.evaluation is None:
            return {}
        scorers = {
            name: Scorer.tflite(file.content, app_input(file.pixel_input, self.preprocessing), self.settings)
            for name, file in files.items()
        }
        scorers.update({name: Scorer.keras(model, self.preprocessing) for name, model in (keras_models or {}).items()})
        reference = KERAS if self.keras_model is not None else self.reference
        if reference == KERAS and KERAS not in scorers:
            scorers[KERAS] = Scorer.keras(self.keras_model, self.preprocessing)
        return evaluate(self.evaluation, scorers, reference, self.settings, self.seen, self.progress)


def latency_pixels(
    calibration: Dataset | None, evaluation: DataSource | None, input_shape: tuple[int, ...]
) -> np.ndarray:
    """One real image for timing, as pixels (calibration first, then evaluation), or zeros where no data was given."""
    if calibration is not None:
        return calibration.raw[0]
    if evaluation is not None:
        return evaluation.read([0])[0]
    return np.zeros(input_shape, dtype=np.uint8)


def tensor_info(tensor: Tensor) -> TensorInfo:
    """An input or output tensor of a converted file, as the report records it."""
    q = tensor.quantization
    return TensorInfo(
        name=tensor.name,
        dtype=tensor.dtype,
        shape=tensor.shape,
        scale=q.scale if q else None,
        zero_point=q.zero_point if q else None,
    )


def assemble_results(
    measured: dict[str, Measured],
    paths: dict[str, Path],
    reference: str | None,
    baseline_top1: float | None,
    settings: BenchmarkSettings,
    layer_sparsity: dict[str, dict[str, tuple[int, int]]] | None = None,
) -> list[VariantResult]:
    """One VariantResult per variant, judged against the baseline top-1 (with the 95% interval of the drop,
    counted image by image against the same model) and the reference size.

    Args:
        measured: every variant, measured.
        paths: where each variant's file is (or will be) written.
        reference: the float variant the others are compared with, if any.
        baseline_top1: the top-1 a variant's drop is counted from (the Keras model's, else the reference's).
        settings: the verdict's thresholds.
        layer_sparsity: per variant, (weights, non-zero weights) of each pruned layer read from the file.
    """
    results = []
    for variant, result in measured.items():
        accuracy = result.accuracy
        drop = drop_points(baseline_top1, accuracy.top1) if accuracy and baseline_top1 is not None else None
        if variant == reference:
            judged = Verdict(VerdictLabel.REFERENCE, "the float32 model the others are compared with")
        else:
            ratio = result.size.bytes / measured[reference].size.bytes if reference else None
            slower = result.latency.p50 / measured[reference].latency.p50 if reference else None
            score = "top-1" if accuracy is None or accuracy.labelled else "agreement"
            paired = paired_drop_of(accuracy, drop)
            judged = verdict(drop, ratio, bool(accuracy and accuracy.degenerate), settings, score, slower, paired)
        layers = (layer_sparsity or {}).get(variant, {})
        parsed = result.file.parsed
        results.append(
            VariantResult(
                variant=variant,
                path=paths[variant],
                size=result.size,
                sparsity=overall_sparsity(parsed),
                verification=result.file.verification,
                input=tensor_info(parsed.input_tensors()[0]),
                output=tensor_info(parsed.output_tensors()[0]),
                latency=result.latency,
                verdict=judged,
                accuracy=accuracy,
                layer_sparsity={name: 1.0 - kept / weights for name, (weights, kept) in layers.items()},
                pixel_input=result.file.pixel_input,
                clients=clients(parsed),
                operators=tuple(Counter(op.name for op in parsed.operators).most_common()),
            )
        )
    return results
