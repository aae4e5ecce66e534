"""A run's report rendered and written: the terminal table, report.md, the plots and report.json."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tflite_opt.core.fileio import atomic_write_bytes, atomic_write_json
from tflite_opt.core.interpreter import ROUNDING
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.core.text import aligned, by_reason
from tflite_opt.results.clients import Client
from tflite_opt.results.files import BundlePaths
from tflite_opt.results.inputs import PixelInputChoice
from tflite_opt.results.measures import Fidelity, LatencyStats
from tflite_opt.results.report import PRUNING_SIZE_NOTE, ConvertReport, VariantResult
from tflite_opt.results.tuning import ClusterStats, FineTuningRecord, QatStats
from tflite_opt.stages.plots import plot_confusion, plot_search, plot_tradeoff, plotted
from tflite_opt.stages.xnnpack import gap_advice

REPORT_FILES = ("report.json", "report.md", "tradeoff.png", "confusion.png", "search.png")


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.2f}%"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.1f}%"


@dataclass(frozen=True)
class Column:
    """A column of the variants table: its header and the cell of one variant."""

    header: str
    cell: Callable[[ConvertReport, VariantResult], str]


def _fidelity(v: VariantResult) -> Fidelity | None:
    return v.accuracy.fidelity if v.accuracy else None


def _verdict(report: ConvertReport, v: VariantResult) -> str:
    """The verdict's label, marked ? where the reference's own figures make every verdict untrustworthy."""
    return v.verdict.label + ("" if report.verdicts_trusted else "?")


def _verdict_cell(report: ConvertReport, v: VariantResult) -> str:
    return _verdict(report, v) + (" *" if v.variant == report.chosen.variant else "")


def _drop_cell(report: ConvertReport, v: VariantResult) -> str:
    """The drop in points; where it was counted image by image, ± the farther end of its 95% interval."""
    drop = report.top1_drop_points(v)
    if drop is None:
        return "n/a"
    paired = report.paired_drop(v)
    return f"{drop:+.2f} pts" if paired is None else f"{drop:+.2f} ±{paired.margin:.2f}"


COLUMNS = (
    Column("variant", lambda r, v: v.variant),
    Column("size", lambda r, v: f"{v.size_bytes / 1024:.1f} KiB"),
    Column("vs ref", lambda r, v: _ratio(r.size_ratio(v))),
    Column("gzip", lambda r, v: f"{v.gzip_size_bytes / 1024:.1f} KiB"),
    Column("vs ref", lambda r, v: _ratio(r.gzip_ratio(v))),
    Column("zeros", lambda r, v: f"{100.0 * v.sparsity:.1f}%"),
    Column("p50 ms", lambda r, v: f"{v.latency.p50:.3f}"),
    Column("cpu ms", lambda r, v: "n/a" if v.latency.cpu_p50 is None else f"{v.latency.cpu_p50:.3f}"),
)
# With labels: accuracy against them.
LABELLED_COLUMNS = (
    Column("top-1", lambda r, v: _percent(v.top1)),
    Column("top-5", lambda r, v: _percent(v.accuracy.top5 if v.accuracy else None)),
    Column("drop", _drop_cell),
    Column("verdict", _verdict_cell),
)
# Without labels: agreement with the float model, the overlap of the five best classes, and KL divergence.
FIDELITY_COLUMNS = (
    Column("agree", lambda r, v: _percent(v.top1)),
    Column("top-5 ovl", lambda r, v: _percent(f.top5_overlap if (f := _fidelity(v)) else None)),
    Column("drop", _drop_cell),
    Column("KL", lambda r, v: "n/a" if (f := _fidelity(v)) is None else f"{f.mean_kl:.4f}"),
    Column("verdict", _verdict_cell),
)


def _rows(report: ConvertReport) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """The variants table: the header, the Keras model's row (its top-1 only), a row per variant."""
    columns = COLUMNS + (LABELLED_COLUMNS if report.labelled else FIDELITY_COLUMNS)
    header = tuple(c.header for c in columns)
    rows = [tuple(c.cell(report, v) for c in columns) for v in report.variants]
    if report.keras_top1 is not None:
        keras = {"variant": "keras", "top-1": _percent(report.keras_top1), "agree": _percent(report.keras_top1)}
        rows.insert(0, tuple(keras.get(c.header, "") for c in columns))
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
    out = [_title(report), *aligned(header, rows, left=1), ""]
    if legend := _drop_legend(report):
        out.append(legend)
    if report.reference_warning:
        out.append(f"warning: {report.reference_warning}; the verdicts (marked ?) are not to be trusted")
    out.append(f"* chosen: {report.chosen.variant}{_chosen_doubt(report)}")
    for v in report.variants:
        delegate = "" if v.latency.delegate == "xnnpack" else f" (ran on delegate: {v.latency.delegate})"
        out.append(f"{v.variant}: {_verdict(report, v)}: {v.verdict.reason}; {v.path}{delegate}")
        if note := v.latency.delegation_note():
            out += [f"  {note}", *(f"    {advice}" for advice in gap_advice(v.latency.undelegated))]
        out.extend(f"  {c.line()}" for c in v.verification.checks)
        if v.clients:
            out.append(f"  {clients_line(v.clients)}")
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
    out.append(f"report: {report.report_path} (also {', '.join(['report.md', *plotted(report)])})")
    return "\n".join(out)


