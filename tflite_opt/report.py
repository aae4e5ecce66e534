"""Results of a run and their renderings: the terminal table and report.json."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tflite_opt.config import Preprocessing
from tflite_opt.prune import PruneStats
from tflite_opt.verify import Verification

SCHEMA_VERSION = 1


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
    variant: str
    path: Path
    size_bytes: int
    gzip_size_bytes: int
    sparsity: float
    top1: float | None
    verification: Verification
    input: TensorInfo
    output: TensorInfo
    layer_sparsity: dict[str, float] = field(default_factory=dict)
    latency_p50_ms: float | None = None
    delegate: str = "xnnpack"


PRUNING_SIZE_NOTE = (
    "Pruning shows in the compressed (gzip) size, not in the raw .tflite size: the file stores a pruned "
    "weight as a zero like any other value, and zeros compress well. Apps download compressed files."
)


@dataclass(frozen=True)
class ConvertReport:
    """Everything one convert run produced and measured."""

    model: str
    output_dir: Path
    keras_top1: float | None
    eval_samples: int
    calibration_samples: int
    preprocessing: Preprocessing
    variants: tuple[VariantResult, ...]
    warnings: tuple[str, ...] = field(default=())
    pruning: PruneStats | None = None
    pruned_keras_top1: float | None = None

    @property
    def report_path(self) -> Path:
        return self.output_dir / "report.json"

    def variant(self, name: str) -> VariantResult:
        return next(v for v in self.variants if v.variant == name)

    def size_ratio(self, result: VariantResult) -> float:
        return result.size_bytes / self.variant("float32").size_bytes

    def top1_drop_points(self, result: VariantResult) -> float | None:
        """Top-1 lost against the Keras model, in percentage points."""
        if result.top1 is None or self.keras_top1 is None:
            return None
        return 100.0 * (self.keras_top1 - result.top1)

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "model": self.model,
            "keras_top1": self.keras_top1,
            "eval_samples": self.eval_samples,
            "calibration_samples": self.calibration_samples,
            "preprocessing": self.preprocessing.to_dict(),
            "variants": [
                {
                    "variant": v.variant,
                    "path": os.path.relpath(v.path, self.report_path.parent),
                    "size_bytes": v.size_bytes,
                    "size_ratio": round(self.size_ratio(v), 4),
                    "gzip_size_bytes": v.gzip_size_bytes,
                    "gzip_ratio": round(v.gzip_size_bytes / self.variant("float32").gzip_size_bytes, 4),
                    "sparsity": round(v.sparsity, 4),
                    "latency_ms": {"p50": None if v.latency_p50_ms is None else round(v.latency_p50_ms, 4)},
                    "delegate": v.delegate,
                    "top1": v.top1,
                    "top1_drop_points": self.top1_drop_points(v),
                    "verified": v.verification.passed,
                    "checks": [c.line() for c in v.verification.checks],
                    "input": v.input.to_dict(),
                    "output": v.output.to_dict(),
                }
                for v in self.variants
            ],
            "pruning": self._pruning_dict(),
            "warnings": list(self.warnings),
        }


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.2f}%"


def format_table(report: ConvertReport) -> str:
    """The terminal summary: one row per variant, then the checks each passed."""
    header = ("variant", "size", "vs float32", "gzip", "vs float32", "zeros", "p50 ms", "top-1", "drop vs Keras")
    reference_gzip = report.variant("float32").gzip_size_bytes
    rows = [("keras", "", "", "", "", "", "", _percent(report.keras_top1), "")]
    for v in report.variants:
        drop = report.top1_drop_points(v)
        rows.append(
            (
                v.variant,
                f"{v.size_bytes / 1024:.1f} KiB",
                f"{100.0 * report.size_ratio(v):.1f}%",
                f"{v.gzip_size_bytes / 1024:.1f} KiB",
                f"{100.0 * v.gzip_size_bytes / reference_gzip:.1f}%",
                f"{100.0 * v.sparsity:.1f}%",
                "n/a" if v.latency_p50_ms is None else f"{v.latency_p50_ms:.3f}",
                _percent(v.top1),
                "n/a" if drop is None else f"{drop:+.2f} pts",
            )
        )
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]

    def line(cells) -> str:
        return "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    out = [
        f"{report.model}: top-1 on {report.eval_samples} held-out images"
        if report.eval_samples
        else f"{report.model}: no evaluation data given (pass --eval-data to measure top-1)"
    ]
    out += [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows), ""]
    for v in report.variants:
        out.append(f"{v.variant}: {v.path}" + ("" if v.delegate == "xnnpack" else f" (ran on delegate: {v.delegate})"))
        out.extend(f"  {c.line()}" for c in v.verification.checks)
    if report.pruning is not None:
        out += ["", *_pruning_lines(report)]
    out.extend(f"warning: {w}" for w in report.warnings)
    out.append(f"report: {report.report_path}")
    return "\n".join(out)


def _pruning_lines(report: ConvertReport) -> list[str]:
    p = report.pruning
    lines = [
        f"pruning: target {100 * p.config.target_sparsity:.0f}% ({p.config.schedule.value}), "
        f"{p.config.epochs} epochs of fine-tuning in {p.seconds:.0f} s; "
        f"pruned Keras top-1 {_percent(report.pruned_keras_top1)}",
        f"  {'layer':<16}{'weights':>9}{'non-zero':>10}{'Keras':>8}  in file",
    ]
    for layer in p.layers:
        in_file = ", ".join(
            f"{v.variant} {100 * v.layer_sparsity[layer.layer]:.1f}%"
            for v in report.variants
            if layer.layer in v.layer_sparsity
        )
        lines.append(
            f"  {layer.layer:<16}{layer.weights:>9}{layer.nonzero:>10}{100 * layer.sparsity:>7.1f}%  {in_file}"
        )
    lines += [f"  skipped {name}: {reason}" for name, reason in p.skipped]
    lines.append(PRUNING_SIZE_NOTE)
    return lines
