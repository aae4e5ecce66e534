"""Benchmark stage: metrics computed right, latency statistics, verdicts, streaming, the choice of what ships."""

import numpy as np
import pytest
from helpers import build_sequential

from tflite_opt.core.config import BenchmarkSettings, Mode, Preprocessing
from tflite_opt.core.errors import DataError
from tflite_opt.core.interpreter import TfliteRunner
from tflite_opt.core.tflite_file import read_tflite
from tflite_opt.stages import benchmark
from tflite_opt.stages.benchmark import (
    ShipOption,
    accuracy_stats,
    choose_to_ship,
    evaluate,
    measure_latency,
    measure_size,
    verdict,
)
from tflite_opt.stages.convert import convert_keras
from tflite_opt.stages.data import ImageSize, open_source

FAST = BenchmarkSettings(num_runs=20, warmup_runs=2)


def test_accuracy_stats_on_a_hand_checked_case():
    labels = np.array([0, 0, 1, 1, 2, 2])
    top_k = np.array(
        [[0, 1, 2, 3, 4], [1, 0, 2, 3, 4], [1, 0, 2, 3, 4], [1, 2, 0, 3, 4], [0, 1, 2, 3, 4], [2, 0, 1, 3, 4]]
    )
    stats = accuracy_stats(labels, top_k, num_classes=5, reference=np.array([0, 0, 1, 1, 2, 2]))
    assert stats.top1 == pytest.approx(4 / 6)
    assert stats.top5 == 1.0
    assert stats.agreement == pytest.approx(4 / 6)
    assert stats.confusion.tolist()[:3] == [[1, 1, 0, 0, 0], [0, 2, 0, 0, 0], [1, 0, 1, 0, 0]]
    class0, class1, class2 = stats.per_class[:3]
    assert (class0.precision, class0.recall) == (0.5, 0.5)
    assert (class1.precision, class1.recall, class1.f1) == (pytest.approx(2 / 3, abs=1e-4), 1.0, 0.8)
    assert (class2.precision, class2.recall, class2.support) == (1.0, 0.5, 2)
    assert not stats.degenerate


def test_top5_needs_five_classes_and_one_class_for_everything_is_degenerate():
    labels = np.arange(30) % 3
    stats = accuracy_stats(labels, np.zeros((30, 3), dtype=np.int64) + [0, 1, 2], num_classes=3)
    assert stats.top5 is None
    assert stats.degenerate and stats.dominant_share == 1.0


@pytest.mark.parametrize(
    "drop, ratio, degenerate, label, words",
    [
        (0.4, 0.27, False, "good", "budget 1"),
        (1.5, 0.27, False, "marginal", "over the 1-point budget"),
        (0.2, 0.51, False, "marginal", "not halved"),
        (5.5, 0.10, False, "bad", "however small or fast"),
        (0.0, 0.25, True, "bad", "one class"),
        (None, 0.25, False, "unknown", "no evaluation data"),
    ],
)
def test_verdicts_follow_the_rules_and_say_why(drop, ratio, degenerate, label, words):
    judged = verdict(drop, ratio, degenerate)
    assert judged.label == label and words in judged.reason


def test_the_budget_is_configurable():
    assert verdict(1.5, 0.3, False, BenchmarkSettings(accuracy_budget=2.0)).label == "good"


@pytest.fixture(scope="module")
def tiny_tflite():
    samples = np.random.default_rng(0).random((16, 12, 12, 1), dtype=np.float32)
    model = build_sequential()
    return model, convert_keras(model, Mode.FLOAT32), convert_keras(model, Mode.FULL_INT8, samples, progress=False)


def test_latency_percentiles_are_ordered_and_record_the_setup(tiny_tflite):
    _, _, int8 = tiny_tflite
    stats = measure_latency(int8, np.zeros((12, 12, 1), np.float32), FAST)
    assert 0 < stats.min <= stats.p50 <= stats.p90 <= stats.p99
    assert stats.init_ms > 0 and stats.num_threads == 1 and stats.num_runs == 20
    assert stats.delegate == "xnnpack"
    off = measure_latency(int8, np.zeros((12, 12, 1), np.float32), BenchmarkSettings(num_runs=5, use_xnnpack=False))
    assert off.delegate == "none"


