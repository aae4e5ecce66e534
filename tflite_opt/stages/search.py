"""The smallest full-int8 model within an accuracy budget: ``convert --max-accuracy-drop D``.

This stage is the search's logic on figures: which candidate to try next, when to
stop, which one wins. :mod:`tflite_opt.jobs.search` builds and measures the
candidates it asks for.

Every step converted, verified and measured on the held-out evaluation set
against the Keras model's top-1:

1. Full int8, when post-training quantization (PTQ) loses more than D points:
   with ``--qat``, quantization-aware training first (``int8-qat``: still
   full-integer, which an NPU, DSP or Edge TPU needs); then, as the last resort,
   selective quantization: TensorFlow's QuantizationDebugger ranks the layers by
   their int8 error (:mod:`tflite_opt.stages.layer_errors`); the worst is kept in
   float, the rest re-ranked, until the drop is within D (or ``max_float_layers``
   are float).
2. Sparsity, with ``--prune``: an ascending grid of sparsities, each level
   fine-tuned from the previous level's pruned model (so the work is reused)
   and, with ``--cluster N``, clustered; where a level's PTQ misses D and ``--qat``
   is given, the scheme that keeps its zeros and shared values (``-pqat``,
   ``-pcqat``) is tried. Stops after two levels in a row miss, then one bisection
   step between the highest level within D and the next one.
3. Clustering without pruning (``--cluster N``): one clustered candidate, and its
   ``-cqat`` where its PTQ misses.

The chosen candidate is the smallest (gzip) within D; without one, the one
that loses the least, and the run says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tflite_opt.core.config import Mode, SearchConfig
from tflite_opt.stages.benchmark import Measured, ShipOption, choose_to_ship
from tflite_opt.stages.layer_errors import LayerError
from tflite_opt.stages.prune import PruneResult
from tflite_opt.stages.qat import FineTuned

PHASE_INT8 = "int8"
PHASE_QAT = "quantization-aware training"
PHASE_FLOAT_LAYERS = "float layers"
PHASE_SPARSITY = "sparsity"
PHASE_CLUSTERING = "clustering"


@dataclass(frozen=True)
class Candidate:
    """One model the search tried."""

    variant: str
    phase: str
    sparsity: float
    float_layers: tuple[str, ...]
    top1: float
    drop: float
    gzip_bytes: int
    within_budget: bool
    parent: str | None
    # Quantization-aware training's scheme (qat, pqat, cqat, pcqat), None for post-training quantization.
    scheme: str | None = None
    # The converted file and every measurement, and the fine-tuned Keras models it came from; the search
    # logic itself needs only the figures above.
    measured: Measured | None = field(default=None, repr=False, compare=False)
    tuned: FineTuned = field(default=FineTuned(), repr=False, compare=False)
    # Why the candidate could not be built, converted or verified; such a candidate has no figures.
    failure: str | None = None

    @classmethod
    def failed(
        cls, variant: str, phase: str, sparsity: float, float_layers: tuple[str, ...], parent: str | None, reason: str
    ) -> Candidate:
        """A candidate that could not be made: a row with its reason, never within the budget nor chosen
        while another candidate has figures."""
        return cls(variant, phase, sparsity, float_layers, 0.0, math.inf, 0, False, parent, failure=reason)

    @property
    def pruned(self) -> PruneResult | None:
        return self.tuned.pruned

    @property
    def remedy(self) -> str:
        """What kept this candidate near the float model: ``none`` (post-training quantization), the
        quantization-aware scheme, or ``float layers``."""
        return self.scheme or ("float layers" if self.float_layers else "none")


def candidate_name(
    sparsity: float,
    float_layers: Sequence[str],
    per_tensor: bool,
    clusters: int | None = None,
    scheme: str | None = None,
) -> str:
    """``int8``, ``int8-per-tensor``, ``int8-pruned80``, ``int8-pruned80-mixed1`` (one layer kept in float),
    ``int8-qat``, ``int8-pruned80-clustered16-pcqat``."""
    name = Mode.FULL_INT8.value + ("-per-tensor" if per_tensor else "")
    if sparsity:
        name += f"-pruned{round(100 * sparsity)}"
    if clusters:
        name += f"-clustered{clusters}"
    if float_layers:
        name += f"-mixed{len(float_layers)}"
    if scheme:
        name += f"-{scheme}"
    return name


def choose(candidates: Sequence[Candidate]) -> Candidate:
    """The smallest (gzip) candidate within the budget; without one, the one losing the least top-1
    (the rule of :func:`tflite_opt.stages.benchmark.choose_to_ship`)."""
    options = [ShipOption(c.variant, c.within_budget, c.gzip_bytes, c.drop, c.top1) for c in candidates]
    chosen = choose_to_ship(options)
    return next(c for c in candidates if c.variant == chosen)


def search_int8(
    first: Candidate,
    quantization_aware: Callable[[], Candidate] | None,
    float_layers: Callable[[Candidate], Sequence[Candidate]],
) -> list[Candidate]:
    """The full-int8 candidates: ``first`` (post-training quantization); where it misses the budget,
    the quantization-aware one (when given), then, as the last resort, layers kept in float.

    Args:
        quantization_aware: makes the int8-qat candidate; None where QAT is not asked for.
        float_layers: the candidates with layers kept in float, ``first`` first (:func:`search_float_layers`).
    """
    tried = [first]
    if first.within_budget:
        return tried
    if quantization_aware is not None:
        tried.append(quantization_aware())
        if tried[-1].within_budget:
            return tried
    return tried + [c for c in float_layers(first) if c is not first]


def search_float_layers(
    first: Candidate,
    rank: Callable[[tuple[str, ...]], Sequence[str]],
    make: Callable[[tuple[str, ...], Candidate], Candidate],
    max_float_layers: int,
) -> list[Candidate]:
    """Keep the worst-ranked layer in float, one more per step, until a candidate is within the budget.

    Args:
        first: the full-int8 candidate.
        rank: layers worst first, given the layers already in float.
        make: the candidate with these layers in float, derived from the given one.
        max_float_layers: stop after this many layers are float.
    """
    tried = [first]
    float_layers: tuple[str, ...] = ()
    while not tried[-1].within_budget and len(float_layers) < max_float_layers:
        worst = [layer for layer in rank(float_layers) if layer not in float_layers]
        if not worst:
            break
        float_layers += (worst[0],)
        tried.append(make(float_layers, tried[-1]))
    return tried


def search_sparsity(
    levels: Sequence[float],
    make: Callable[[float, Candidate | None], Sequence[Candidate]],
    refine: bool = True,
    bad_drop: float = 5.0,
) -> list[Candidate]:
    """Ascending sparsities, each continuing from the previous level; then one bisection step.

    A level is judged by its best candidate (post-training quantization, and the quantization-aware one
    where that missed); a level whose candidates all failed counts as a miss. Stops after two levels in a row
    miss the budget, or one loses more than
    ``bad_drop`` points (accuracy rarely comes back with more pruning). The bisection tries the middle
    of the highest level within the budget and the next level, starting from the former.

    Args:
        levels: sparsities, ascending.
        make: the candidates of a sparsity, continuing from the given level's (None: the dense model).
    """
    tried: list[Candidate] = []
    best_by_level: list[Candidate] = []
    for level in levels:
        # A level that failed is a miss, not a collapse: the next continues from the last level that was made.
        found = make(level, next((c for c in reversed(best_by_level) if c.failure is None), None))
        tried += found
        best_by_level.append(choose(found))
        missed_twice = len(best_by_level) >= 2 and not any(c.within_budget for c in best_by_level[-2:])
        if missed_twice or (best_by_level[-1].failure is None and best_by_level[-1].drop > bad_drop):
            break
    within = [c for c in best_by_level if c.within_budget]
    if refine and within:
        best = max(within, key=lambda c: c.sparsity)
        above = [c.sparsity for c in best_by_level if c.sparsity > best.sparsity]
        if above:
            middle = round((best.sparsity + min(above)) / 2, 3)
            if all(abs(middle - c.sparsity) > 1e-9 for c in best_by_level):
                tried += make(middle, best)
    return tried


@dataclass(frozen=True)
class SearchOutcome:
    """Every candidate tried, the chosen one, and the budget."""

    config: SearchConfig
    keras_top1: float
    eval_samples: int
    per_tensor: bool
    candidates: tuple[Candidate, ...]
    ranking: tuple[LayerError, ...] = ()
    skipped_pruning: str | None = None
    # Why quantization-aware training was not tried where post-training quantization missed, if it was not.
    qat_not_tried: str | None = None

    @property
    def chosen(self) -> Candidate:
        return choose(self.candidates)

    @property
    def met(self) -> bool:
        return self.chosen.within_budget

    def candidate(self, variant: str) -> Candidate:
        return next(c for c in self.candidates if c.variant == variant)

    def message(self) -> str:
        """One line: what was chosen, or that nothing met the budget and what came closest."""
        chosen, budget = self.chosen, self.config.max_accuracy_drop
        if self.met:
            return (
                f"search: {chosen.variant} is the smallest of {len(self.candidates)} candidates within the "
                f"{budget:g}-point budget (drop {chosen.drop:.2f} points, gzip {chosen.gzip_bytes / 1024:.1f} KiB)"
            )
        return (
            f"search: no candidate of {len(self.candidates)} is within the {budget:g}-point budget; the best was "
            f"{chosen.variant} (drop {chosen.drop:.2f} points). It was written as the chosen model for inspection"
        )

    def to_dict(self, paths: dict[str, str] | None = None) -> dict[str, Any]:
        by_name = {c.variant: c for c in self.candidates}
        rows = []
        for c in self.candidates:
            row: dict[str, Any] = {
                "variant": c.variant,
                "phase": c.phase,
                "sparsity": c.sparsity,
                "float_layers": list(c.float_layers),
                "per_tensor": self.per_tensor,
                "top1": c.top1 if c.failure is None else None,
                "top1_drop_points": round(c.drop, 4) if c.failure is None else None,
                "failure": c.failure,
                "within_budget": c.within_budget,
                "gzip_size_bytes": c.gzip_bytes,
                "chosen": c.variant == self.chosen.variant,
                "from": c.parent,
                "remedy": c.remedy,
                "fine_tuning_seconds": c.tuned.seconds(),
                "path": (paths or {}).get(c.variant),
            }
            if c.measured is not None:
                row["size_bytes"] = c.measured.size.bytes
                row["p50_ms"] = round(c.measured.latency.p50, 4)
                parent = by_name.get(c.parent) if c.parent else None
                if parent is not None and parent.measured is not None:
                    row["step_cost"] = {
                        "size_bytes": c.measured.size.bytes - parent.measured.size.bytes,
                        "gzip_size_bytes": c.gzip_bytes - parent.gzip_bytes,
                        "p50_ms": round(c.measured.latency.p50 - parent.measured.latency.p50, 4),
                        "top1_points": round(100.0 * (c.top1 - parent.top1), 4),
                    }
            rows.append(row)
        return {
            "budget": self.config.max_accuracy_drop,
            "met": self.met,
            "chosen": self.chosen.variant,
            "keras_top1": self.keras_top1,
            "judged_on": (
                f"the held-out evaluation set ({self.eval_samples} images); the chosen candidate was selected on "
                "it, so its drop is slightly optimistic for new data"
            ),
            "settings": self.config.to_dict(),
            "pruning_skipped": self.skipped_pruning,
            "qat_not_tried": self.qat_not_tried,
            "layer_ranking": [e.to_dict() for e in self.ranking],
            "candidates": rows,
        }
