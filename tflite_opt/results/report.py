"""The report of one run: every variant verified and measured, what fine-tuning and the search did; its JSON."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tflite_opt.core.interpreter import ROUNDING
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.core.shipping import Resize
from tflite_opt.results.clients import Client
from tflite_opt.results.files import Verification
from tflite_opt.results.inputs import ClassMapping, PixelInputChoice
from tflite_opt.results.measures import (
    AccuracyStats,
    LatencyStats,
    PairedDrop,
    ShipOption,
    SizeStats,
    Verdict,
    choose_to_ship,
    drop_points,
    paired_drop_of,
)
from tflite_opt.results.search import SearchOutcome
from tflite_opt.results.tuning import ClusterStats, PruneStats, QatStats

SCHEMA_VERSION = 1


PRUNING_SIZE_NOTE = (
    "Pruning shows in the compressed (gzip) size, not in the raw .tflite size: the file stores a pruned "
    "weight as a zero like any other value, and zeros compress well. Apps download compressed files."
)


@dataclass(frozen=True)
class TensorInfo:
    """An input or output tensor as stored in the converted file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    scale: float | None
    zero_point: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype.lower(),
            "shape": list(self.shape),
            "scale": self.scale,
            "zero_point": self.zero_point,
        }


@dataclass(frozen=True)
class VariantResult:
    """One .tflite file, verified and measured."""

    variant: str
    path: Path
    size: SizeStats
    sparsity: float
    verification: Verification
    input: TensorInfo
    output: TensorInfo
    latency: LatencyStats
    verdict: Verdict
    accuracy: AccuracyStats | None = None
    layer_sparsity: dict[str, float] = field(default_factory=dict)
    pixel_input: bool = False
    clients: tuple[Client, ...] = ()
    # How many of each operator the file holds, most frequent first.
    operators: tuple[tuple[str, int], ...] = ()

    @property
    def size_bytes(self) -> int:
        return self.size.bytes

    @property
    def gzip_size_bytes(self) -> int:
        return self.size.gzip_bytes

    @property
    def top1(self) -> float | None:
        return self.accuracy.top1 if self.accuracy else None


