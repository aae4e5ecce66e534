"""Judging a variant: the verdict's rules, the drop's 95% interval counted image by image, and the reference's
own figures called out when they cannot be trusted."""

from dataclasses import replace

import numpy as np
import pytest

from tflite_opt.core.config import BenchmarkSettings
from tflite_opt.stages.benchmark import accuracy_stats
from tflite_opt.stages.verdict import paired_drop, plausible_top1, reference_problem, verdict


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


def test_a_drop_equal_to_the_budget_is_good_despite_float_rounding():
    drop = 100.0 * (0.986 - 0.983)  # 0.30000000000000027 points
    assert verdict(drop, 0.3, False, BenchmarkSettings(accuracy_budget=0.3)).label == "good"
    assert verdict(0.31, 0.3, False, BenchmarkSettings(accuracy_budget=0.3)).label == "marginal"


def test_a_drop_exactly_between_verdicts_is_judged_by_the_budget_then_the_bad_line():
    settings = BenchmarkSettings(accuracy_budget=1.0, bad_drop=5.0)
    assert verdict(5.0, 0.3, False, settings).label == "marginal"
    assert verdict(5.01, 0.3, False, settings).label == "bad"
    assert verdict(1.0, 0.5, False, settings).label == "good"


def test_a_reference_near_chance_or_stuck_on_one_class_is_called_out():
    labels = np.arange(100) % 10
    assert reference_problem(uniform_stats(labels, labels)) is None
    near_chance = uniform_stats((labels + 1) % 10, labels)  # never right
    assert "scores 0.0% top-1 on the evaluation data, near chance (10.0% for 10 classes)" in reference_problem(
        near_chance
    )
    stuck = uniform_stats(np.full(100, 3), labels)
    assert "predicts class 'cat' for 100%" in reference_problem(
        stuck, [f"c{i}" for i in range(3)] + ["cat"] + [f"c{i}" for i in range(4, 10)]
    )


def uniform_stats(predicted, labels, classes=10):
    return accuracy_stats(np.asarray(labels), np.asarray(predicted)[:, None], classes)


def test_a_variant_slower_than_float32_is_not_good_however_small_and_accurate():
    assert verdict(0.2, 0.3, False, latency_ratio=1.05).label == "good"  # within timing noise
    slower = verdict(0.2, 0.3, False, latency_ratio=2.04)
    assert slower.label == "marginal" and slower.reason.endswith("but runs 2.0x slower than float32 (p50)")
    assert verdict(9.0, 0.3, False, latency_ratio=0.5).label == "bad"


def test_only_a_slowdown_on_this_host_leaves_a_marginal_variant_fit_to_ship():
    """The phone runs the file: a host without fast int8 kernels must not make the tool ship a larger file."""
    assert verdict(0.2, 0.3, False, latency_ratio=1.3).passes
    assert not verdict(2.5, 0.3, False, latency_ratio=1.3).passes  # over the budget as well
    assert not verdict(0.2, 0.8, False, latency_ratio=1.3).passes  # not halved as well
    assert not verdict(0.2, 0.8, False).passes


def outcomes(samples, reference_only, model_only, both_right=0):
    """Per-image (reference right, model right) with the given discordant counts; the rest both wrong."""
    reference = np.zeros(samples, bool)
    model = np.zeros(samples, bool)
    reference[:reference_only] = True
    model[reference_only : reference_only + model_only] = True
    both = slice(reference_only + model_only, reference_only + model_only + both_right)
    reference[both] = model[both] = True
    return reference, model


