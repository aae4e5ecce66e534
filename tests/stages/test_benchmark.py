"""Benchmark stage: metrics computed right, latency statistics, verdicts, streaming, the choice of what ships."""

import itertools

import numpy as np
import pytest
from helpers import build_functional, build_sequential, keras3

from tflite_opt.core.config import BenchmarkSettings, Mode
from tflite_opt.core.errors import DataError
from tflite_opt.core.interpreter import TfliteRunner
from tflite_opt.core.preprocessing import PIXELS, Preprocessing
from tflite_opt.core.tflite_file import read_tflite
from tflite_opt.results.measures import PairedDrop, ShipOption, choose_to_ship
from tflite_opt.stages import benchmark
from tflite_opt.stages.benchmark import (
    Scorer,
    accuracy_stats,
    evaluate,
    measure_latencies,
    measure_latency,
    measure_size,
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
    stats = evaluate(source, scorers(float32=float32, int8=int8, keras=model), "keras", settings=settings)
    keras_stats = stats.pop("keras")
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
        evaluate(source, scorers(int8=int8), held_out_from=seen)


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


def test_without_labels_every_model_is_measured_by_its_agreement_with_keras(tiny_tflite, digit_folders):
    model, float32, int8 = tiny_tflite
    calibration, _ = digit_folders  # a flat folder: no labels
    source = open_source(calibration, ImageSize(12, 12, 1))
    stats = evaluate(source, scorers(float32=float32, int8=int8, keras=model), "keras")
    keras_stats = stats.pop("keras")
    assert keras_stats.top1 == 1.0 and not keras_stats.labelled  # the reference agrees with itself
    images = source.read(np.arange(len(source))).astype(np.float32) / 255.0
    expected = np.argmax(model.predict(images, verbose=0), axis=1)
    mine = np.argmax(TfliteRunner(int8).predict(images), axis=1)
    assert stats["int8"].top1 == pytest.approx(np.mean(mine == expected))
    fidelity = stats["int8"].fidelity
    assert fidelity.agreement == stats["int8"].top1 and 0.0 < fidelity.top5_overlap <= 1.0 and fidelity.mean_kl >= 0
    assert stats["float32"].fidelity.mean_kl < 1e-4 and stats["float32"].fidelity.agreement == 1.0
    assert stats["int8"].to_dict()["top1"] is None and stats["int8"].to_dict()["agreement"] == fidelity.agreement


def test_unlabelled_data_without_any_reference_is_refused(tiny_tflite, digit_folders):
    _, _, int8 = tiny_tflite
    calibration, _ = digit_folders
    with pytest.raises(DataError, match="has no labels, and there is no float model"):
        evaluate(open_source(calibration, ImageSize(12, 12, 1)), scorers(int8=int8))


def test_a_variant_that_takes_pixels_gets_pixels(digit_folders):
    float32 = convert_keras(build_functional(), Mode.FLOAT32)  # logits: they follow the input's scale
    _, eval_folder = digit_folders
    source = open_source(eval_folder, ImageSize(12, 12, 1), require_labels=True)
    pixels = source.read(np.arange(len(source))).astype(np.float32)
    on_pixels = np.argmax(TfliteRunner(float32).predict(pixels), axis=1)
    on_scaled = np.argmax(TfliteRunner(float32).predict(pixels / 255.0), axis=1)
    assert (on_pixels != on_scaled).any(), "the two inputs must be told apart by the predictions"
    stats = evaluate(source, {"a": Scorer.tflite(float32, Preprocessing()), "b": Scorer.tflite(float32, PIXELS)})
    np.testing.assert_array_equal(stats["b"].confusion, confusion(source.labels, on_pixels))
    np.testing.assert_array_equal(stats["a"].confusion, confusion(source.labels, on_scaled))


def scorers(**models):
    """Each .tflite file (bytes) or Keras model by name, on pixels / 255."""
    return {
        name: Scorer.tflite(m, Preprocessing()) if isinstance(m, bytes) else Scorer.keras(m, Preprocessing())
        for name, m in models.items()
    }


def confusion(labels, predicted, classes=10):
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def test_timing_interleaves_the_variants_and_records_thread_cpu_time(tiny_tflite, monkeypatch):
    _, float32, int8 = tiny_tflite
    order = []
    timed = TfliteRunner.invoke_timed

    def recording(self):
        order.append(self.delegate + str(id(self)))
        return timed(self)

    monkeypatch.setattr(TfliteRunner, "invoke_timed", recording)
    sample = np.zeros((12, 12, 1), np.float32)
    stats = measure_latencies({"a": float32, "b": int8}, {"a": sample, "b": sample}, BenchmarkSettings(num_runs=30))
    runs = [(name, len(list(group))) for name, group in itertools.groupby(order)]
    # Rounds of ten invokes each, the order alternating: a b | b a | a b, so the same variant runs twice in a row
    # where the rounds meet.
    a, b = runs[0][0], runs[1][0]
    assert runs == [(a, 10), (b, 20), (a, 20), (b, 10)]
    for timing in stats.values():
        assert timing.num_runs == 30 and 0 < timing.cpu_p50 <= timing.p50 * 1.05


def latency(p50, cpu_p50):
    return benchmark.LatencyStats(p50, 0, p50, p50, p50, p50, 1.0, 1, 10, 1, "xnnpack", cpu_p50, cpu_p50)


def test_a_busy_machine_is_told_by_wall_time_far_above_cpu_time():
    assert benchmark.busy_machine({"a": latency(1.0, 0.98), "b": latency(2.0, 1.9)}) is None
    warning = benchmark.busy_machine({"a": latency(1.5, 1.0), "b": latency(3.1, 2.0)})
    assert warning.startswith("the machine was busy while timing: wall time was 1.52x the CPU time")
    assert benchmark.busy_machine({"a": latency(1.5, None)}) is None  # several threads: no CPU figure
    assert benchmark.busy_machine({"a": latency(0.008, 0.005)}) is None  # too short to tell from timer overhead


def test_tied_scores_rank_in_class_order_as_argmax_does():
    scores = np.array([[0.2, 0.4, 0.4, 0.0, 0.0, 0.0], [0.1, 0.1, 0.1, 0.1, 0.1, 0.5]], dtype=np.float32)
    top = benchmark._top_k(scores, 5)
    assert top[:, 0].tolist() == np.argmax(scores, axis=1).tolist() == [1, 5]
    assert top.tolist() == [[1, 2, 0, 3, 4], [5, 0, 1, 2, 3]]


@pytest.mark.slow
def test_operators_xnnpack_leaves_to_the_builtin_kernels_are_counted_and_said():
    keras = keras3()
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            keras.layers.Conv2D(8, 3, activation="hard_silu"),  # int8 HARD_SWISH: XNNPACK does not take it
            keras.layers.Conv2D(8, 3, activation="hard_silu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10),
        ]
    )
    calibration = np.random.default_rng(0).random((16, 12, 12, 1), dtype=np.float32)
    files = {mode: convert_keras(model, mode, calibration, progress=False) for mode in (Mode.FLOAT32, Mode.FULL_INT8)}
    latency = measure_latencies({m.value: c for m, c in files.items()}, {m.value: calibration[0] for m in files}, FAST)
    float32, int8 = latency["float32"], latency["int8"]
    assert float32.partitions == 1 and float32.delegation_note() is None
    assert int8.partitions > 1 and dict(int8.undelegated)["HARD_SWISH"] == 2
    assert f"XNNPACK ran it in {int8.partitions} parts" in int8.delegation_note()
    assert "HARD_SWISH x2" in int8.delegation_note()
    assert int8.delegation_dict() == {"partitions": int8.partitions, "not_delegated": dict(int8.undelegated)}


def test_evaluation_counts_each_models_drop_image_by_image_against_the_reference(digit_folders):
    _, eval_folder = digit_folders
    source = open_source(eval_folder, ImageSize(12, 12, 1), require_labels=True)
    stats = evaluate(source, {"ref": constant_scorer(0), "other": constant_scorer(1)}, "ref")
    counts = np.bincount(source.labels, minlength=10)
    other = stats["other"].paired
    assert isinstance(other, PairedDrop) and stats["ref"].paired is None
    assert (other.samples, other.reference_only, other.model_only) == (len(source), counts[0], counts[1])
    assert other.points == pytest.approx(100 * (stats["ref"].top1 - stats["other"].top1))
    assert stats["other"].to_dict()["paired_drop"]["ci95_points"] == [round(other.low, 4), round(other.high, 4)]
    unlabelled = evaluate(open_source(digit_folders[0], ImageSize(12, 12, 1)), {"ref": constant_scorer(0)}, "ref")
    assert unlabelled["ref"].paired is None


def constant_scorer(cls, classes=10):
    """A scorer that puts class ``cls`` first for every image."""
    return Scorer(lambda inputs: np.eye(classes, dtype=np.float32)[np.full(len(inputs), cls)], Preprocessing())