def test_size_counts_stored_parameters_by_dtype(tiny_tflite):
    model, float32, int8 = tiny_tflite
    weights = sum(int(np.prod(w.shape)) for layer in model.layers for w in layer.weights if "kernel" in w.name)
    float_size = measure_size(float32, read_tflite(float32))
    int8_size = measure_size(int8, read_tflite(int8))
    assert float_size.params_by_dtype["float32"] >= weights
    assert int8_size.params_by_dtype["int8"] >= weights - 200  # BatchNorm folds into the convolution
    assert "float32" not in int8_size.params_by_dtype
    assert int8_size.gzip_bytes < int8_size.bytes


def test_streamed_evaluation_matches_one_big_batch(tiny_tflite, digit_folders):
    model, float32, int8 = tiny_tflite
    _, eval_folder = digit_folders
    source = open_source(eval_folder, ImageSize(12, 12, 1), require_labels=True)
    settings = BenchmarkSettings(batch_size=7)  # 40 images: the last batch is partial
    keras_stats, stats = evaluate(source, Preprocessing(), {"float32": float32, "int8": int8}, model, settings=settings)
    everything = source.read(np.arange(len(source))).astype(np.float32) / 255.0
    expected = np.argmax(TfliteRunner(int8, batch_size=64).predict(everything), axis=1)
    assert stats["int8"].top1 == pytest.approx(np.mean(expected == source.labels))
    assert keras_stats.top1 == pytest.approx(
        np.mean(np.argmax(model.predict(everything, verbose=0), 1) == source.labels)
    )
    assert stats["float32"].agreement == pytest.approx(1.0)
    assert stats["int8"].samples == 40


def test_evaluation_refuses_images_the_model_saw(tiny_tflite, digit_folders):
    _, _, int8 = tiny_tflite
    _, eval_folder = digit_folders
    source = open_source(eval_folder, ImageSize(12, 12, 1), require_labels=True)
    seen = {"calibration": set(benchmark.content_digests(source.read([5])))}
    with pytest.raises(DataError, match="digit_.*is also in the calibration data"):
        evaluate(source, Preprocessing(), {"int8": int8}, held_out_from=seen)


def test_a_drop_equal_to_the_budget_is_good_despite_float_rounding():
    drop = 100.0 * (0.986 - 0.983)  # 0.30000000000000027 points
    assert verdict(drop, 0.3, False, BenchmarkSettings(accuracy_budget=0.3)).label == "good"
    assert verdict(0.31, 0.3, False, BenchmarkSettings(accuracy_budget=0.3)).label == "marginal"


def option(name, passes, gzip_bytes, drop, top1=0.9):
    return ShipOption(name, passes, gzip_bytes, drop, top1)


def test_the_smallest_passing_variant_ships_and_a_tie_goes_to_the_more_accurate():
    options = [option("big", True, 500, 0.1), option("small", True, 100, 0.9, 0.90), option("tiny", False, 50, 3.0)]
    assert choose_to_ship(options) == "small"
    tie = [option("a", True, 100, 0.5, 0.95), option("b", True, 100, 0.2, 0.98)]
    assert choose_to_ship(tie) == "b"


def test_when_nothing_passes_the_variant_losing_the_least_ships():
    options = [option("a", False, 100, 4.0), option("b", False, 300, 1.5), option("c", False, 200, 1.5)]
    assert choose_to_ship(options) == "c"


def test_a_drop_exactly_between_verdicts_is_judged_by_the_budget_then_the_bad_line():
    settings = BenchmarkSettings(accuracy_budget=1.0, bad_drop=5.0)
    assert verdict(5.0, 0.3, False, settings).label == "marginal"
    assert verdict(5.01, 0.3, False, settings).label == "bad"
    assert verdict(1.0, 0.5, False, settings).label == "good"