@pytest.mark.parametrize(
    "samples, reference_only, model_only, low, high",
    [
        (161, 6, 16, -12.40, -0.54),  # Cavo et al. 2012, as Fagerland et al.'s contingencytables reports it
        (50, 1, 0, -5.277, 10.495),  # one image: 2 points, known only to about ±8
        (1000, 3, 2, -0.458, 0.701),
        (50, 0, 0, -7.135, 7.135),  # no discordant pair: ±100·z²/(n + z²), not a zero-width interval
        (1000, 0, 0, -0.383, 0.383),
        (50, 50, 0, 85.73, 100.0),  # the interval stays within ±100 points
    ],
)
def test_the_drop_interval_is_tangos_score_interval_of_the_paired_outcomes(
    samples, reference_only, model_only, low, high
):
    paired = paired_drop(*outcomes(samples, reference_only, model_only, both_right=(samples - 50) // 2))
    assert (paired.samples, paired.reference_only, paired.model_only) == (samples, reference_only, model_only)
    assert paired.points == pytest.approx(100 * (reference_only - model_only) / samples)
    assert (paired.low, paired.high) == (pytest.approx(low, abs=0.006), pytest.approx(high, abs=0.006))
    assert paired.low <= paired.points <= paired.high and paired.method.startswith("Tango")


def test_the_interval_depends_on_the_discordant_pairs_only():
    few = paired_drop(*outcomes(200, 3, 1, both_right=10))
    many = paired_drop(*outcomes(200, 3, 1, both_right=190))
    assert (few.low, few.high) == (many.low, many.high)


def test_without_labels_the_drop_is_the_share_of_disagreements_with_wilsons_interval():
    right = np.ones(1000, bool)  # the reference's top-1 is the label: right on every image
    agreeing = np.arange(1000) >= 3
    paired = paired_drop(right, agreeing, labelled=False)
    assert (paired.reference_only, paired.model_only, paired.points) == (3, 0, pytest.approx(0.3))
    assert (paired.low, paired.high) == (pytest.approx(0.1021, abs=1e-4), pytest.approx(0.8783, abs=1e-4))
    assert paired.method.startswith("Wilson")
    assert paired_drop(right[:50], right[:50], labelled=False).low == 0.0  # never below zero


def paired(samples, reference_only, model_only):
    return paired_drop(*outcomes(samples, reference_only, model_only, both_right=samples // 2))


def test_a_verdict_on_too_few_images_says_so_and_is_not_good():
    none_lost = paired(50, 0, 0)
    judged = verdict(0.0, 0.27, False, paired=none_lost)
    assert judged.label == "marginal"
    assert judged.reason == (
        "top-1 drops 0.00 points (95% interval -7.13 to +7.13): on 50 images the drop is known only to ±7.13 "
        "points: too few to tell against the 1-point budget"
    )
    one_image = verdict(2.0, 0.27, False, paired=paired(50, 1, 0))
    assert one_image.label == "marginal" and "known only to ±8.50 points: too few to tell" in one_image.reason


def test_a_tight_interval_leaves_the_verdicts_as_they_were():
    for drop, counts, size, label in [
        (0.1, (1000, 3, 2), 0.27, "good"),
        (0.0, (1000, 0, 0), 0.27, "good"),
        (0.0, (1000, 0, 0), 0.6, "marginal"),
        (8.0, (1000, 80, 0), 0.27, "bad"),
        (3.0, (1000, 30, 0), 0.27, "marginal"),
    ]:
        with_interval = verdict(drop, size, False, paired=paired(*counts))
        assert with_interval.label == verdict(drop, size, False).label == label
    good = verdict(0.1, 0.27, False, paired=paired(1000, 3, 2))
    assert good.reason == "top-1 drops 0.10 points (95% interval -0.46 to +0.70; budget 1) at 27% of the float32 size"


def test_too_few_images_to_tell_against_the_budget_is_marginal_and_enough_is_judged_as_measured():
    few = verdict(0.0, 0.27, False, paired=paired(50, 0, 0))  # no image differs; the interval reaches 7.13
    assert few.label == "marginal" and "on 50 images the drop is known only to ±7.13 points" in few.reason
    assert few.reason.endswith("too few to tell against the 1-point budget")
    pruned = verdict(0.4, 0.1, False, paired=paired(1000, 4, 0))  # 0.4 points, the interval -0.0 to 1.02
    assert pruned.label == "good" and pruned.passes
    assert verdict(1.2, 0.27, False, paired=paired(500, 6, 0)).label == "marginal"  # over the budget as measured
    assert verdict(0.0, 0.27, False, paired=paired(1000, 0, 0)).label == "good"
    search = verdict(0.0, 0.27, False, BenchmarkSettings(accuracy_budget=0.3), paired=paired(1000, 0, 0))
    assert search.label == "marginal" and "too few to tell against the 0.3-point budget" in search.reason


def test_a_drop_over_the_bad_line_is_bad_only_where_the_whole_interval_is():
    noisy = verdict(8.0, 0.27, False, paired=paired(50, 4, 0))  # interval about 0 to 19 points
    assert noisy.label == "marginal" and "too few to tell against the 5-point bad line" in noisy.reason
    assert verdict(6.0, 0.27, False, paired=paired(1000, 60, 0)).label == "marginal"  # 4.7 to 7.6: not surely over
    assert verdict(40.0, 0.27, False, paired=paired(50, 20, 0)).label == "bad"
    over = verdict(3.0, 0.27, False, paired=paired(1000, 30, 0))
    assert over.label == "marginal" and over.reason.endswith("over the 1-point budget")


def test_an_interval_straddling_the_budget_is_said_whatever_the_drop_itself():
    judged = verdict(1.2, 0.27, False, paired=paired(500, 6, 0))  # over the budget, but the interval reaches 0.43
    assert judged.label == "marginal" and "too few to tell against the 1-point budget" in judged.reason
    close = verdict(0.6, 0.27, False, paired=paired(500, 3, 0))  # within, but the interval reaches past 1
    assert close.label == "marginal" and "on 500 images the drop is known only to" in close.reason


def test_the_agreement_drop_without_labels_gets_the_same_treatment():
    right = np.ones(50, bool)
    judged = verdict(0.0, 0.27, False, score="agreement", paired=paired_drop(right, right, labelled=False))
    assert judged.label == "marginal" and judged.reason.startswith("agreement drops 0.00 points (95% interval +0.00")


def test_a_float_model_far_below_what_its_classes_allow_is_called_out_as_wrongly_fed():
    labels = np.arange(1000) % 10
    wrong_normalization = uniform_stats(np.where(np.arange(1000) < 386, labels, (labels + 1) % 10), labels)
    warning = reference_problem(wrong_normalization)
    assert warning.startswith("the float model itself scores 38.6% top-1 on the evaluation data, under the 50%")
    assert "the preprocessing (--mean/--std, --input-scale/--input-offset), the labels or the class order" in warning
    near_chance = uniform_stats(np.where(np.arange(1000) < 150, labels, (labels + 1) % 10), labels)
    assert "near chance (10.0% for 10 classes)" in reference_problem(near_chance)  # as before
    assert reference_problem(uniform_stats(np.where(np.arange(1000) < 600, labels, (labels + 1) % 10), labels)) is None


def test_a_hard_problem_of_many_classes_is_not_called_out():
    labels = np.arange(2000) % 1000
    predicted = np.where(np.arange(2000) < 1400, labels, (labels + 1) % 1000)  # 70% of 1000 classes
    assert reference_problem(uniform_stats(predicted, labels, classes=1000)) is None
    assert plausible_top1(10) == plausible_top1(100) == 0.5
    assert plausible_top1(1000) == pytest.approx(1 / 3) and plausible_top1(21843) == pytest.approx(0.23, abs=0.01)
    assert plausible_top1(2) == 0.75  # halfway from chance, as before
    unlabelled = replace(uniform_stats(labels[:100] % 10, (labels[:100] + 1) % 10), labelled=False)
    assert reference_problem(unlabelled) is None  # without labels there is no top-1 to judge
