"""Results of a run and their renderings: the terminal table, report.json, report.md and plots."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tflite_opt.core.config import Preprocessing
from tflite_opt.core.fileio import atomic_write_bytes, atomic_write_json
from tflite_opt.core.interpreter import ROUNDING
from tflite_opt.stages.benchmark import AccuracyStats, LatencyStats, ShipOption, SizeStats, Verdict, choose_to_ship
from tflite_opt.stages.cluster import ClusterStats
from tflite_opt.stages.convert import PixelInputChoice
from tflite_opt.stages.data import ClassMapping
from tflite_opt.stages.fine_tune import FineTuningRecord
from tflite_opt.stages.layer_errors import LayerError
from tflite_opt.stages.prune import PruneStats
from tflite_opt.stages.qat import QatStats
from tflite_opt.stages.search import SearchOutcome
from tflite_opt.stages.verify import Verification

SCHEMA_VERSION = 1
REPORT_FILES = ("report.json", "report.md", "tradeoff.png", "confusion.png", "search.png")

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
        return 100.0 * (baseline - result.top1)

    @property
    def chosen(self) -> VariantResult:
        """The variant to ship: the one a search or option chose, else by the one rule of
        :func:`~tflite_opt.stages.benchmark.choose_to_ship`, where a "good" verdict passes."""
        if self.chosen_variant is not None:
            return self.variant(self.chosen_variant)
        candidates = [v for v in self.variants if v.variant != self.reference] or list(self.variants)
        options = [
            ShipOption(
                name=v.variant,
                passes=v.verdict.label == "good",
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
            "agreement": v.accuracy.agreement if v.accuracy else None,
            "agreement_drop_points": None if self.labelled else self.top1_drop_points(v),
            "fidelity": v.accuracy.fidelity.to_dict() if v.accuracy and v.accuracy.fidelity else None,
            "pixel_input": v.pixel_input,
            "cpu_ms": v.latency.cpu_dict(),
            "latency_ms": v.latency.to_dict(),
            "init_ms": round(v.latency.init_ms, 2),
            "num_threads": v.latency.num_threads,
            "delegate": v.latency.delegate,
            "xnnpack": v.latency.delegation_dict(),
            "verdict": v.verdict.label,
            "verdict_reason": v.verdict.reason,
            "verdict_trusted": self.reference_warning is None,
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


def _aligned(header: Sequence[str], rows: Sequence[Sequence[str]], left: int) -> list[str]:
    """A text table: the header, a line of dashes, the rows; the first ``left`` columns flush left,
    the others flush right."""
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if i < left else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return [line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)]


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.2f}%"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.1f}%"


def _rows(report: ConvertReport) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    score, second = ("top-1", "top-5") if report.labelled else ("agree", "top-5 ovl")
    header = ("variant", "size", "vs ref", "gzip", "vs ref", "zeros", "p50 ms", "cpu ms", score, second, "drop")
    header += ("verdict",) if report.labelled else ("KL", "verdict")
    keras = (
        "keras",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        _percent(report.keras_top1),
        "",
        "",
        *([] if report.labelled else [""]),
    )
    rows = [(*keras, "")]
    doubt = "?" if report.reference_warning else ""
    for v in report.variants:
        drop = report.top1_drop_points(v)
        fidelity = v.accuracy.fidelity if v.accuracy else None
        rows.append(
            (
                v.variant,
                f"{v.size_bytes / 1024:.1f} KiB",
                _ratio(report.size_ratio(v)),
                f"{v.gzip_size_bytes / 1024:.1f} KiB",
                _ratio(report.gzip_ratio(v)),
                f"{100.0 * v.sparsity:.1f}%",
                f"{v.latency.p50:.3f}",
                "n/a" if v.latency.cpu_p50 is None else f"{v.latency.cpu_p50:.3f}",
                _percent(v.top1),
                _percent(v.accuracy.top5 if v.accuracy else None)
                if report.labelled
                else _percent(fidelity.top5_overlap if fidelity else None),
                "n/a" if drop is None else f"{drop:+.2f} pts",
                *([] if report.labelled else ["n/a" if fidelity is None else f"{fidelity.mean_kl:.4f}"]),
                v.verdict.label + doubt + (" *" if v.variant == report.chosen.variant else ""),
            )
        )
    if report.keras_top1 is None:
        rows.pop(0)
    return header, rows


def _title(report: ConvertReport) -> str:
    timing = report.variants[0].latency
    latency = f"latency of one image, {timing.num_threads} thread(s), median of {timing.num_runs} runs"
    if not report.eval_samples:
        return f"{report.model}: no evaluation data given (pass --eval-data to measure top-1)"
    if report.labelled:
        return f"{report.model}: top-1 on {report.eval_samples} held-out images; {latency}"
    return (
        f"{report.model}: agreement with the float model's top-1 on {report.eval_samples} unlabelled held-out images "
        f"(no labels, so fidelity, not accuracy; drop = agreement points lost); {latency}"
    )


def format_table(report: ConvertReport) -> str:
    """The terminal summary: one row per variant, then verdicts, checks and notes."""
    header, rows = _rows(report)
    out = [_title(report), *_aligned(header, rows, left=1), ""]
    if report.reference_warning:
        out.append(f"warning: {report.reference_warning}; the verdicts (marked ?) are not to be trusted")
    out.append(f"* chosen: {report.chosen.variant}")
    for v in report.variants:
        delegate = "" if v.latency.delegate == "xnnpack" else f" (ran on delegate: {v.latency.delegate})"
        out.append(f"{v.variant}: {v.verdict.label}: {v.verdict.reason}; {v.path}{delegate}")
        if note := v.latency.delegation_note():
            out.append(f"  {note}")
        out.extend(f"  {c.line()}" for c in v.verification.checks)
    out += _notes(report)
    if report.pruning is not None:
        out += ["", *_pruning_lines(report)]
    if report.clustering is not None:
        out += ["", _clustering_line(report.clustering)]
    if report.qat is not None:
        out += ["", _qat_line(report.qat)]
    if report.search is not None:
        out += ["", *_search_lines(report)]
    out.extend(f"warning: {w}" for w in report.warnings)
    plots = "tradeoff.png, confusion.png" + (", search.png" if report.search is not None else "")
    out.append(f"report: {report.report_path} (also report.md, {plots})")
    return "\n".join(out)


def _notes(report: ConvertReport) -> list[str]:
    """How the classes were read and what the app feeds the int8 model, where either needs saying."""
    notes = []
    if report.class_mapping is not None and report.labelled:
        notes.append(f"classes: {report.class_mapping.describe()}")
    note = pixel_input_note(report.pixel_input) if report.pixel_input else None
    if note:
        notes.append(note)
    return notes


def pixel_input_note(choice: PixelInputChoice) -> str | None:
    """A line on what the int8 model takes, where the choice matters."""
    values = 256 * choice.channels
    if choice.chosen:
        why = (
            "as asked (--raw-pixel-input)"
            if choice.asked
            else f"because quantizing the normalized input would put {choice.ties} of the {values} pixel values on "
            "a rounding tie, where phones round differently"
        )
        return (
            "pixel input: the int8 model takes camera pixels as they are (uint8: the pixel; int8: pixel - 128) and "
            f"normalizes them itself ({choice.preprocessing.describe()}), {why}; an app copies bytes"
        )
    if choice.ties:
        return (
            f"pixel input: off{' (--noraw-pixel-input)' if choice.asked is False else ''}: {choice.ties} of the "
            f"{values} pixel values land on a rounding tie when an app quantizes the normalized input; its figures "
            f"match these only if it rounds {ROUNDING}, in float32, as the manifest says"
        )
    return None


def _clustering_line(clustering: ClusterStats) -> str:
    skipped = "; ".join(f"{name}: {reason}" for name, reason in clustering.skipped)
    kept = ", zeros kept" if clustering.preserved_sparsity else ""
    return (
        f"clustering: {len(clustering.clustered)} layers to {clustering.config.clusters} shared values{kept}, "
        f"fine-tuned in {clustering.seconds:.0f} s"
        + (f"; skipped: {skipped}" if skipped else "")
        + _tuning_line(clustering.tuning)
    )


def _qat_line(qat: QatStats) -> str:
    skipped = "; ".join(f"{name}: {reason}" for name, reason in qat.skipped)
    return (
        f"quantization-aware training: fine-tuned with int8 simulated in {qat.seconds:.0f} s"
        + (f"; not annotated: {skipped}" if skipped else "")
        + _tuning_line(qat.tuning)
    )


def _tuning_line(tuning: FineTuningRecord | None) -> str:
    """The fine-tuning record on a line of its own, indented."""
    return f"\n  fine-tuning: {tuning.describe()}" if tuning is not None else ""


def _pruning_lines(report: ConvertReport) -> list[str]:
    p = report.pruning
    lines = [
        f"pruning: target {100 * p.config.target_sparsity:.0f}% ({p.config.schedule.value}), "
        f"fine-tuned in {p.seconds:.0f} s; pruned Keras top-1 {_percent(report.pruned_keras_top1)}"
        + _tuning_line(p.tuning),
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


def _search_lines(report: ConvertReport) -> list[str]:
    """Every candidate of the search, in the order tried, then the outcome."""
    outcome = report.search
    score = report.score_name
    lines = [
        f"search: budget {outcome.config.max_accuracy_drop:g} {score} points below Keras "
        f"({_percent(outcome.keras_top1)}); {len(outcome.candidates)} candidates, judged on the held-out set",
        f"  {'candidate':<34}{score[:9]:>9}{'drop':>8}{'gzip KiB':>10}{'p50 ms':>9}{'tuning s':>10}  remedy",
    ]
    for c in outcome.candidates:
        if c.failure is not None:
            lines.append(f"✗ {c.variant:<34}{'failed':>9}  {c.failure}")
            continue
        mark = "*" if c.variant == outcome.chosen.variant else ("✓" if c.within_budget else "✗")
        p50 = f"{c.measured.latency.p50:.3f}" if c.measured else "n/a"
        remedy = f"float: {', '.join(c.float_layers)}" if c.float_layers else c.remedy
        tuning = sum(c.tuned.seconds().values())
        lines.append(
            f"{mark} {c.variant:<34}{_percent(c.top1):>9}{c.drop:>8.2f}{c.gzip_bytes / 1024:>10.1f}{p50:>9}"
            f"{tuning:>10.0f}  {remedy}"
        )
    if outcome.ranking:
        worst = ", ".join(f"{e.layer} {100 * e.relative_error:.1f}%" for e in outcome.ranking[:3])
        lines.append(f"  int8 error by layer (relative, worst first): {worst}")
    if outcome.skipped_pruning:
        lines.append(f"  pruning not tried: {outcome.skipped_pruning}")
    if outcome.qat_not_tried:
        lines.append(f"  quantization-aware training not tried: {outcome.qat_not_tried}")
    lines.append(outcome.message())
    return lines


def format_markdown(report: ConvertReport) -> str:
    """report.md: the same table and verdicts, for a pull request or a wiki."""
    header, rows = _rows(report)
    out = [f"# {report.model}", ""]
    if report.eval_samples:
        v = report.variants[0].latency
        out.append(
            f"Top-1 on {report.eval_samples} held-out images. Latency: one image, {v.num_threads} thread(s), "
            f"{v.num_runs} timed runs after {v.warmup_runs} warm-up runs."
        )
        out.append("")
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    out += ["", f"Chosen: **{report.chosen.variant}**.", "", "## Verdicts", ""]
    out += [f"- **{v.variant}**: {v.verdict.label}, {v.verdict.reason}." for v in report.variants]
    out += ["", "## Latency (ms)", "", "| variant | mean | std | min | p50 | p90 | p99 | init | delegate |"]
    out.append("|---|---|---|---|---|---|---|---|---|")
    for v in report.variants:
        t = v.latency
        out.append(
            f"| {v.variant} | {t.mean:.3f} | {t.std:.3f} | {t.min:.3f} | {t.p50:.3f} | {t.p90:.3f} | {t.p99:.3f} "
            f"| {t.init_ms:.1f} | {t.delegate} |"
        )
    if report.pruning is not None:
        out += ["", "## Pruning", "", *(f"    {line}" for line in _pruning_lines(report))]
    if report.search is not None:
        out += ["", "## Search", "", *(f"    {line}" for line in _search_lines(report))]
        out += ["", "![candidates: top-1 against size and latency](search.png)"]
    if report.warnings:
        out += ["", "## Warnings", "", *(f"- {w}" for w in report.warnings)]
    out += ["", "![top-1 against size and latency](tradeoff.png)"]
    if report.chosen.accuracy is not None:
        out += ["", f"![confusion matrix of {report.chosen.variant}](confusion.png)"]
    return "\n".join(out) + "\n"


def _pyplot():
    """matplotlib's pyplot drawing off-screen (no display on CI machines or servers)."""
    import matplotlib  # deferred: a quarter of a second to import, and only the report files need it

    matplotlib.use("Agg")
    from matplotlib import pyplot  # deferred, and imported after choosing the off-screen backend

    return pyplot


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def plot_tradeoff(report: ConvertReport) -> bytes:
    """PNG: top-1 against gzip size and against p50 latency, one point per variant."""
    plt = _pyplot()

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    measured = [v for v in report.variants if v.top1 is not None]
    for axis, label, value in (
        (axes[0], "gzip size (KiB)", lambda v: v.gzip_size_bytes / 1024),
        (axes[1], "p50 latency (ms)", lambda v: v.latency.p50),
    ):
        for i, v in enumerate(measured):
            axis.scatter(value(v), 100 * v.top1, s=40)
            # Staggered labels stay readable where variants share a top-1.
            axis.annotate(
                v.variant, (value(v), 100 * v.top1), textcoords="offset points", xytext=(4, 4 + 9 * (i % 3)), fontsize=8
            )
        low = min(100 * v.top1 for v in measured) if measured else 0.0
        axis.set_ylim(max(0.0, low - 2.0), 100.5)
        if report.keras_top1 is not None:
            axis.axhline(100 * report.keras_top1, linestyle="--", linewidth=1, color="grey", label="Keras")
            axis.legend(loc="lower right")
        axis.set_xlabel(label)
        axis.set_ylabel("top-1 (%)")
        axis.grid(alpha=0.3)
    figure.suptitle(f"{report.model}: accuracy against size and latency")
    content = _png(figure)
    plt.close(figure)
    return content


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both cost (lower) and top-1 (higher), by cost."""
    front = []
    for i, (cost, score) in enumerate(points):
        dominated = any(
            (c <= cost and s >= score) and (c < cost or s > score) for j, (c, s) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def plot_search(report: ConvertReport) -> bytes | None:
    """PNG: every search candidate, top-1 against gzip size and p50 latency, with the Pareto front
    and the budget line; None without a search."""
    outcome = report.search
    if outcome is None:
        return None
    plt = _pyplot()

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    floor = 100 * outcome.keras_top1 - outcome.config.max_accuracy_drop
    measured = [c for c in outcome.candidates if c.measured is not None]
    for axis, label, cost in (
        (axes[0], "gzip size (KiB)", lambda c: c.gzip_bytes / 1024),
        (axes[1], "p50 latency (ms)", lambda c: c.measured.latency.p50),
    ):
        points = [(cost(c), 100 * c.top1) for c in measured]
        front = pareto_front(points)
        axis.plot([points[i][0] for i in front], [points[i][1] for i in front], color="tab:blue", alpha=0.5)
        for i, c in enumerate(measured):
            chosen = c.variant == outcome.chosen.variant
            axis.scatter(
                *points[i],
                s=90 if chosen else 40,
                marker="*" if chosen else "o",
                color="tab:green" if c.within_budget else "tab:red",
                zorder=3,
            )
            axis.annotate(c.variant, points[i], textcoords="offset points", xytext=(4, 4 + 9 * (i % 3)), fontsize=7)
        axis.axhline(floor, linestyle="--", linewidth=1, color="grey", label=f"budget ({floor:.2f}%)")
        axis.axhline(100 * outcome.keras_top1, linestyle=":", linewidth=1, color="black", label="Keras")
        low = min([p[1] for p in points] + [floor])
        axis.set_ylim(max(0.0, low - 1.0), min(100.5, 100 * outcome.keras_top1 + 1.0))
        axis.set_xlabel(label)
        axis.set_ylabel("top-1 (%)")
        axis.grid(alpha=0.3)
        axis.legend(loc="lower right", fontsize=8)
    figure.suptitle(f"{report.model}: search candidates (green within the budget, star chosen, line the Pareto front)")
    content = _png(figure)
    plt.close(figure)
    return content


def plot_confusion(report: ConvertReport) -> bytes | None:
    """PNG: the confusion matrix of the chosen variant, or None without evaluation data."""
    chosen = report.chosen
    if chosen.accuracy is None:
        return None
    plt = _pyplot()

    matrix = chosen.accuracy.confusion
    figure, axis = plt.subplots(figsize=(5.5, 5))
    image = axis.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axis, fraction=0.046)
    if len(matrix) <= 20:
        for (row, col), count in np.ndenumerate(matrix):
            if count:
                color = "white" if count > matrix.max() / 2 else "black"
                axis.text(col, row, str(count), ha="center", va="center", fontsize=7, color=color)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"{report.model} {chosen.variant}: top-1 {100 * chosen.top1:.2f}%")
    content = _png(figure)
    plt.close(figure)
    return content


def report_paths(output_dir: Path) -> list[Path]:
    return [Path(output_dir) / name for name in REPORT_FILES]


def write_report_files(report: ConvertReport, overwrite: bool) -> None:
    """report.md and the plots first, report.json last, each written atomically."""
    directory = report.output_dir
    atomic_write_bytes(directory / "report.md", format_markdown(report).encode("utf-8"), overwrite=overwrite)
    atomic_write_bytes(directory / "tradeoff.png", plot_tradeoff(report), overwrite=overwrite)
    confusion = plot_confusion(report)
    if confusion is not None:
        atomic_write_bytes(directory / "confusion.png", confusion, overwrite=overwrite)
    search = plot_search(report)
    if search is not None:
        atomic_write_bytes(directory / "search.png", search, overwrite=overwrite)
    atomic_write_json(report.report_path, report.to_dict(), overwrite=overwrite)


def format_error_table(errors: Sequence[LayerError], model_name: str, samples: int) -> str:
    """The per-layer table, worst first, with a line on how to read it."""
    header = ("layer", "operators", "relative error", "rmse/scale", "scale")
    rows = [
        (
            e.layer,
            ",".join(dict.fromkeys(e.operators)),
            f"{100 * e.relative_error:.2f}%" if np.isfinite(e.relative_error) else "n/a",
            f"{e.rmse_over_scale:.3f}",
            f"{e.scale:.3g}",
        )
        for e in errors
    ]
    return "\n".join(
        [
            f"{model_name}: int8 error per layer on {samples} calibration samples, worst first",
            *_aligned(header, rows, left=2),
            "",
            "relative error: rms(int8 - float) / rms(float) per output channel, median over channels;",
            "rmse/scale: error in quantization steps (0.29 is plain rounding; far above means the layer computes "
            "badly in int8).",
            "A layer far above the others is the one to keep in float (convert --max-accuracy-drop does it).",
        ]
    )
