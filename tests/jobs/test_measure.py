"""Measuring variants side by side: verdicts against the baseline and the reference's size."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers import CORPUS

from tflite_opt.core.config import BenchmarkSettings
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.core.tflite_file import read_tflite
from tflite_opt.jobs.measure import Bench, assemble_results, latency_pixels
from tflite_opt.results.files import Verification, Verified
from tflite_opt.results.measures import LatencyStats, Measured, SizeStats
from tflite_opt.stages.benchmark import accuracy_stats
from tflite_opt.stages.data import Dataset
from tflite_opt.stages.verdict import paired_drop

VALID = (CORPUS / "tflite" / "valid.tflite").read_bytes()


def measured(size: int, correct_of_10: int, paired: bool = False) -> Measured:
    """A variant right on the first ``correct_of_10`` of 10 images; ``paired``: its drop counted image by image
    against a reference right on all 10."""
    labels = np.arange(10)
    predicted = np.where(np.arange(10) < correct_of_10, labels, (labels + 1) % 10)
    latency = LatencyStats(0.1, 0.0, 0.1, 0.1, 0.1, 0.1, 1.0, 1, 10, 1, "xnnpack")
    file = Verified(VALID, read_tflite(VALID), Verification("x", ()))
    accuracy = accuracy_stats(labels, predicted[:, None], 10)
    if paired:
        accuracy = replace(accuracy, paired=paired_drop(np.ones(10, bool), predicted == labels))
    return Measured(file, latency, SizeStats(size, size, {}), accuracy)


def test_each_variant_is_judged_against_the_baseline_and_the_reference_size():
    variants = {"float32": measured(4000, 10), "int8": measured(1000, 10), "tiny": measured(500, 3)}
    paths = {name: Path(f"m.{name}.tflite") for name in variants}
    results = {r.variant: r for r in assemble_results(variants, paths, "float32", 1.0, BenchmarkSettings())}
    assert results["float32"].verdict.label == "reference"
    assert results["int8"].verdict.label == "good" and "25% of the float32 size" in results["int8"].verdict.reason
    assert results["tiny"].verdict.label == "bad" and "drops 70.00 points" in results["tiny"].verdict.reason
    assert results["int8"].input.dtype == "INT8" and results["int8"].input.scale > 0
    assert results["int8"].path == Path("m.int8.tflite")


def test_without_a_reference_size_the_verdict_says_the_share_is_unknown():
    (result,) = assemble_results({"a": measured(1000, 10)}, {"a": Path("a.tflite")}, None, 1.0, BenchmarkSettings())
    assert result.verdict.label == "marginal" and "unknown share" in result.verdict.reason


def test_a_verdict_on_ten_images_is_not_good_and_says_they_are_too_few():
    variants = {"float32": measured(4000, 10), "int8": measured(1000, 10, paired=True)}
    paths = {name: Path(f"m.{name}.tflite") for name in variants}
    int8 = assemble_results(variants, paths, "float32", 1.0, BenchmarkSettings())[1]
    assert int8.verdict.label == "marginal"
    assert "on 10 images the drop is known only to ±27.75 points: too few to tell" in int8.verdict.reason


def test_an_interval_counted_against_another_model_than_the_baseline_is_not_used():
    variants = {"float32": measured(4000, 10), "int8": measured(1000, 10, paired=True)}
    paths = {name: Path(f"m.{name}.tflite") for name in variants}
    int8 = assemble_results(variants, paths, "float32", 0.9, BenchmarkSettings())[1]  # the drop is -10, not 0
    assert int8.verdict.label == "good" and "interval" not in int8.verdict.reason


def test_the_timing_image_is_a_real_image_where_there_is_one():
    calibration = Dataset(np.full((2, 8, 8, 1), 255, np.uint8), None, ())
    assert latency_pixels(calibration, None, (8, 8, 1)).tolist() == calibration.raw[0].tolist()
    blank = latency_pixels(None, None, (8, 8, 1))
    assert blank.shape == (8, 8, 1) and not blank.any()


@pytest.mark.slow
def test_a_bench_measures_latency_and_size_without_evaluation_data():
    bench = Bench(
        None, Preprocessing(), BenchmarkSettings(num_runs=5, warmup_runs=1), np.zeros((8, 8, 1), np.uint8), {}
    )
    keras_accuracy, results = bench.measure({"int8": Verified(VALID, read_tflite(VALID), Verification("int8", ()))})
    assert keras_accuracy == {}
    assert results["int8"].accuracy is None and results["int8"].latency.num_runs == 5
    assert results["int8"].size.bytes == len(VALID) and results["int8"].size.gzip_bytes < len(VALID)
