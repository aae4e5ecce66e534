"""Results of a run and their renderings: the terminal table and report.json."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tflite_opt.config import Preprocessing
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
    top1: float | None
    verification: Verification
    input: TensorInfo
    output: TensorInfo


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
                    "top1": v.top1,
                    "top1_drop_points": self.top1_drop_points(v),
                    "verified": v.verification.passed,
                    "checks": [c.line() for c in v.verification.checks],
                    "input": v.input.to_dict(),
                    "output": v.output.to_dict(),
                }
                for v in self.variants
            ],
            "warnings": list(self.warnings),
        }


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.2f}%"


def format_table(report: ConvertReport) -> str:
    """The terminal summary: one row per variant, then the checks each passed."""
    header = ("variant", "size", "vs float32", "top-1", "drop vs Keras")
    rows = [("keras", "", "", _percent(report.keras_top1), "")]
    for v in report.variants:
        drop = report.top1_drop_points(v)
        rows.append(
            (
                v.variant,
                f"{v.size_bytes / 1024:.1f} KiB",
                f"{100.0 * report.size_ratio(v):.1f}%",
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
        out.append(f"{v.variant}: {v.path}")
        out.extend(f"  {c.line()}" for c in v.verification.checks)
    out.extend(f"warning: {w}" for w in report.warnings)
    out.append(f"report: {report.report_path}")
    return "\n".join(out)
