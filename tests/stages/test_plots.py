"""The report's pictures, looked at before they are rendered: what each figure marks, its axes and its words; the
Pareto fronts; and that each plot renders a PNG."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from matplotlib import pyplot
from matplotlib.colors import to_rgba

from tflite_opt.core.config import Mode, SearchConfig
from tflite_opt.core.variant import VariantSpec
from tflite_opt.results.files import Verification
from tflite_opt.results.inputs import ClassMapping, MappingKind
from tflite_opt.results.measures import LatencyStats, Measured, SizeStats, Verdict, VerdictLabel
from tflite_opt.results.report import ConvertReport, TensorInfo, VariantResult
from tflite_opt.results.search import Candidate, SearchOutcome, SearchPhase
from tflite_opt.stages.benchmark import accuracy_stats
from tflite_opt.stages.plots import (
    confused_pairs,
    confusion_figure,
    latency_front,
    pareto_front,
    plot_confusion,
    plot_search,
    plot_tradeoff,
    row_shares,
    search_figure,
    tradeoff_figure,
)

TENSOR = TensorInfo("x", "INT8", (1, 28, 28, 1), 0.004, 0)
LABELS = np.repeat(np.arange(10), 20)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    pyplot.close("all")


def latency(p50: float, spread: float = 0.1) -> LatencyStats:
    """Runs from ``spread`` below the median (the fastest) to ``spread`` above it (p90)."""
    low, high = p50 * (1 - spread), p50 * (1 + spread)
    return LatencyStats(p50, 0.01, low, p50, high, high * 1.1, 1.0, 1, 100, 10, "xnnpack")


def accuracy(predicted: np.ndarray, labels: np.ndarray = LABELS, classes: int = 10):
    return accuracy_stats(labels, np.asarray(predicted)[:, None], classes, reference=labels)


def mistaken(pairs: dict[tuple[int, int], int], labels: np.ndarray = LABELS) -> np.ndarray:
    """Predictions right except ``count`` images of class ``true`` predicted as ``wrong``, for each (true, wrong)."""
    predicted = labels.copy()
    for (true, wrong), count in pairs.items():
        predicted[np.flatnonzero(labels == true)[:count]] = wrong
    return predicted


def variant(name: str, kib: float, p50: float, stats) -> VariantResult:
    label = VerdictLabel.REFERENCE if name == "float32" else VerdictLabel.GOOD
    return VariantResult(
        variant=name,
        path=Path(f"m.{name}.tflite"),
        size=SizeStats(int(kib * 1100), int(kib * 1024), {}),
        sparsity=0.0,
        verification=Verification(name, ()),
        input=TENSOR,
        output=TENSOR,
        latency=latency(p50),
        verdict=Verdict(label, label.value),
        accuracy=stats,
    )


def report(*variants: VariantResult, **kwargs) -> ConvertReport:
    settings = {"keras_top1": 0.99, "eval_samples": 200, "calibration_samples": 10, "preprocessing": None, **kwargs}
    return ConvertReport(model="m", output_dir=Path("out"), variants=variants, **settings)


FLOAT = variant("float32", 480, 0.21, accuracy(mistaken({(1, 2): 2})))
INT8 = variant("int8", 130, 0.07, accuracy(mistaken({(1, 2): 2, (3, 5): 3})))
DYNAMIC = variant("dynamic-range", 130, 0.09, accuracy(mistaken({(1, 2): 2, (3, 5): 1})))


def errorbars(figure, panel: int) -> dict:
    """Each model's marker and whisker on a panel, by variant (named by the left panel's legend labels)."""
    names = [bar.get_label().split(":")[0].removesuffix(" (chosen)") for bar in figure.axes[0].containers]
    return dict(zip(names, figure.axes[panel].containers, strict=True))


def test_pareto_front_orders_the_points_by_cost():
    points = [(1.0, 90.0), (2.0, 95.0), (3.0, 94.0), (0.5, 80.0), (2.0, 93.0)]
    front = pareto_front(points)
    assert front == [3, 0, 1]


def test_pareto_front_keeps_only_points_nothing_beats_on_both_axes():
    points = [(100.0, 98.0), (50.0, 98.5), (60.0, 97.0), (20.0, 90.0), (50.0, 98.5)]
    front = pareto_front(points)
    assert [points[i] for i in front] == [(20.0, 90.0), (50.0, 98.5), (50.0, 98.5)]


def test_the_latency_front_ignores_differences_within_the_noise():
    # 0.0015 ms apart with whiskers of ±10%: only the more accurate one is on the front.
    times = [latency(0.1000), latency(0.1015), latency(0.05, spread=0.01)]
    assert latency_front(times, [98.0, 97.0, 90.0]) == [2, 0]
    # Clearly faster: both stay, the faster first.
    assert latency_front([latency(0.2), latency(0.1)], [98.0, 97.0]) == [1, 0]


def test_the_tradeoff_stars_the_chosen_variant_only_in_both_panels():
    figure = tradeoff_figure(report(FLOAT, DYNAMIC, INT8, chosen_variant="dynamic-range"))
    for panel in (0, 1):
        stars = {name for name, bar in errorbars(figure, panel).items() if bar.lines[0].get_marker() == "*"}
        assert stars == {"dynamic-range"}
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert "dynamic-range (chosen): 130 KiB, 0.09 ms, 98.50%" in legend
    assert "int8: 130 KiB, 0.07 ms, 97.50%" in legend and "float32: 480 KiB, 0.21 ms, 99.00%" in legend


def test_the_tradeoff_score_axis_fits_the_scores_not_a_fixed_ceiling():
    low = variant("int8", 130, 0.07, accuracy(mistaken({(c, (c + 1) % 10): 4 for c in range(10)})))  # 80%
    mid = variant("float32", 480, 0.21, accuracy(mistaken({(c, (c + 1) % 10): 2 for c in range(10)})))  # 90%
    figure = tradeoff_figure(report(mid, low, keras_top1=0.9))
    bottom, top = figure.axes[0].get_ylim()
    assert 75.0 < bottom < 80.0 and 90.0 < top < 95.0
    assert figure.axes[1].get_ylim() == (bottom, top)


def test_a_perfect_score_leaves_no_room_for_ticks_above_100():
    perfect = variant("int8", 130, 0.07, accuracy(LABELS))
    bottom, top = tradeoff_figure(report(perfect, keras_top1=1.0)).axes[0].get_ylim()
    assert bottom < 100.0 < top < 100.1


def test_only_the_left_panel_names_the_score_and_the_costs_start_at_zero():
    figure = tradeoff_figure(report(FLOAT, INT8))
    left, right = figure.axes[:2]
    assert left.get_ylabel() == "top-1 (%)" and right.get_ylabel() == ""
    assert left.get_xlim()[0] == 0.0 and right.get_xlim()[0] == 0.0
    assert left.get_xlim()[1] > 480 and right.get_xlim()[1] > 0.21 * 1.1


def test_the_latency_whisker_reaches_from_the_fastest_run_to_p90():
    figure = tradeoff_figure(report(FLOAT, INT8))
    size_bars, latency_bars = errorbars(figure, 0), errorbars(figure, 1)
    assert not size_bars["int8"].has_xerr
    (segment,) = latency_bars["int8"].lines[2][0].get_segments()
    assert segment[:, 0] == pytest.approx([INT8.latency.min, INT8.latency.p90])
    assert latency_bars["int8"].lines[0].get_xdata()[0] == pytest.approx(INT8.latency.p50)


def test_without_labels_the_tradeoff_speaks_of_agreement_with_the_float_model():
    figure = tradeoff_figure(report(FLOAT, INT8, labelled=False))
    assert figure.axes[0].get_ylabel() == "agreement with the float model (%)"
    assert "top-1" not in figure.get_suptitle() and "unlabelled" in figure.get_suptitle()


def test_the_confusion_names_each_class_and_falls_back_to_its_index():
    mapping = ClassMapping(MappingKind.BY_SORTED_NAME, ("cat", "dog", "a very long class name"), 3)
    figure = confusion_figure(report(FLOAT, INT8, class_mapping=mapping))
    axis = figure.axes[0]
    expected = ["cat", "dog", "a very long c…", *map(str, range(3, 10))]
    assert [t.get_text() for t in axis.get_xticklabels()] == expected
    assert [t.get_text() for t in axis.get_yticklabels()] == expected


def test_the_confusion_colours_each_row_as_shares_and_writes_the_counts():
    figure = confusion_figure(report(FLOAT, INT8))
    axis = figure.axes[0]
    shares = axis.images[-1].get_array()
    assert shares.data.sum(axis=1) == pytest.approx(np.ones(10))
    assert shares[3, 5] == pytest.approx(3 / 20) and shares.mask[3, 3]  # the diagonal is grey, not coloured
    counts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in axis.texts}
    assert counts[(3, 5)] == "3" and counts[(3, 3)] == "17"
    assert axis.get_ylabel() == "true class" and axis.get_xlabel() == "int8 prediction"


def test_row_shares_leave_a_class_without_images_at_zero():
    shares = row_shares(np.array([[3, 1], [0, 0]]))
    assert shares.tolist() == [[0.75, 0.25], [0.0, 0.0]]


def test_a_variant_whose_counts_differ_from_float32_gets_a_panel_of_the_change():
    figure = confusion_figure(report(FLOAT, INT8, chosen_variant="int8"))
    change = figure.axes[1]  # the panels first, then their colour bars
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in change.texts}
    assert texts == {(3, 5): "+3", (3, 3): "-3"}
    assert change.get_title().startswith("int8 count − float32 count on the same images")


def test_counts_equal_to_float32_are_said_in_the_title_not_drawn_as_an_empty_panel():
    same = variant("int8", 130, 0.07, FLOAT.accuracy)
    figure = confusion_figure(report(FLOAT, same, chosen_variant="int8"))
    assert len(figure.axes) == 2  # the matrix and its colour bar
    assert figure.get_suptitle().endswith("the float32 model's counts are the same in every cell")


def test_without_labels_the_confusion_is_against_the_float32_prediction():
    figure = confusion_figure(report(FLOAT, INT8, labelled=False))
    axis, title = figure.axes[0], figure.get_suptitle()
    assert axis.get_ylabel() == "float32 prediction" and axis.get_xlabel() == "int8 prediction"
    assert "agrees with the float32 model on 97.50%" in title and "top-1" not in title and "true" not in title
    assert len(figure.axes) == 2  # no change panel: the matrix itself is the disagreement with float32


def many_classes_report(classes: int = 30) -> ConvertReport:
    """``classes`` classes of 20 images; class c is mistaken for c + 1 on c % 7 images, for 15 classes only by the
    int8 model."""
    labels = np.repeat(np.arange(classes), 20)
    errors = {(c, (c + 1) % classes): c % 7 for c in range(classes)}
    float_errors = {pair: count for pair, count in errors.items() if pair[0] % 2}
    names = tuple(f"species {c:02d}" for c in range(classes))
    return report(
        variant("float32", 480, 0.21, accuracy(mistaken(float_errors, labels), labels, classes)),
        variant("int8", 130, 0.07, accuracy(mistaken(errors, labels), labels, classes)),
        chosen_variant="int8",
        class_mapping=ClassMapping(MappingKind.BY_SORTED_NAME, names, classes),
    )


def test_many_classes_draw_the_most_confused_pairs_instead_of_a_matrix():
    figure = confusion_figure(many_classes_report())
    axis = figure.axes[0]
    assert not axis.images
    pairs = [t.get_text() for t in axis.get_yticklabels()]
    assert len(pairs) == 15 and pairs[:2] == ["species 06 → species 07", "species 13 → species 14"]
    counts = [bar.get_width() for bar in axis.containers[0]]
    assert counts == sorted(counts, reverse=True) and counts[0] == 6
    assert [bar.get_width() for bar in axis.containers[1]][:2] == [0, 6]  # float32 beside: 06 → 07 is new
    assert f"of {30} classes" in figure.get_suptitle()


def test_confused_pairs_rank_by_images_then_by_share_of_the_row():
    matrix = np.array([[5, 2, 0], [1, 1, 2], [0, 3, 9]])
    assert confused_pairs(matrix) == [(2, 1), (1, 2), (0, 1), (1, 0)]
    assert confused_pairs(matrix, limit=2) == [(2, 1), (1, 2)]


def candidate(spec: VariantSpec, top1: float, kib: float, p50: float, within: bool) -> Candidate:
    # The plots read only the latency of what was measured, not the file.
    measured = Measured(None, latency(p50), SizeStats(int(kib * 1100), int(kib * 1024), {}))
    return Candidate(spec, SearchPhase.INT8, top1, 100 * (0.99 - top1), int(kib * 1024), within, None, measured)


def search_report() -> ConvertReport:
    candidates = (
        candidate(VariantSpec(Mode.FULL_INT8), 0.95, 130, 0.05, False),
        candidate(VariantSpec(Mode.FULL_INT8, float_layers=("a",)), 0.985, 150, 0.0715, True),
        candidate(VariantSpec(Mode.FULL_INT8, float_layers=("a", "b")), 0.986, 170, 0.0730, True),
    )
    return report(FLOAT, INT8, search=SearchOutcome(SearchConfig(1.0), 0.99, 200, False, candidates))


def test_the_search_stars_the_chosen_candidate_and_hollows_those_over_the_budget():
    figure = search_figure(search_report())
    bars = errorbars(figure, 0)
    assert {name for name, bar in bars.items() if bar.lines[0].get_marker() == "*"} == {"int8-mixed1"}
    hollow = {name for name, bar in bars.items() if to_rgba(bar.lines[0].get_markerfacecolor()) == (1, 1, 1, 1)}
    assert hollow == {"int8"}
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert "int8: 130 KiB, 0.05 ms, 95.00% (over)" in legend and "budget (98.00%)" in legend


def test_the_search_latency_front_does_not_step_through_noise():
    figure = search_figure(search_report())
    size_front, latency_front_line = figure.axes[0].lines[0], figure.axes[1].lines[0]
    assert list(size_front.get_ydata()) == pytest.approx([95.0, 98.5, 98.6])
    # 0.0715 and 0.073 ms overlap within their whiskers: only the more accurate of the two is on the front; 0.05 ms
    # is faster beyond the noise, so the less accurate int8 stays on it.
    assert list(latency_front_line.get_ydata()) == pytest.approx([95.0, 98.6])


def test_each_plot_renders_a_png_and_none_without_its_data():
    full, bare = search_report(), report(replace(FLOAT, accuracy=None), replace(INT8, accuracy=None))
    for plot in (plot_tradeoff, plot_confusion, plot_search):
        assert plot(full)[:8] == b"\x89PNG\r\n\x1a\n"
        assert plot(bare) is None
    assert plot_confusion(many_classes_report())[:8] == b"\x89PNG\r\n\x1a\n"