@dataclass(frozen=True)
class ConvertReport:
    """Everything one run produced and measured; convert and benchmark share it."""

    model: str
    output_dir: Path
    keras_top1: float | None
    eval_samples: int
    calibration_samples: int
    preprocessing: Preprocessing | None
    variants: tuple[VariantResult, ...]
    warnings: tuple[str, ...] = field(default=())
    pruning: PruneStats | None = None
    qat: QatStats | None = None
    clustering: ClusterStats | None = None
    pruned_keras_top1: float | None = None
    reference: str | None = "float32"
    search: SearchOutcome | None = None
    chosen_variant: str | None = None
    labelled: bool = True
    class_mapping: ClassMapping | None = None
    reference_warning: str | None = None
    pixel_input: PixelInputChoice | None = None
    resize: Resize = Resize.STRETCH

    @property
    def report_path(self) -> Path:
        return self.output_dir / "report.json"

    def variant(self, name: str) -> VariantResult:
        return next(v for v in self.variants if v.variant == name)

    def size_ratio(self, result: VariantResult) -> float | None:
        if self.reference is None:
            return None
        return result.size_bytes / self.variant(self.reference).size_bytes

    def gzip_ratio(self, result: VariantResult) -> float | None:
        if self.reference is None:
            return None
        return result.gzip_size_bytes / self.variant(self.reference).gzip_size_bytes

    @property
    def score_name(self) -> str:
        """What ``top1`` measures: accuracy against labels, or (no labels) agreement with the float model."""
        return "top-1" if self.labelled else "agreement"

    def top1_drop_points(self, result: VariantResult) -> float | None:
        """Top-1 (without labels: agreement) lost against the Keras model or the float reference, in points."""
        baseline = self.keras_top1
        if baseline is None and self.reference is not None:
            baseline = self.variant(self.reference).top1
        if result.top1 is None or baseline is None:
            return None
        return drop_points(baseline, result.top1)

    def paired_drop(self, result: VariantResult) -> PairedDrop | None:
        """The drop of :meth:`top1_drop_points` counted image by image, with its 95% interval, where the evaluation
        counted it (against the same model the drop is counted from)."""
        return paired_drop_of(result.accuracy, self.top1_drop_points(result))

    def _drop_interval(self, result: VariantResult) -> list[float] | None:
        paired = self.paired_drop(result)
        return None if paired is None else [round(paired.low, 4), round(paired.high, 4)]

    @property
    def verdicts_trusted(self) -> bool:
        """False where the reference's own figures look wrong (:attr:`reference_warning`)."""
        return self.reference_warning is None

    @property
    def chosen(self) -> VariantResult:
        """The variant to ship: the one a search or option chose, else by the one rule of
        :func:`~tflite_opt.results.measures.choose_to_ship`, where :attr:`Verdict.passes` passes."""
        if self.chosen_variant is not None:
            return self.variant(self.chosen_variant)
        candidates = [v for v in self.variants if v.variant != self.reference] or list(self.variants)
        options = [
            ShipOption(
                name=v.variant,
                passes=v.verdict.passes,
                gzip_bytes=v.gzip_size_bytes,
                drop=self.top1_drop_points(v) or 0.0,
                top1=v.top1 or 0.0,
            )
            for v in candidates
        ]
        return self.variant(choose_to_ship(options))

    def _pruning_dict(self) -> dict[str, Any] | None:
        if self.pruning is None:
            return None
        p = self.pruning
        return {
            **p.config.to_dict(),
            "seconds": round(p.seconds, 1),
            "keras_top1": self.pruned_keras_top1,
            "note": PRUNING_SIZE_NOTE,
            "skipped": [{"layer": name, "reason": reason} for name, reason in p.skipped],
            "fine_tuning": p.tuning.to_dict() if p.tuning is not None else None,
            "layers": [
                {
                    "layer": layer.layer,
                    "weights": layer.weights,
                    "nonzero": layer.nonzero,
                    "sparsity": round(layer.sparsity, 4),
                    "sparsity_in_file": {
                        v.variant: round(v.layer_sparsity[layer.layer], 4)
                        for v in self.variants
                        if layer.layer in v.layer_sparsity
                    },
                }
                for layer in p.layers
            ],
        }

    def _variant_dict(self, v: VariantResult) -> dict[str, Any]:
        ratio, gzip_ratio = self.size_ratio(v), self.gzip_ratio(v)
        return {
            "variant": v.variant,
            "path": self._relative(v.path),
            "size_bytes": v.size_bytes,
            "size_ratio": None if ratio is None else round(ratio, 4),
            "gzip_size_bytes": v.gzip_size_bytes,
            "gzip_ratio": None if gzip_ratio is None else round(gzip_ratio, 4),
            "params_by_dtype": v.size.params_by_dtype,
            "sparsity": round(v.sparsity, 4),
            "top1": v.top1 if self.labelled else None,
            "top5": v.accuracy.top5 if v.accuracy and self.labelled else None,
            "top1_drop_points": self.top1_drop_points(v) if self.labelled else None,
            "top1_drop_ci95_points": self._drop_interval(v) if self.labelled else None,
            "agreement": v.accuracy.agreement if v.accuracy else None,
            "agreement_drop_points": None if self.labelled else self.top1_drop_points(v),
            "agreement_drop_ci95_points": None if self.labelled else self._drop_interval(v),
            "fidelity": v.accuracy.fidelity.to_dict() if v.accuracy and v.accuracy.fidelity else None,
            "pixel_input": v.pixel_input,
            "clients": {client.kind.value: client.to_dict() for client in v.clients},
            "operators": dict(v.operators),
            "cpu_ms": v.latency.cpu_dict(),
            "latency_ms": v.latency.to_dict(),
            "init_ms": round(v.latency.init_ms, 2),
            "peak_memory_bytes": v.latency.peak_memory_bytes,
            "num_threads": v.latency.num_threads,
            "delegate": v.latency.delegate,
            "xnnpack": v.latency.delegation_dict(),
            "verdict": v.verdict.label,
            "verdict_reason": v.verdict.reason,
            "verdict_trusted": self.verdicts_trusted,
            "chosen": v.variant == self.chosen.variant,
            "verified": v.verification.passed,
            "checks": [c.line() for c in v.verification.checks],
            "input": v.input.to_dict(),
            "output": v.output.to_dict(),
            "accuracy": v.accuracy.to_dict() if v.accuracy else None,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "model": self.model,
            "keras_top1": self.keras_top1 if self.labelled else None,
            "evaluation": self._evaluation_dict(),
            "reference_warning": self.reference_warning,
            "pixel_input": self.pixel_input.to_dict() if self.pixel_input else None,
            "rounding": ROUNDING,
            "eval_samples": self.eval_samples,
            "calibration_samples": self.calibration_samples,
            "preprocessing": self.preprocessing.to_dict() if self.preprocessing else None,
            "resize": self.resize.value,
            "reference": self.reference,
            "variants": [self._variant_dict(v) for v in self.variants],
            "pruning": self._pruning_dict(),
            "qat": self.qat.to_dict() if self.qat is not None else None,
            "clustering": self.clustering.to_dict() if self.clustering is not None else None,
            "search": {"score": self.score_name, **self.search.to_dict(self._search_paths())} if self.search else None,
            "warnings": list(self.warnings),
        }

    def _evaluation_dict(self) -> dict[str, Any] | None:
        if not self.eval_samples:
            return None
        return {
            "kind": "accuracy" if self.labelled else "fidelity",
            "score": "top-1 against the labels"
            if self.labelled
            else "top-1 agreement with the float model (the data has no labels)",
            "class_mapping": self.class_mapping.to_dict() if self.class_mapping else None,
        }

    def _search_paths(self) -> dict[str, str]:
        return {v.variant: self._relative(v.path) for v in self.variants}

    def _relative(self, path: Path) -> str:
        """A path as report.json records it: relative to the report's folder."""
        return os.path.relpath(path, self.report_path.parent)
