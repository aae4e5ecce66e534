"""What is measured of a file: latency, size, accuracy, fidelity, its verdict; and the one rule for what ships."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tflite_opt.results import NamedEnum
from tflite_opt.results.files import Verified


@dataclass(frozen=True)
class LatencyStats:
    """Single-image invoke latency in ms, as LiteRT's own benchmark reports it, and (one thread) the CPU time
    of the invoking thread, which load on the machine does not inflate."""

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
    cpu_p50: float | None = None
    cpu_mean: float | None = None
    # With XNNPACK: the parts it took (1: the whole graph) and the operators left to the built-in kernels.
    partitions: int = 0
    undelegated: tuple[tuple[str, int], ...] = ()
    # What loading and running the file adds to a process's peak resident memory, runtime's first use included
    # (None: not measured, or this system cannot tell).
    peak_memory_bytes: int | None = None

    def delegation_note(self) -> str | None:
        """What XNNPACK could not run, where that split the graph (the usual reason int8 is not faster)."""
        if self.partitions <= 1:
            return None
        left = ", ".join(f"{name} x{count}" if count > 1 else name for name, count in self.undelegated)
        return f"XNNPACK ran it in {self.partitions} parts; left to the built-in kernels: {left}"

    def delegation_dict(self) -> dict[str, Any] | None:
        if self.delegate != "xnnpack":
            return None
        return {"partitions": self.partitions, "not_delegated": dict(self.undelegated)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": round(self.mean, 4),
            "std": round(self.std, 4),
            "min": round(self.min, 4),
            "p50": round(self.p50, 4),
            "p90": round(self.p90, 4),
            "p99": round(self.p99, 4),
        }

    def cpu_dict(self) -> dict[str, Any] | None:
        if self.cpu_p50 is None:
            return None
        return {"p50": round(self.cpu_p50, 4), "mean": round(self.cpu_mean, 4)}


@dataclass(frozen=True)
class SizeStats:
    bytes: int
    gzip_bytes: int
    params_by_dtype: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "gzip_bytes": self.gzip_bytes, "params_by_dtype": dict(self.params_by_dtype)}


@dataclass(frozen=True)
class ClassStats:
    label: int
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class AccuracyStats:
    """Accuracy of one model on the held-out set.

    With labels, ``top1`` is accuracy. Without labels (``labelled`` False) the reference model's top-1
    predictions stand in for them, so ``top1`` is agreement with the reference and the confusion matrix
    is against its predictions.
    """

    samples: int
    top1: float
    top5: float | None
    per_class: tuple[ClassStats, ...]
    confusion: np.ndarray
    agreement: float | None
    dominant_class: int
    dominant_share: float
    labelled: bool = True
    fidelity: Fidelity | None = None
    paired: PairedDrop | None = None

    @property
    def degenerate(self) -> bool:
        """One class predicted for nearly everything (90%), far beyond its share of the labels."""
        label_share = self.confusion[self.dominant_class].sum() / max(1, self.samples)
        return bool(self.dominant_share >= 0.9 and self.dominant_share - label_share >= 0.3)

    def to_dict(self) -> dict[str, Any]:
        return {
            "top1": self.top1 if self.labelled else None,
            "top5": self.top5 if self.labelled else None,
            "agreement": self.agreement,
            "labelled": self.labelled,
            "fidelity": self.fidelity.to_dict() if self.fidelity else None,
            "per_class": [c.__dict__ for c in self.per_class],
            "confusion_matrix": self.confusion.tolist(),
            "degenerate": self.degenerate,
            "paired_drop": self.paired.to_dict() if self.paired else None,
        }


@dataclass(frozen=True)
class PairedDrop:
    """A model's top-1 drop against the reference model, both scored on the same images, with its 95% interval.

    Each image is one pair of outcomes (reference right or wrong, model right or wrong); only the discordant
    pairs move the drop, which is ``(reference_only - model_only) / samples``. Without labels the reference's
    top-1 is the label, so the reference is right on every image: ``reference_only`` counts the disagreements
    and ``model_only`` is 0.

    Attributes:
        samples: images scored by both.
        reference_only: images the reference gets right and the model wrong.
        model_only: images the model gets right and the reference wrong.
        low: the lower end of the 95% interval of the drop, in points.
        high: its upper end, in points.
        method: how the interval was computed.
    """

    samples: int
    reference_only: int
    model_only: int
    low: float
    high: float
    method: str

    @property
    def points(self) -> float:
        """The drop, in points."""
        return 100.0 * (self.reference_only - self.model_only) / self.samples

    @property
    def margin(self) -> float:
        """How far the interval reaches from the drop, on its farther side, in points (score intervals are not
        symmetric: "drop ± margin" contains the whole interval)."""
        return max(self.points - self.low, self.high - self.points)

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "reference_only": self.reference_only,
            "model_only": self.model_only,
            "ci95_points": [round(self.low, 4), round(self.high, 4)],
            "method": self.method,
        }


@dataclass(frozen=True)
class Fidelity:
    """How closely a model's scores follow the reference (float) model's on the same images.

    Attributes:
        agreement: share of images where both rank the same class first.
        top5_overlap: mean share of the reference's five best classes that are among this model's five best.
        mean_kl: mean KL divergence KL(reference || model) of the class probabilities (softmax of the scores
            where they are not probabilities already), in nats.
    """

    agreement: float
    top5_overlap: float
    mean_kl: float

    def to_dict(self) -> dict[str, float]:
        return {
            "agreement": self.agreement,
            "top5_overlap": round(self.top5_overlap, 6),
            "mean_kl": round(self.mean_kl, 6),
        }


class VerdictLabel(NamedEnum):
    """A variant's verdict: good, marginal or bad against the float32 model, which is the reference; unknown
    without evaluation data."""

    GOOD = "good"
    MARGINAL = "marginal"
    BAD = "bad"
    UNKNOWN = "unknown"
    REFERENCE = "reference"


@dataclass(frozen=True)
class Verdict:
    """A variant's label and why. ``slower_on_host``: marginal only because it ran slower than float32 here."""

    label: VerdictLabel
    reason: str
    slower_on_host: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", VerdictLabel(self.label))

    @property
    def passes(self) -> bool:
        """What the choice of the variant to ship asks: good, or good but for its speed on this host. The phone runs
        the file, not the host: on a CPU without fast int8 kernels (AVX2 without VNNI) every int8 variant runs
        slower than float32, and that slowness must not make the tool ship a larger file (as a search, which
        weighs accuracy and size only, would not)."""
        return self.label is VerdictLabel.GOOD or self.slower_on_host


@dataclass(frozen=True)
class Measured:
    """A converted, verified file and what was measured of it."""

    file: Verified
    latency: LatencyStats
    size: SizeStats
    accuracy: AccuracyStats | None = None


@dataclass(frozen=True)
class Scored:
    """A converted, verified file's size and accuracy, before its latency is measured: a search scores each
    candidate where it is built (on any worker) and times them all together on one machine."""

    file: Verified
    size: SizeStats
    accuracy: AccuracyStats | None = None

    def timed(self, latency: LatencyStats) -> Measured:
        return Measured(self.file, latency, self.size, self.accuracy)


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


def paired_drop_of(accuracy: AccuracyStats | None, drop: float | None) -> PairedDrop | None:
    """``accuracy``'s drop counted image by image, with its interval, where it is the ``drop`` (in points) a
    verdict or a report speaks of: counted against the same reference model, not another baseline."""
    paired = accuracy.paired if accuracy else None
    if paired is None or drop is None or abs(paired.points - drop) > 1e-6:
        return None
    return paired


def drop_points(baseline_top1: float, top1: float) -> float:
    """Top-1 (or agreement) lost against the baseline's, in points."""
    return float(100.0 * (baseline_top1 - top1))
