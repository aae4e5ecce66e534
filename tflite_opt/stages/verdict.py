"""Judging a variant: the drop's 95% interval counted image by image, the verdict it earns, and whether the float
reference's own figures can be trusted."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tflite_opt.core.config import BenchmarkSettings, within_budget
from tflite_opt.results.measures import AccuracyStats, PairedDrop, Verdict, VerdictLabel

DEFAULT_SETTINGS = BenchmarkSettings()


# The two-sided 95% point of the standard normal distribution (scipy.stats.norm.ppf(0.975)).
Z95 = 1.959963984540054


TANGO = "Tango score interval of the paired difference"


WILSON = "Wilson score interval of the share of images where the model disagrees with the reference"


def paired_drop(reference_right: np.ndarray, model_right: np.ndarray, labelled: bool = True) -> PairedDrop:
    """A model's top-1 drop against the reference's, both scored on the same images, with its 95% interval.

    With labels both accuracies are estimated from the same images, so the interval is that of a difference of
    paired proportions: Tango's score interval (Tango 1998, Statistics in Medicine 17:891-908), one that
    Fagerland, Lydersen and Laake (2014, Statistics in Medicine 33:2850-2875) found to hold its coverage in
    small samples. It depends on the discordant pairs and the number of images only, stays within [-100, 100]
    points, and needs no continuity or zero-cell guard: with no discordant pair on n images it is
    ±100·z²/(n + z²) points (±7.1 on 50 images, ±0.38 on 1000), where the Wald interval would shrink to nothing.

    Without labels the reference's own top-1 is the label: it is right by definition, ``model_only`` is 0 and
    the drop is the share of images where the model disagrees, one binomial proportion, with Wilson's score
    interval (Tango's would allow for a reference that is sometimes wrong, and reach below zero).

    Args:
        reference_right: (N,) whether the reference's top-1 is right, image by image.
        model_right: (N,) whether the model's top-1 is right on the same images.
        labelled: False where the reference's top-1 stands in for the labels.
    """
    samples = len(reference_right)
    reference_only = int(np.sum(reference_right & ~model_right))
    model_only = int(np.sum(model_right & ~reference_right))
    if labelled:
        low, high, method = *_tango_interval(reference_only, model_only, samples), TANGO
    else:
        low, high, method = *_wilson_interval(reference_only - model_only, samples), WILSON
    return PairedDrop(samples, reference_only, model_only, 100.0 * low, 100.0 * high, method)


def _tango_score(delta: float, b: int, c: int, n: int) -> float:
    """Tango's score statistic of a difference ``delta`` of paired proportions, given the discordant counts
    (b: first only, c: second only); it falls as ``delta`` grows."""
    excess = b - c - n * delta
    if excess == 0:
        return 0.0
    # The restricted maximum-likelihood estimate of the share of second-only pairs, given delta.
    linear = -b - c + (2 * n - b + c) * delta
    second_only = (np.sqrt(linear**2 + 8 * n * c * delta * (1 - delta)) - linear) / (4 * n)
    variance = n * (2 * second_only + delta * (1 - delta))
    return excess / np.sqrt(variance) if variance > 0 else np.copysign(np.inf, excess)


def _tango_interval(b: int, c: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The 95% score interval of the paired difference (b - c) / n: where |score| <= z, found by bisection."""

    def root(target: float) -> float:
        low, high = -1.0, 1.0
        for _ in range(60):  # 2**-60 of the range: far below a rounding of the interval
            middle = (low + high) / 2
            low, high = (middle, high) if _tango_score(middle, b, c, n) > target else (low, middle)
        return (low + high) / 2

    return (-1.0 if b - c == -n else root(z)), (1.0 if b - c == n else root(-z))


def _wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's 95% score interval of a binomial proportion."""
    centre = (successes + z**2 / 2) / (n + z**2)
    half = z * np.sqrt(successes * (n - successes) / n + z**2 / 4) / (n + z**2)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


# A variant this many times slower than the float32 reference (medians, timed interleaved) is not good.
SLOWER_THAN_REFERENCE = 1.1


def verdict(
    drop_points: float | None,
    size_ratio: float | None,
    degenerate: bool,
    settings: BenchmarkSettings = DEFAULT_SETTINGS,
    score: str = "top-1",
    latency_ratio: float | None = None,
    paired: PairedDrop | None = None,
) -> Verdict:
    """good: drop ≤ budget, size at least halved and not slower than float32; bad: drop > 5 points or
    degenerate; else marginal.

    With ``paired`` (the drop measured image by image, with its 95% interval): where the interval straddles the
    budget and reaches further than the budget from the drop, the images are too few to tell a drop within the
    budget from one over it, and the verdict is marginal, its reason saying so; it is bad only where the whole
    interval is over the bad line. Otherwise the drop as measured decides, as without an interval.

    ``score`` names what dropped: top-1, or without labels the agreement with the float model.
    ``latency_ratio``: p50 against the float32 reference's, where both were timed.
    """
    if degenerate:
        return Verdict(VerdictLabel.BAD, "predicts one class for nearly every image")
    if drop_points is None:
        return Verdict(VerdictLabel.UNKNOWN, "no evaluation data, so no accuracy to judge")
    if size_ratio is None:
        size_ratio = 1.0
        size = "an unknown share of the float32 size (no float32 model to compare with)"
    else:
        size = f"{100 * size_ratio:.0f}% of the float32 size"
    budget, bad = settings.accuracy_budget, settings.bad_drop
    low, high = (paired.low, paired.high) if paired else (drop_points, drop_points)
    interval = f"95% interval {low:+.2f} to {high:+.2f}" if paired else None
    drops = f"{score} drops {drop_points:.2f} points" + (f" ({interval})" if interval else "")
    if low > bad:
        return Verdict(VerdictLabel.BAD, f"{drops}, more than {bad:g}, however small or fast")
    if drop_points > bad:  # with an interval that reaches under the bad line
        return Verdict(VerdictLabel.MARGINAL, f"{drops}: {_too_few(paired, f'{bad:g}-point bad line')}")
    if paired is not None and low <= budget < high and paired.margin > budget:
        return Verdict(VerdictLabel.MARGINAL, f"{drops}: {_too_few(paired, f'{budget:g}-point budget')}")
    if not within_budget(drop_points, budget):
        return Verdict(VerdictLabel.MARGINAL, f"{drops}, over the {budget:g}-point budget")
    slower = latency_ratio is not None and latency_ratio > SLOWER_THAN_REFERENCE
    if size_ratio <= 0.5:
        measured = "; ".join(filter(None, [interval, f"budget {budget:g}"]))
        held = f"{score} drops {drop_points:.2f} points ({measured}) at {size}"
        if slower:
            reason = f"{held}, but runs {latency_ratio:.1f}x slower than float32 (p50)"
            return Verdict(VerdictLabel.MARGINAL, reason, slower_on_host=True)
        return Verdict(VerdictLabel.GOOD, held)
    holds = f"{drop_points:.2f} points" + (f", {interval}" if interval else "")
    return Verdict(VerdictLabel.MARGINAL, f"{score} holds ({holds}) but the file is {size}, not halved")


def _too_few(paired: PairedDrop, line: str) -> str:
    """Why an interval that straddles ``line`` leaves the verdict open."""
    return (
        f"on {paired.samples} images the drop is known only to ±{paired.margin:.2f} points: too few to tell "
        f"against the {line}"
    )


# A trained classifier of up to this many classes scores at least this top-1 on held-out images of its own task.
PLAUSIBLE_TOP1 = 0.5


PLAUSIBLE_CLASSES = 100


def plausible_top1(num_classes: int) -> float:
    """The top-1 below which a float model's own score says it was probably fed what it was not trained on.

    50% up to 100 classes: the models worth quantizing score well above it on their own held-out images (MNIST
    about 99%, CIFAR-10 over 90%, CIFAR-100 about 70% for a mobile network), while a wrong normalization, a
    shuffled class order or other labels land far below (the default model with --mean 127.5 --std 127.5: 38.6%).
    Beyond 100 classes the floor falls with the logarithm of the number of classes, 50% · log 100 / log K
    (33% for ImageNet's 1000 classes, under the 41.5% of its smallest published MobileNet, v1 0.25 at 128
    pixels), since fine-grained classes are legitimately confused; never below the near-chance floor: twice
    chance, or for two or three classes halfway from chance to 100%.
    """
    fall = 1.0 if num_classes <= PLAUSIBLE_CLASSES else math.log(PLAUSIBLE_CLASSES) / math.log(num_classes)
    return max(_near_chance(num_classes), PLAUSIBLE_TOP1 * fall)


def _near_chance(num_classes: int) -> float:
    """Twice chance; for two or three classes, halfway from chance to 100%."""
    chance = 1.0 / num_classes
    return min(2.0 * chance, (1.0 + chance) / 2.0)


def reference_problem(stats: AccuracyStats | None, class_names: Sequence[str] | None = None) -> str | None:
    """Why the reference (float) model's own figures look wrong, or None.

    With labels, a top-1 under :func:`plausible_top1` (near chance, or just far below what a trained model of
    that many classes scores), or one class predicted for nearly every image, says the labels, the class order
    or the preprocessing are probably not what the model was trained with: every figure measured against them
    is then meaningless, whatever the verdicts say. The top-1 is taken as measured: on a few dozen images a
    model near the floor may fall either side of it, and the warning says "probably".
    """
    if stats is None or not stats.samples:
        return None
    num_classes = len(stats.per_class)
    names = (
        list(class_names) if class_names and len(class_names) == num_classes else [str(i) for i in range(num_classes)]
    )
    if stats.dominant_share >= 0.9:
        return (
            f"the float model predicts class {names[stats.dominant_class]!r} for {100 * stats.dominant_share:.0f}% of "
            "the evaluation images: the preprocessing (or the images) is probably not what it was trained with"
        )
    if not stats.labelled:
        return None
    chance = 1.0 / num_classes
    scores = f"the float model itself scores {100 * stats.top1:.1f}% top-1 on the evaluation data"
    if stats.top1 < _near_chance(num_classes):
        return (
            f"{scores}, near chance ({100 * chance:.1f}% for {num_classes} classes): the labels, the class order "
            "(--labels) or the preprocessing are probably wrong"
        )
    floor = plausible_top1(num_classes)
    if stats.top1 < floor:
        return (
            f"{scores}, under the {100 * floor:.0f}% a trained classifier of {num_classes} classes reaches: the "
            "preprocessing (--mean/--std, --input-scale/--input-offset), the labels or the class order (--labels) "
            "are probably not what it was trained with"
        )
    return None
