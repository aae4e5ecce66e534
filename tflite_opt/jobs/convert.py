"""The main job as one function: load → prune → calibrate → convert → verify → measure → write.

:func:`run_convert` plans the variants (one :class:`~tflite_opt.core.variant.VariantSpec` each), realizes
each as a verified file (:func:`~tflite_opt.stages.realize.realize`), measures them all side by side, lets the
search add its candidates, and writes nothing until all of that succeeded.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tflite_opt.core.config import BenchmarkSettings, ConvertConfig, Mode
from tflite_opt.core.errors import UsageError
from tflite_opt.core.fileio import atomic_write_bytes, refuse_existing
from tflite_opt.core.preprocessing import app_input
from tflite_opt.core.variant import VariantSpec, first_int8, plan_variants
from tflite_opt.jobs.inputs import (
    Inputs,
    labels_for,
    load_classifier,
    load_inputs,
    resolve_defaults,
    unsaid_warnings,
)
from tflite_opt.jobs.measure import KERAS, Bench, assemble_results, latency_pixels
from tflite_opt.jobs.ray_search import connect
from tflite_opt.jobs.search import CandidateBuilder, run_search
from tflite_opt.jobs.search_store import CandidateStore, refuse_earlier_search, resumable_search
from tflite_opt.jobs.version_check import preflight
from tflite_opt.results.files import BundlePaths, Verified
from tflite_opt.results.inputs import PixelInputChoice
from tflite_opt.results.measures import AccuracyStats, Measured
from tflite_opt.results.report import ConvertReport, VariantResult
from tflite_opt.results.search import SearchOutcome
from tflite_opt.results.tuning import FineTuned
from tflite_opt.stages.benchmark import busy_machine
from tflite_opt.stages.cluster import clustered_with
from tflite_opt.stages.convert import choose_pixel_input, prefer_pixel_input
from tflite_opt.stages.golden import golden_source, golden_vectors
from tflite_opt.stages.load import ClassifierSpec
from tflite_opt.stages.metadata import MetadataSpec
from tflite_opt.stages.package import write_bundle
from tflite_opt.stages.prune import prune_model
from tflite_opt.stages.qat import quantization_aware
from tflite_opt.stages.realize import Calibration, Target, realize, source_model
from tflite_opt.stages.report import report_paths, write_report_files
from tflite_opt.stages.verdict import reference_problem
from tflite_opt.stages.verify import candidate_scopes, file_layer_sparsity

log = logging.getLogger(__name__)

# The name the pruned Keras model's scores go by, beside the float Keras model's.
PRUNED_KERAS = "pruned keras"


def run_convert(config: ConvertConfig, progress: bool = False) -> ConvertReport:
    """Convert a Keras model (pruned first with ``config.prune``) to every requested variant,
    verify and measure each, and write them. With ``config.search``, search for the smallest
    full-int8 model within the accuracy budget instead (:mod:`tflite_opt.jobs.search`).

    The stack is checked first (the version check's warnings are logged). Nothing is
    written until every variant converted, passed verification and was measured; each
    file is written atomically, report.json last.

    Args:
        config: what to convert and how.
        progress: progress bars on a terminal.

    Raises:
        TfliteOptError: any user-facing problem, as a typed error.
    """
    for warning in preflight():
        log.warning(warning)
    config = config.with_inputs(resolve_defaults(config.inputs))
    plan = plan_variants(config)
    specs = [*plan.specs, *([first_int8(config)] if config.search else [])]
    config = _resuming(config)
    refuse_existing(_outputs([_path(config, spec) for spec in specs], config.output_dir), config.overwrite)
    log.info("loading %s", config.model_path or "the embedded default model")
    model, classifier = load_classifier(config.inputs)
    config = replace(config, io_type=config.io_type_for(classifier.channels))
    inputs = load_inputs(config.inputs, classifier)
    if config.search is not None and inputs.evaluation is None:
        raise UsageError("--max-accuracy-drop judges every candidate on held-out data: pass --eval-data")
    tuned = _fine_tuned(config, model, inputs, progress)
    calibration = Calibration.of(inputs.calibration, config.preprocessing) if inputs.calibration is not None else None
    labels = labels_for(inputs, classifier.num_classes)
    target = Target(config.io_type, classifier, progress, _metadata_spec(config, labels))
    bench = _bench(config, model, inputs, classifier, progress)
    pixel_input, compared = _pixel_input(config, calibration, classifier, _Compare(model, target, bench))
    plan = plan.with_pixel_input(pixel_input.chosen)
    log.info("converting %s", ", ".join(plan.names))
    files = {spec.name: compared.get(spec) or _realized(spec, model, tuned, calibration, target) for spec in plan.specs}
    log.info("measuring %s", ", ".join(files))
    pruned_keras = {PRUNED_KERAS: tuned.pruned.model} if tuned.pruned is not None else {}
    scores, measured = bench.measure(files, pruned_keras)
    run = _Run(measured, {spec.name: _path(config, spec) for spec in plan.specs}, scores, tuned, plan.ships)
    if config.search is not None:
        builder = _candidate_builder(config, model, inputs, bench, scores[KERAS].top1, calibration, target)
        run = _searched(run, replace(builder, pixel_input=pixel_input.chosen), config)
    fine_tuned = [spec.name for spec in plan.specs if spec.fine_tuned] if run.outcome is None else [run.chosen.name]
    results = assemble_results(
        run.measured,
        run.paths,
        "float32",
        run.scores[KERAS].top1 if KERAS in run.scores else None,
        bench.settings,
        _file_sparsity(run.measured, run.tuned, fine_tuned, classifier),
    )
    report = _report(config, classifier, inputs, results, run)
    if config.integer_io:
        report = replace(report, pixel_input=pixel_input)  # the choice only concerns integer input
    _write(report, run.measured, labels, inputs, config)
    return report


@dataclass(frozen=True)
class _Run:
    """What a run converted and measured, and what it ships: the variants of its plan, and a search's."""

    measured: dict[str, Measured]
    paths: dict[str, Path]
    scores: dict[str, AccuracyStats]
    tuned: FineTuned
    chosen: VariantSpec | None
    outcome: SearchOutcome | None = None


def _resuming(config: ConvertConfig) -> ConvertConfig:
    """The run, checked against an earlier search in its output folder: resuming one replaces what its earlier run
    wrote (it may have died while writing; the search's digest, checked before anything is written, refuses to
    resume another one); without ``--resume`` or ``--overwrite``, an earlier search is refused at once."""
    if config.search is None:
        return config
    if resumable_search(config.output_dir, config.search.resume):
        return replace(config, overwrite=True)
    refuse_earlier_search(config.output_dir, config.search.resume, config.overwrite)
    return config


def _searched(run: _Run, builder: CandidateBuilder, config: ConvertConfig) -> _Run:
    """The run with the search's first candidate (plain int8) and its chosen one, which it ships. Every candidate
    is kept in the output folder's search/ as it is finished (an interrupted search resumes from it); on Ray
    (``--ray-address``) they are built as Ray tasks."""
    search = config.search
    store = CandidateStore.open(
        config.output_dir, builder.digest(), search.max_accuracy_drop, search.resume, config.overwrite
    )
    builder = replace(builder, store=store)
    with connect(search.ray_address, store) if search.ray_address else contextlib.nullcontext() as runner:
        outcome = run_search(builder, runner)
    chosen = outcome.chosen
    searched = dict.fromkeys([outcome.candidates[0], chosen])
    paths = {**run.paths, **{c.variant: _path(config, c.spec) for c in searched}}
    refuse_existing(_outputs([paths[chosen.variant]], config.output_dir), config.overwrite)
    scores = run.scores
    if chosen.tuned.pruned is not None:
        scores = {**scores, **builder.bench.measure({}, {PRUNED_KERAS: chosen.tuned.pruned.model})[0]}
    measured = {**run.measured, **{c.variant: c.measured for c in searched}}
    return _Run(measured, paths, scores, chosen.tuned, chosen.spec, outcome)


@dataclass(frozen=True)
class _Compare:
    """What measuring both int8 inputs takes: the model, the files' target and the bench."""

    model: Any
    target: Target
    bench: Bench


def _realized(
    spec: VariantSpec, model: Any, tuned: FineTuned, calibration: Calibration | None, target: Target
) -> Verified:
    """``spec``'s file, from the model it is converted from."""
    return realize(spec, source_model(spec, model, tuned), calibration, target, tuned)


def _pixel_input(
    config: ConvertConfig, calibration: Calibration | None, classifier: ClassifierSpec, compare: _Compare
) -> tuple[PixelInputChoice, dict[VariantSpec, Verified]]:
    """Whether the full-int8 variants take pixels: as asked, for uint8 input, else where the calibration samples'
    rounding ties say so, and then only if the plain int8 file scores no worse so on the held-out data than taking
    the normalized input (both measured here, side by side). Also the files measured to decide, by their recipe, so
    that the plain int8 file is not converted twice."""
    samples = calibration.model_input if calibration is not None else None
    choice = choose_pixel_input(
        config.pixel_input, config.io_type, config.integer_io, config.preprocessing, samples, classifier.channels
    )
    if not choice.chosen or choice.asked is not None or choice.uint8_input or compare.bench.evaluation is None:
        return choice, {}
    log.info("measuring int8 taking pixels and taking the normalized input (their values sit on rounding ties)")
    specs = {"pixels": VariantSpec(Mode.FULL_INT8, pixel_input=True), "normalized": VariantSpec(Mode.FULL_INT8)}
    files = {
        name: _realized(spec, compare.model, FineTuned(), calibration, compare.target) for name, spec in specs.items()
    }
    scores = compare.bench.accuracy(files)
    compared = (scores["pixels"].top1, scores["normalized"].top1)
    on = scores["pixels"].samples
    choice = replace(choice, chosen=prefer_pixel_input(*compared), compared=compared, compared_on=on)
    return choice, {spec: files[name] for name, spec in specs.items()}


def _metadata_spec(config: ConvertConfig, labels: list[str]) -> MetadataSpec:
    """What every file of the run says of itself in its TFLite Metadata."""
    return MetadataSpec(config.model_name, config.model_version, tuple(labels), config.preprocessing, config.card)


def _path(config: ConvertConfig, spec: VariantSpec) -> Path:
    return spec.path(config.output_dir, config.model_name)


def _fine_tuned(config: ConvertConfig, model: Any, inputs: Inputs, progress: bool) -> FineTuned:
    """Pruning (``config.prune``, outside a search), then clustering and quantization-aware training, as asked
    (a search fine-tunes its own candidates)."""
    tuned = FineTuned()
    if not config.fine_tunes or config.search is not None:
        return tuned
    train_x, train_y = inputs.train.model_input(config.preprocessing), inputs.train.labels
    if config.prune is not None:
        tuned = FineTuned(pruned=prune_model(model, train_x, train_y, config.prune, progress))
    if config.cluster is not None:
        tuned = clustered_with(tuned, model, train_x, train_y, config.cluster, progress)
    if config.qat is not None:
        tuned = quantization_aware(tuned, model, train_x, train_y, config.qat, progress)
    return tuned


def _settings(config: ConvertConfig) -> BenchmarkSettings:
    """The benchmark settings; a search's budget is the verdict's budget too."""
    settings = config.benchmark
    if config.search is not None:
        settings = replace(settings, accuracy_budget=min(config.search.max_accuracy_drop, settings.bad_drop))
    return settings


def _bench(config: ConvertConfig, model: Any, inputs: Inputs, spec: ClassifierSpec, progress: bool) -> Bench:
    return Bench(
        evaluation=inputs.evaluation,
        preprocessing=config.preprocessing,
        settings=_settings(config),
        pixels=latency_pixels(inputs.calibration, inputs.evaluation, spec.input_shape),
        seen=inputs.seen(),
        keras_model=model,
        progress=progress,
    )


def _candidate_builder(
    config: ConvertConfig,
    model: Any,
    inputs: Inputs,
    bench: Bench,
    keras_top1: float,
    calibration: Calibration,
    target: Target,
) -> CandidateBuilder:
    return CandidateBuilder(
        model=model,
        config=replace(config, benchmark=bench.settings),
        calibration=calibration,
        target=target,
        train=inputs.train,
        bench=bench,
        keras_top1=keras_top1,
    )


def _file_sparsity(
    measured: dict[str, Measured], tuned: FineTuned, variants: list[str], spec: ClassifierSpec
) -> dict[str, dict[str, tuple[int, int]]]:
    """(weights, non-zero weights) of each pruned layer, read from the files of the variants converted from
    the pruned model."""
    if tuned.pruned is None:
        return {}
    scopes = candidate_scopes(spec, tuned.pruned.stats.pruned_layer_names)
    return {name: file_layer_sparsity(measured[name].file.parsed, scopes) for name in variants}


def _report(
    config: ConvertConfig,
    classifier: ClassifierSpec,
    inputs: Inputs,
    results: list[VariantResult],
    run: _Run,
) -> ConvertReport:
    """The run's report: every variant's result, what fine-tuning did, and what the Keras and pruned Keras
    models scored."""
    keras_accuracy, pruned, tuned = run.scores.get(KERAS), run.scores.get(PRUNED_KERAS), run.tuned
    return ConvertReport(
        model=classifier.name,
        output_dir=Path(config.output_dir),
        keras_top1=keras_accuracy.top1 if keras_accuracy else None,
        eval_samples=len(inputs.evaluation) if inputs.evaluation is not None else 0,
        calibration_samples=len(inputs.calibration) if inputs.calibration is not None else 0,
        preprocessing=config.preprocessing,
        variants=tuple(results),
        warnings=(
            *inputs.warnings,
            *unsaid_warnings(inputs, classifier.num_classes),
            *filter(None, [busy_machine({r.variant: r.latency for r in results})]),
        ),
        pruning=tuned.pruned.stats if tuned.pruned is not None else None,
        qat=tuned.qat.stats if tuned.qat is not None else None,
        clustering=tuned.clustered.stats if tuned.clustered is not None else None,
        pruned_keras_top1=pruned.top1 if pruned is not None else None,
        search=run.outcome,
        chosen_variant=run.chosen.name if run.chosen is not None else None,
        labelled=inputs.evaluation is None or inputs.labelled,
        class_mapping=inputs.evaluation.mapping if inputs.evaluation is not None else None,
        reference_warning=reference_problem(keras_accuracy, inputs.labels),
        resize=config.resize,
    )


def _write(
    report: ConvertReport, measured: dict[str, Measured], labels: list[str], inputs: Inputs, config: ConvertConfig
) -> None:
    """Every variant's file and bundle with its golden vectors (all computed first), then the report files, each
    atomically."""
    source = golden_source(inputs.evaluation, inputs.calibration)
    golden = {
        result.variant: golden_vectors(
            measured[result.variant].file.content, source, app_input(result.pixel_input, config.preprocessing), labels
        )
        for result in report.variants
        if source is not None
    }
    log.info("writing into %s", config.output_dir)
    for result in report.variants:
        content = measured[result.variant].file.content
        atomic_write_bytes(result.path, content, overwrite=config.overwrite)
        write_bundle(
            report, result, content, labels, config.model_version, True, golden.get(result.variant), config.app_code
        )
    write_report_files(report, overwrite=config.overwrite)


def _outputs(model_paths: Iterable[Path], output_dir: Path) -> list[Path]:
    """Model files, the bundle files beside them, and the report files: everything a run may write."""
    model_paths = list(model_paths)
    bundle_files = [extra for path in model_paths for extra in BundlePaths.beside(path).extras()]
    return [*model_paths, *bundle_files, *report_paths(output_dir)]
