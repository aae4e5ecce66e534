"""What the accuracy-budget search tried and chose, and the per-layer int8 errors it ranked."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tflite_opt.core.config import SearchConfig
from tflite_opt.core.variant import QatScheme, VariantSpec
from tflite_opt.results import NamedEnum
from tflite_opt.results.measures import Measured, PairedDrop, Scored, ShipOption, choose_to_ship, paired_drop_of
from tflite_opt.results.tuning import NOT_TUNED, FineTuned, PruneResult


@dataclass(frozen=True)
class LayerError:
    """How much int8 error one Keras layer adds, measured on the calibration data."""

    layer: str
    operators: tuple[str, ...]
    rmse_over_scale: float
    relative_error: float
    scale: float
    elements: int
    position: int
    # Other layers the converter fused into this layer's operators (a following activation).
    carries: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "carries": list(self.carries),
            "operators": list(self.operators),
            "rmse_over_scale": round(self.rmse_over_scale, 4),
            "relative_error": round(self.relative_error, 4),
            "scale": self.scale,
            "elements": self.elements,
        }


class SearchPhase(NamedEnum):
    """The step of the search a candidate belongs to."""

    INT8 = "int8"
    QAT = "quantization-aware training"
    FLOAT_LAYERS = "float layers"
    SPARSITY = "sparsity"
    CLUSTERING = "clustering"


@dataclass(frozen=True)
class Candidate:
    """One model the search tried: its recipe, the step that tried it, and its figures."""

    spec: VariantSpec
    phase: SearchPhase
    top1: float
    drop: float
    gzip_bytes: int
    within_budget: bool
    parent: str | None
    # The converted file and every measurement, and the fine-tuned Keras models it came from; the search
    # logic itself needs only the figures above. ``scored`` (size, accuracy) comes with the candidate from
    # wherever it was built; ``measured`` adds latency, timed with the other candidates' on one machine.
    measured: Measured | None = field(default=None, repr=False, compare=False)
    tuned: FineTuned = field(default=NOT_TUNED, repr=False, compare=False)
    # Why the candidate could not be built, converted or verified; such a candidate has no figures.
    failure: str | None = None
    scored: Scored | None = field(default=None, repr=False, compare=False)
    # Where and in how long it was built: ``node/pid`` of the worker (the driver's for a local search), seconds.
    worker: str | None = None
    seconds: float | None = None
    # Taken from an earlier, interrupted run of the same search (--resume) instead of being built again.
    resumed: bool = False

    @classmethod
    def failed(cls, spec: VariantSpec, phase: SearchPhase, parent: str | None, reason: str) -> Candidate:
        """A candidate that could not be made: a row with its reason, never within the budget nor chosen
        while another candidate has figures."""
        return cls(spec, phase, 0.0, math.inf, 0, False, parent, failure=reason)

    @property
    def variant(self) -> str:
        return self.spec.name

    @property
    def sparsity(self) -> float:
        return self.spec.sparsity

    @property
    def float_layers(self) -> tuple[str, ...]:
        return self.spec.float_layers

    @property
    def scheme(self) -> QatScheme | None:
        """Quantization-aware training's scheme (qat, pqat, cqat, pcqat), None for post-training quantization."""
        return self.spec.qat

    @property
    def pruned(self) -> PruneResult | None:
        return self.tuned.pruned

    @property
    def paired(self) -> PairedDrop | None:
        """The drop counted image by image, with its 95% interval (None for a failed candidate, or where the
        evaluation could not pair it with the Keras model's)."""
        if self.failure is not None or self.scored is None:
            return None
        return paired_drop_of(self.scored.accuracy, self.drop)

    @property
    def remedy(self) -> str:
        """What kept this candidate near the float model: ``none`` (post-training quantization), the
        quantization-aware scheme, or ``float layers``."""
        return self.scheme.value if self.scheme else ("float layers" if self.float_layers else "none")