def _drop_legend(report: ConvertReport) -> str | None:
    """What the ± of the drop column is, where any drop has one."""
    if not any(report.paired_drop(v) for v in report.variants):
        return None
    return (
        f"drop: {report.score_name} points lost against the float model, counted image by image; ± reaches the "
        "farther end of its 95% interval"
    )


def _chosen_doubt(report: ConvertReport) -> str:
    """What the chosen variant's verdict is worth, where the reference makes it untrustworthy."""
    if report.verdicts_trusted:
        return ""
    return f" (its verdict, {_verdict(report, report.chosen)}, is untrusted: see the warning above)"


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
    if choice.compared is not None:
        pixels, normalized = choice.compared
        apart = round(abs(pixels - normalized) * choice.compared_on)
        gap = f" ({apart} image{'s' if apart != 1 else ''} of {choice.compared_on} apart)" if choice.compared_on else ""
        return (
            f"pixel input: {choice.ties} of the {values} pixel values sit on a rounding tie, so both int8 inputs "
            f"were measured: taking pixels {100 * pixels:.2f}%, taking the normalized input {100 * normalized:.2f}%"
            f"{gap}; "
            + (
                f"the pixel-input files ship (the model normalizes {choice.preprocessing.describe()} itself; an app "
                "copies bytes)"
                if choice.chosen
                else f"the normalized-input files ship (the app rounds {ROUNDING}, in float32, as the manifest says)"
            )
        )
    if choice.chosen:
        why = (
            "as asked (--raw-pixel-input)"
            if choice.asked
            else "because apps and MediaPipe Tasks fill a uint8 input with camera bytes as they are"
            if choice.uint8_input
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
    skipped = "; ".join(by_reason(clustering.skipped))
    kept = ", zeros kept" if clustering.preserved_sparsity else ""
    return (
        f"clustering: {len(clustering.clustered)} layers to {clustering.config.clusters} shared values{kept}, "
        f"fine-tuned in {clustering.seconds:.0f} s"
        + (f"; skipped: {skipped}" if skipped else "")
        + _tuning_line(clustering.tuning)
    )


def _qat_line(qat: QatStats) -> str:
    skipped = "; ".join(by_reason(qat.skipped))
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
        outcome.engine.describe(outcome.candidates),
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
    noise = outcome.noise()
    if noise:
        lines.append(f"search: {noise}")
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
    if report.reference_warning:
        out += ["", f"**Warning:** {report.reference_warning}; the verdicts (marked ?) are not to be trusted."]
    if legend := _drop_legend(report):
        out += ["", f"{legend[0].upper()}{legend[1:]}."]
    out += ["", f"Chosen: **{report.chosen.variant}**{_chosen_doubt(report)}."]
    out += ["", "## Verdicts", ""]
    out += [
        f"- **{v.variant}**: {_verdict(report, v)}, {v.verdict.reason}."
        + (f" {clients_line(v.clients)}." if v.clients else "")
        for v in report.variants
    ]
    out += ["", "## Latency (ms) and memory", ""]
    out += ["| variant | mean | std | min | p50 | p90 | p99 | init | delegate | peak memory MiB |"]
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for v in report.variants:
        t = v.latency
        memory = f"{t.peak_memory_bytes / 2**20:.1f}" if t.peak_memory_bytes is not None else "n/a"
        out.append(
            f"| {v.variant} | {t.mean:.3f} | {t.std:.3f} | {t.min:.3f} | {t.p50:.3f} | {t.p90:.3f} | {t.p99:.3f} "
            f"| {t.init_ms:.1f} | {t.delegate} | {memory} |"
        )
    out += [
        "",
        "Peak memory: what creating the interpreter, allocating its tensors and three invokes add to a process's "
        "peak resident memory, measured in a fresh process per file; it includes the runtime's first use, "
        "the same for every file, so compare the differences.",
    ]
    out += _latency_spikes(report)
    out += _markdown_files(report)
    if report.pruning is not None:
        out += ["", "## Pruning", "", *(f"    {line}" for line in _pruning_lines(report))]
    if report.search is not None:
        out += ["", "## Search", "", *(f"    {line}" for line in _search_lines(report))]
    if report.warnings:
        out += ["", "## Warnings", "", *(f"- {w}" for w in report.warnings)]
    pictures = {"tradeoff.png": "top-1 against size and latency", "search.png": "search candidates"}
    pictures["confusion.png"] = f"confusion matrix of {report.chosen.variant}"
    out += [line for name in plotted(report) for line in ("", f"![{pictures[name]}]({name})")]
    return "\n".join(out) + "\n"


# A p99 this many times the p50, or a mean this many times, means other work interrupted the timing.
SPIKE_P99, SPIKE_MEAN = 5.0, 1.5


def latency_spike(latency: LatencyStats) -> str | None:
    """A line where the timing was interrupted: a p99 or mean far from the p50 the verdicts use."""
    if latency.p50 <= 0 or (latency.p99 < SPIKE_P99 * latency.p50 and latency.mean < SPIKE_MEAN * latency.p50):
        return None
    return (
        f"latency spikes: p99 {latency.p99:.3f} ms and mean {latency.mean:.3f} ms against a p50 of "
        f"{latency.p50:.3f} ms; the p50 is what the verdicts use, but on a quiet machine rerun to be sure"
    )


def _latency_spikes(report: ConvertReport) -> list[str]:
    lines = [f"- **{v.variant}**: {spike}" for v in report.variants if (spike := latency_spike(v.latency))]
    return ["", *lines] if lines else []


def _markdown_files(report: ConvertReport) -> list[str]:
    """Each file's checks, tensors, what the app feeds it, and its operators."""
    out = ["", "## Files", ""]
    for v in report.variants:
        out += [f"### {v.variant}: `{v.path.name}`", ""]
        out += [f"- {check.line()}" for check in v.verification.checks]
        for which, tensor in (("input", v.input), ("output", v.output)):
            quantized = f", scale {tensor.scale:.6g}, zero point {tensor.zero_point}" if tensor.scale else ""
            out.append(f"- {which}: {tensor.dtype.lower()} {list(tensor.shape)}{quantized}")
        feeds = "pixels as they are (it normalizes them itself)" if v.pixel_input else _app_formula(report, v)
        out.append(f"- the app feeds it: {feeds}")
        out.append("- operators: " + ", ".join(f"{name} x{count}" for name, count in v.operators))
        if note := v.latency.delegation_note():
            out += [f"- {note}", *(f"  - {advice}" for advice in gap_advice(v.latency.undelegated))]
        bundle = BundlePaths.beside(v.path)
        beside = (bundle.manifest, bundle.labels, bundle.golden, bundle.kotlin, bundle.swift)
        out.append("- bundle beside it: " + ", ".join(f"`{path.name}`" for path in beside))
        out.append("")
    return out[:-1]


def _app_formula(report: ConvertReport, v: VariantResult) -> str:
    formula = (report.preprocessing or Preprocessing()).describe()
    if v.input.dtype.lower() in ("int8", "uint8"):
        return f"{formula}, then q = round(x / {v.input.scale:.6g}) + {v.input.zero_point}, rounding {ROUNDING}"
    return formula


def report_paths(output_dir: Path) -> list[Path]:
    return [Path(output_dir) / name for name in REPORT_FILES]


def write_report_files(report: ConvertReport, overwrite: bool) -> None:
    """report.md and the plots first, report.json last, each written atomically."""
    directory = report.output_dir
    atomic_write_bytes(directory / "report.md", format_markdown(report).encode("utf-8"), overwrite=overwrite)
    for name, plot in (("tradeoff.png", plot_tradeoff), ("confusion.png", plot_confusion), ("search.png", plot_search)):
        content = plot(report)
        if content is not None:
            atomic_write_bytes(directory / name, content, overwrite=overwrite)
    atomic_write_json(report.report_path, report.to_dict(), overwrite=overwrite)


def clients_line(clients: Sequence[Client]) -> str:
    """Which app runtimes take the file as it is, and in a few words why the others do not (the manifest says it in
    full): ``runs in: LiteRT Interpreter; not in: MediaPipe Tasks ImageClassifier (int8 input, int8 output)``."""
    runs = [client.kind.title for client in clients if client.runs]
    refused = [
        f"{client.kind.title} ({', '.join(reason.split(':')[0] for reason in client.why.split('; '))})"
        for client in clients
        if not client.runs
    ]
    return "; ".join(
        filter(
            None, [f"runs in: {', '.join(runs)}" if runs else "", f"not in: {', '.join(refused)}" if refused else ""]
        )
    )
