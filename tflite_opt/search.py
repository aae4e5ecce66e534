"""The smallest full-int8 model within an accuracy budget: ``convert --max-accuracy-drop D``.

Two searches, one step at a time, every step converted, verified and measured
on the held-out evaluation set against the Keras model's top-1:

1. Selective quantization, when full-int8 itself loses more than D points:
   TensorFlow's QuantizationDebugger ranks the layers by their int8 error
   (:mod:`tflite_opt.debug`); the worst is kept in float, the rest re-ranked,
   until the drop is within D (or ``max_float_layers`` are float).
2. Sparsity, with ``--prune``: an ascending grid of sparsities, each level
   fine-tuned from the previous level's pruned model (so the work is reused),
   stopping after two misses in a row, then one bisection step between the
   highest level within D and the next one.

The chosen candidate is the smallest (gzip) within D; without one, the one
that loses the least, and the run says so.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tflite_opt.benchmark import AccuracyStats, LatencyStats, SizeStats
from tflite_opt.config import ConvertConfig, Mode, SearchConfig
from tflite_opt.debug import LayerError
from tflite_opt.prune import PruneResult
from tflite_opt.tflite_file import TfliteFile
from tflite_opt.verify import Verification

PHASE_INT8 = "int8"
PHASE_FLOAT_LAYERS = "float layers"
PHASE_SPARSITY = "sparsity"


@dataclass(frozen=True)
class Measured:
    """A converted candidate and what was measured of it."""

    content: bytes
    parsed: TfliteFile
    verification: Verification
    accuracy: AccuracyStats
    latency: LatencyStats
    size: SizeStats
    pruned: PruneResult | None = None


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
    # The converted file and every measurement; the search logic itself needs only the figures above.
    measured: Measured | None = field(default=None, repr=False, compare=False)


def candidate_name(sparsity: float, float_layers: Sequence[str], per_tensor: bool) -> str:
    """``int8``, ``int8-per-tensor``, ``int8-pruned80``, ``int8-pruned80-mixed1`` (one layer kept in float)."""
    name = Mode.FULL_INT8.value + ("-per-tensor" if per_tensor else "")
    if sparsity:
        name += f"-pruned{round(100 * sparsity)}"
    if float_layers:
        name += f"-mixed{len(float_layers)}"
    return name


def choose(candidates: Sequence[Candidate]) -> Candidate:
    """The smallest (gzip) candidate within the budget; without one, the one losing the least top-1."""
    within = [c for c in candidates if c.within_budget]
    if within:
        return min(within, key=lambda c: (c.gzip_bytes, -c.top1))
    return min(candidates, key=lambda c: (c.drop, c.gzip_bytes))


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
    make: Callable[[float, Candidate | None], Candidate],
    refine: bool = True,
    bad_drop: float = 5.0,
) -> list[Candidate]:
    """Ascending sparsities, each continuing from the previous candidate; then one bisection step.

    Stops after two candidates in a row miss the budget, or one loses more than ``bad_drop``
    points (accuracy rarely comes back with more pruning). The bisection tries the middle of
    the highest level within the budget and the next level, starting from the former.

    Args:
        levels: sparsities, ascending.
        make: the candidate pruned to a sparsity, continuing from the given candidate (None: the dense model).
    """
    tried: list[Candidate] = []
    for level in levels:
        tried.append(make(level, tried[-1] if tried else None))
        missed_twice = len(tried) >= 2 and not tried[-1].within_budget and not tried[-2].within_budget
        if missed_twice or tried[-1].drop > bad_drop:
            break
    within = [c for c in tried if c.within_budget]
    if refine and within:
        best = max(within, key=lambda c: c.sparsity)
        above = [c.sparsity for c in tried if c.sparsity > best.sparsity]
        if above:
            middle = round((best.sparsity + min(above)) / 2, 3)
            if all(abs(middle - c.sparsity) > 1e-9 for c in tried):
                tried.append(make(middle, best))
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
                "top1": c.top1,
                "top1_drop_points": round(c.drop, 4),
                "within_budget": c.within_budget,
                "gzip_size_bytes": c.gzip_bytes,
                "chosen": c.variant == self.chosen.variant,
                "from": c.parent,
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
            "layer_ranking": [e.to_dict() for e in self.ranking],
            "candidates": rows,
        }


@dataclass(frozen=True)
class CandidateBuilder:
    """What candidates are built from and judged on; converts, verifies and measures each."""

    model: Any
    spec: Any  # tflite_opt.load.ClassifierSpec
    config: ConvertConfig
    calibration: np.ndarray
    train: Any  # tflite_opt.representative.Dataset, for pruning's fine-tuning
    evaluation: Any  # tflite_opt.representative.DataSource, held out
    seen: dict[str, set[str]]
    sample: np.ndarray
    keras_top1: float
    progress: bool = False

    @property
    def search(self) -> SearchConfig:
        return self.config.search

    def candidate(
        self,
        calibrated: bytes,
        phase: str,
        sparsity: float,
        float_layers: tuple[str, ...],
        parent: str | None,
        pruned: PruneResult | None = None,
    ) -> Candidate:
        from tflite_opt.convert import quantize_calibrated
        from tflite_opt.debug import float_nodes, layer_nodes
        from tflite_opt.pipeline import measure_variants
        from tflite_opt.tflite_file import read_tflite
        from tflite_opt.verify import sparsity_check, verify_variant

        variant = candidate_name(sparsity, float_layers, self.config.per_tensor)
        keep = []
        if float_layers:
            nodes = layer_nodes(read_tflite(calibrated, source="the calibrated model"), self.spec.layer_names)
            keep = float_nodes(nodes, float_layers)
        content = quantize_calibrated(calibrated, self.config.io_type, self.config.per_tensor, keep)
        parsed = read_tflite(content, source=f"the {variant} model")
        verification = verify_variant(parsed, Mode.FULL_INT8, self.config.io_type, self.spec.layer_names, float_layers)
        if pruned is not None:
            keras_sparsity = {layer.layer: layer.sparsity for layer in pruned.stats.layers}
            verification = Verification(variant, verification.checks + (sparsity_check(parsed, keras_sparsity),))
        verification.raise_for_failures()
        _, accuracy, latency, sizes = measure_variants(
            {variant: (content, parsed)},
            self.evaluation,
            self.config.preprocessing,
            self.model,
            self.config.benchmark,
            self.seen,
            self.sample,
            reference=None,
        )
        measured = Measured(content, parsed, verification, accuracy[variant], latency[variant], sizes[variant], pruned)
        drop = float(100.0 * (self.keras_top1 - measured.accuracy.top1))
        found = Candidate(
            variant=variant,
            phase=phase,
            sparsity=sparsity,
            float_layers=float_layers,
            top1=measured.accuracy.top1,
            drop=drop,
            gzip_bytes=measured.size.gzip_bytes,
            within_budget=self.search.within(drop),
            parent=parent,
            measured=measured,
        )
        if self.progress:
            mark = "within" if found.within_budget else "over"
            print(
                f"search: {variant}: top-1 {100 * found.top1:.2f}% (drop {drop:.2f}, {mark} the "
                f"{self.search.max_accuracy_drop:g}-point budget), gzip {found.gzip_bytes / 1024:.1f} KiB, "
                f"p50 {latency[variant].p50:.3f} ms",
                file=sys.stderr,
            )
        return found

    def calibrate(self, model: Any) -> bytes:
        from tflite_opt.convert import calibrate_keras

        return calibrate_keras(model, self.calibration, self.progress)

    def rank(self, calibrated: bytes, float_layers: tuple[str, ...]) -> tuple[LayerError, ...]:
        from tflite_opt.debug import quantization_errors

        return quantization_errors(
            calibrated, self.calibration, self.spec.layer_names, self.config.per_tensor, float_layers
        )

    def pruned(self, sparsity: float, previous: Candidate | None, float_layers: tuple[str, ...]) -> Candidate:
        from tflite_opt.prune import prune_model

        base = self.config.prune
        start = previous.measured.pruned if previous is not None else None
        settings = replace(
            base,
            target_sparsity=sparsity,
            # Continuing from a pruned model needs less fine-tuning than starting from the dense one.
            epochs=base.epochs if start is None else max(1, base.epochs // 2),
            initial_sparsity=previous.sparsity if start is not None else 0.0,
        )
        result = prune_model(
            start.model if start is not None else self.model,
            self.train.model_input(self.config.preprocessing),
            self.train.labels,
            settings,
            verbose=0,
        )
        calibrated = self.calibrate(result.model)
        parent = previous.variant if previous is not None else candidate_name(0.0, float_layers, self.config.per_tensor)
        return self.candidate(calibrated, PHASE_SPARSITY, sparsity, float_layers, parent, result)


def run_search(builder: CandidateBuilder) -> SearchOutcome:
    """Search (selective quantization, then sparsity with ``config.prune``) for the smallest model within budget.

    Raises:
        TfliteOptError: a candidate failed to convert or verify.
    """
    model, spec, config = builder.model, builder.spec, builder.config
    search = config.search
    calibrated = builder.calibrate(model)
    first = builder.candidate(calibrated, PHASE_INT8, 0.0, (), None)
    first_ranking: list[tuple[LayerError, ...]] = []

    def rank(float_layers: tuple[str, ...]) -> list[str]:
        ranking = builder.rank(calibrated, float_layers)
        if not first_ranking:
            first_ranking.append(ranking)
        return [e.layer for e in ranking if e.layer in spec.layer_names]

    def keep_in_float(float_layers: tuple[str, ...], parent: Candidate) -> Candidate:
        return builder.candidate(calibrated, PHASE_FLOAT_LAYERS, 0.0, float_layers, parent.variant)

    candidates = search_float_layers(first, rank, keep_in_float, search.max_float_layers)
    skipped = None
    if config.prune is not None:
        unpruned = choose(candidates)
        if unpruned.within_budget:
            candidates += search_sparsity(
                search.sparsities,
                lambda level, previous: builder.pruned(level, previous, unpruned.float_layers),
                refine=search.refine,
                bad_drop=config.benchmark.bad_drop,
            )
        else:
            skipped = "even the unpruned int8 candidates miss the budget, and pruning only loses more"
    return SearchOutcome(
        config=search,
        keras_top1=builder.keras_top1,
        eval_samples=len(builder.evaluation),
        per_tensor=config.per_tensor,
        candidates=tuple(candidates),
        ranking=first_ranking[0] if first_ranking else (),
        skipped_pruning=skipped,
    )