@dataclass(frozen=True)
class SearchEngine:
    """Where a search built its candidates: ``local`` (this process) or ``ray`` (tasks on a Ray cluster at
    ``address``, ``cpus`` CPUs), and its schedule: ``chained`` (each sparsity from the previous one) or
    ``parallel`` (each from the float model, all at once)."""

    engine: str = "local"
    schedule: str = "chained"
    address: str | None = None
    cpus: int | None = None

    def describe(self, candidates: Sequence[Candidate]) -> str:
        """One line: where the candidates were built, how many workers built them, the schedule."""
        workers = _workers(candidates)
        where = (
            f"on Ray at {self.address} ({self.cpus} CPUs), by {len(workers)} worker{'s' if len(workers) != 1 else ''}"
            if self.engine == "ray"
            else "in this process"
        )
        how = "each sparsity from the float model" if self.schedule == "parallel" else "each from the previous"
        resumed = sum(c.resumed for c in candidates)
        kept = f"; {resumed} kept from the interrupted run (--resume)" if resumed else ""
        return f"  built {where}; {self.schedule} schedule ({how}); latency timed on this machine{kept}"

    def to_dict(self, candidates: Sequence[Candidate]) -> dict[str, Any]:
        workers = _workers(candidates)
        return {
            "engine": self.engine,
            "schedule": self.schedule,
            "address": self.address,
            "cpus": self.cpus,
            "workers": len(workers),
            "worker_names": workers,
            "resumed": sum(c.resumed for c in candidates),
        }


def _workers(candidates: Sequence[Candidate]) -> list[str]:
    """The workers that built the candidates of this run (not those kept from an earlier one)."""
    return sorted({c.worker for c in candidates if c.worker is not None and not c.resumed})


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
    engine: SearchEngine = SearchEngine()

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

    def noise(self) -> str | None:
        """Where the evaluation set cannot tell the chosen candidate's side of the budget, or that of the smallest
        one that missed it, from noise: a sentence with their 95% intervals; None where both are clear."""
        budget = self.config.max_accuracy_drop
        chosen = self.chosen
        missed = [c for c in self.candidates if not c.within_budget and c.paired is not None]
        smaller = [c for c in missed if c.gzip_bytes < chosen.gzip_bytes and c.paired.low <= budget]
        unsure = [chosen] if chosen.paired is not None and chosen.paired.high > budget else []
        unsure += sorted(smaller, key=lambda c: c.gzip_bytes)[:1]
        if not unsure or not self.met:
            return None
        intervals = "; ".join(
            f"{c.variant} drop {c.drop:.2f} points, 95% interval {c.paired.low:.2f} to {c.paired.high:.2f}"
            for c in unsure
        )
        return (
            f"within noise: on {self.eval_samples} images the evaluation cannot tell these from the "
            f"{budget:g}-point budget ({intervals}); more held-out images would settle the choice"
        )

    def to_dict(self, paths: dict[str, str] | None = None) -> dict[str, Any]:
        by_name = {c.variant: c for c in self.candidates}
        rows = []
        for c in self.candidates:
            row: dict[str, Any] = {
                "variant": c.variant,
                "phase": c.phase.value,
                "sparsity": c.sparsity,
                "float_layers": list(c.float_layers),
                "per_tensor": self.per_tensor,
                "top1": c.top1 if c.failure is None else None,
                "top1_drop_points": round(c.drop, 4) if c.failure is None else None,
                "top1_drop_ci95_points": [round(c.paired.low, 4), round(c.paired.high, 4)] if c.paired else None,
                "failure": c.failure,
                "within_budget": c.within_budget,
                "gzip_size_bytes": c.gzip_bytes,
                "chosen": c.variant == self.chosen.variant,
                "from": c.parent,
                "remedy": c.remedy,
                "fine_tuning_seconds": c.tuned.seconds(),
                "worker": c.worker,
                "wall_seconds": round(c.seconds, 1) if c.seconds is not None else None,
                "resumed": c.resumed,
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
            "within_noise": self.noise(),
            "keras_top1": self.keras_top1,
            "judged_on": (
                f"the held-out evaluation set ({self.eval_samples} images); the chosen candidate was selected on "
                "it, so its drop is slightly optimistic for new data"
            ),
            "settings": self.config.to_dict(),
            **self.engine.to_dict(self.candidates),
            "pruning_skipped": self.skipped_pruning,
            "qat_not_tried": self.qat_not_tried,
            "layer_ranking": [e.to_dict() for e in self.ranking],
            "candidates": rows,
        }


def choose(candidates: Sequence[Candidate]) -> Candidate:
    """The smallest (gzip) candidate within the budget; without one, the one losing the least top-1
    (the rule of :func:`tflite_opt.results.measures.choose_to_ship`)."""
    options = [ShipOption(c.variant, c.within_budget, c.gzip_bytes, c.drop, c.top1) for c in candidates]
    chosen = choose_to_ship(options)
    return next(c for c in candidates if c.variant == chosen)
