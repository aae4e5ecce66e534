"""The main job as one function: load → prune → calibrate → convert → verify → measure → write.

:func:`run_convert` plans the variants (one :class:`PlannedVariant` each), converts and
verifies them, measures them all side by side, lets the search add its candidates,
and writes nothing until all of that succeeded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tflite_opt.core.config import PIXELS, BenchmarkSettings, ConvertConfig, Mode
from tflite_opt.core.errors import UsageError
from tflite_opt.core.fileio import atomic_write_bytes, refuse_existing
from tflite_opt.core.tflite_file import read_tflite
from tflite_opt.jobs.inputs import Inputs, labels_for, load_classifier, load_inputs, resolve_defaults
from tflite_opt.jobs.measure import Bench, assemble_results, latency_pixels
from tflite_opt.jobs.search import CandidateBuilder, run_search
from tflite_opt.jobs.version_check import preflight
from tflite_opt.stages.benchmark import AccuracyStats, Measured, busy_machine, evaluate, reference_problem
from tflite_opt.stages.convert import PixelInputChoice, choose_pixel_input, convert_keras, convert_pixel_input
from tflite_opt.stages.load import ClassifierSpec
from tflite_opt.stages.package import BundlePaths, write_bundle
from tflite_opt.stages.prune import PruneResult, prune_model
from tflite_opt.stages.qat import FineTuned
from tflite_opt.stages.report import ConvertReport, VariantResult, report_paths, write_report_files
from tflite_opt.stages.search import SearchOutcome, candidate_name
from tflite_opt.stages.verify import Verified, file_layer_sparsity, fine_tuning_kept, pixel_input_check, verify_variant

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedVariant:
    """One .tflite file a run converts: its name, its mode, and what it is converted from and how.

    ``pixel_input``: a full-int8 model with the normalization inside, taking camera pixels as they are.
    ``from_qat``: converted from the quantization-aware model (``int8-qat``).
    """

    name: str
    mode: Mode
    from_tuned: bool = False
    from_qat: bool = False
    sparse_weights: bool = False
    per_tensor: bool = False
    pixel_input: bool = False


def plan_variants(config: ConvertConfig) -> tuple[PlannedVariant, ...]:
    """The variants a run converts itself, float32 reference first (a search adds its own candidates)."""
    plan = [PlannedVariant("float32", Mode.FLOAT32)]
    if config.search is not None:
        return tuple(plan)
    if not config.tuned:
        plan += [PlannedVariant(m.value, m) for m in config.modes if m is not Mode.FLOAT32]
        if config.per_tensor:
            plan.append(PlannedVariant(candidate_name(0.0, (), True), Mode.FULL_INT8, per_tensor=True))
        return tuple(plan + _qat_plan(config))
    pruned = config.pruned_modes
    # The same modes from the model as it came, so that each fine-tuning step's cost is one subtraction.
    plan += [PlannedVariant(m.value, m) for m in pruned if m is not Mode.FLOAT32]
    plan += [PlannedVariant(config.variant_name(m), m, from_tuned=True, per_tensor=config.per_tensor) for m in pruned]
    if config.sparse_format:
        plan += [
            PlannedVariant(f"{config.variant_name(m)}-sparse", m, from_tuned=True, sparse_weights=True) for m in pruned
        ]
    return tuple(plan + _qat_plan(config))


def _qat_plan(config: ConvertConfig) -> list[PlannedVariant]:
    if config.qat is None:
        return []
    return [PlannedVariant(config.qat_variant, Mode.FULL_INT8, from_tuned=config.tuned, from_qat=True)]


def with_pixel_input(plan: tuple[PlannedVariant, ...], pixel_input: PixelInputChoice) -> tuple[PlannedVariant, ...]:
    """The plan with its full-int8 variants taking pixels, where that was chosen."""
    if not pixel_input.chosen:
        return plan
    # A quantization-aware model learnt its input range on normalized input: it keeps it.
    return tuple(replace(v, pixel_input=v.mode is Mode.FULL_INT8 and not v.from_qat) for v in plan)


def output_path(output_dir: Path, model_name: str, variant: str) -> Path:
    """``<output_dir>/<model>.<variant>.tflite``."""
    return Path(output_dir) / f"{model_name}.{variant}.tflite"


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
    config = resolve_defaults(config)
    plan = plan_variants(config)
    names = [v.name for v in plan] + ([candidate_name(0.0, (), config.per_tensor)] if config.search else [])
    paths = {name: output_path(config.output_dir, config.model_name, name) for name in names}
    refuse_existing(_outputs(paths.values(), config.output_dir), config.overwrite)
    log.debug("loading %s", config.model_path)
    model, spec = load_classifier(config)
    inputs = load_inputs(config, spec)
    if config.search is not None and inputs.evaluation is None:
        raise UsageError("--max-accuracy-drop judges every candidate on held-out data: pass --eval-data")
    tuned = _fine_tuned(config, model, inputs)
    log.debug("converting %s", ", ".join(v.name for v in plan))
    calibration = inputs.calibration.model_input(config.preprocessing) if inputs.calibration is not None else None
    pixel_input = choose_pixel_input(config, calibration, spec.channels)
    plan = with_pixel_input(plan, pixel_input)
    files = _convert_and_verify(plan, model, tuned, inputs, config, spec, progress)
    bench = _bench(config, model, inputs, spec, progress)
    log.debug("measuring %s", ", ".join(files))
    keras_accuracy, measured = bench.measure(files)
    keras_top1 = keras_accuracy.top1 if keras_accuracy else None
    outcome, chosen_variant = None, next((v.name for v in plan if v.per_tensor), None)
    tuned_variants = [v.name for v in plan if v.from_tuned]
    if config.search is not None:
        builder = _candidate_builder(config, model, spec, inputs, bench, keras_top1, pixel_input.chosen)
        outcome = run_search(builder)
        tuned = _take_search_results(outcome, config, measured, paths)
        chosen_variant = outcome.chosen.variant
        tuned_variants = [chosen_variant]
    results = assemble_results(
        measured, paths, "float32", keras_top1, bench.settings, _file_sparsity(measured, tuned, tuned_variants, spec)
    )
    report = _report(config, spec, inputs, bench, results, keras_accuracy, tuned, outcome, chosen_variant)
    if config.integer_io:
        report = replace(report, pixel_input=pixel_input)  # the choice only concerns integer input
    _write(report, measured, labels_for(inputs, spec.num_classes), config)
    return report


def _source(planned: PlannedVariant, tuned: FineTuned, model: Any) -> Any:
    """The Keras model a planned variant is converted from."""
    if planned.from_qat:
        return tuned.qat.model
    return tuned.model(model) if planned.from_tuned else model


def _fine_tuned(config: ConvertConfig, model: Any, inputs: Inputs) -> FineTuned:
    """Pruning (``config.prune``, outside a search), then clustering and quantization-aware training, as asked
    (a search fine-tunes its own candidates)."""
    tuned = FineTuned()
    if not config.fine_tunes or config.search is not None:
        return tuned
    train_x, train_y = inputs.train.model_input(config.preprocessing), inputs.train.labels
    if config.prune is not None:
        tuned = FineTuned(pruned=prune_model(model, train_x, train_y, config.prune))
    if config.cluster is not None:
        tuned = tuned.clustered_with(model, train_x, train_y, config.cluster)
    if config.qat is not None:
        tuned = tuned.quantization_aware(model, train_x, train_y, config.qat)
    return tuned


def _convert_and_verify(
    plan: Iterable[PlannedVariant],
    model: Any,
    tuned: FineTuned,
    inputs: Inputs,
    config: ConvertConfig,
    spec: ClassifierSpec,
    progress: bool,
) -> dict[str, Verified]:
    """Each planned variant converted and verified (from ``model`` or what was ``tuned`` from it); the first
    failure raises VerificationError."""
    files = {}
    for planned in plan:
        content = _convert(planned, _source(planned, tuned, model), inputs, config, progress)
        parsed = read_tflite(content, source=f"the {planned.name} model")
        verification = replace(
            verify_variant(parsed, planned.mode, config.io_type, spec.layer_scopes), variant=planned.name
        )
        if planned.pixel_input:
            verification = verification.with_check(pixel_input_check(parsed, config.io_type))
        if planned.from_tuned:
            verification = fine_tuning_kept(verification, parsed, tuned, spec)
        verification.raise_for_failures()
        files[planned.name] = Verified(content, parsed, verification, planned.pixel_input)
    return files


def _convert(planned: PlannedVariant, source: Any, inputs: Inputs, config: ConvertConfig, progress: bool) -> bytes:
    if planned.pixel_input:
        pixels = inputs.calibration.model_input(PIXELS)
        return convert_pixel_input(
            source, config.preprocessing, pixels, config.io_type, planned.per_tensor, progress, planned.sparse_weights
        )
    calibration = inputs.calibration.model_input(config.preprocessing) if inputs.calibration is not None else None
    return convert_keras(
        source,
        planned.mode,
        calibration,
        config.io_type,
        progress,
        sparse_weights=planned.sparse_weights,
        per_tensor=planned.per_tensor,
    )


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
    spec: ClassifierSpec,
    inputs: Inputs,
    bench: Bench,
    keras_top1: float,
    pixel_input: bool,
) -> CandidateBuilder:
    return CandidateBuilder(
        model=model,
        spec=spec,
        config=replace(config, benchmark=bench.settings),
        calibration=inputs.calibration.model_input(PIXELS if pixel_input else config.preprocessing),
        train=inputs.train,
        bench=bench,
        keras_top1=keras_top1,
        pixel_input=pixel_input,
        model_calibration=inputs.calibration.model_input(config.preprocessing) if pixel_input else None,
    )


def _take_search_results(
    outcome: SearchOutcome, config: ConvertConfig, measured: dict[str, Measured], paths: dict[str, Path]
) -> FineTuned:
    """Add the first candidate (plain int8) and the chosen one to the run's variants; returns what the
    chosen one was fine-tuned into."""
    first, chosen = outcome.candidates[0], outcome.chosen
    for candidate in dict.fromkeys([first, chosen]):
        measured[candidate.variant] = candidate.measured
    paths[chosen.variant] = output_path(config.output_dir, config.model_name, chosen.variant)
    refuse_existing(_outputs([paths[chosen.variant]], config.output_dir), config.overwrite)
    return chosen.tuned


def _file_sparsity(
    measured: dict[str, Measured], tuned: FineTuned, variants: list[str], spec: ClassifierSpec
) -> dict[str, dict[str, tuple[int, int]]]:
    """(weights, non-zero weights) of each pruned layer, read from the files of the variants converted from
    the pruned model."""
    if tuned.pruned is None:
        return {}
    scopes = spec.scopes_for(tuned.pruned.stats.pruned_layer_names)
    return {name: file_layer_sparsity(measured[name].file.parsed, scopes) for name in variants}


def _report(
    config: ConvertConfig,
    spec: ClassifierSpec,
    inputs: Inputs,
    bench: Bench,
    results: list[VariantResult],
    keras_accuracy: AccuracyStats | None,
    tuned: FineTuned,
    outcome: SearchOutcome | None,
    chosen_variant: str | None,
) -> ConvertReport:
    """The run's report: every variant's result, what fine-tuning did, and what the Keras and pruned Keras
    models scored."""
    pruned = tuned.pruned
    return ConvertReport(
        model=spec.name,
        output_dir=Path(config.output_dir),
        keras_top1=keras_accuracy.top1 if keras_accuracy else None,
        eval_samples=len(inputs.evaluation) if inputs.evaluation is not None else 0,
        calibration_samples=len(inputs.calibration) if inputs.calibration is not None else 0,
        preprocessing=config.preprocessing,
        variants=tuple(results),
        warnings=(*inputs.warnings, *filter(None, [busy_machine({r.variant: r.latency for r in results})])),
        pruning=pruned.stats if pruned is not None else None,
        qat=tuned.qat.stats if tuned.qat is not None else None,
        clustering=tuned.clustered.stats if tuned.clustered is not None else None,
        pruned_keras_top1=_pruned_keras_top1(pruned, inputs, bench),
        search=outcome,
        chosen_variant=chosen_variant,
        labelled=inputs.evaluation is None or inputs.labelled,
        class_mapping=inputs.evaluation.mapping if inputs.evaluation is not None else None,
        reference_warning=reference_problem(keras_accuracy, inputs.labels),
    )


def _pruned_keras_top1(pruned: PruneResult | None, inputs: Inputs, bench: Bench) -> float | None:
    """The pruned Keras model's top-1 on the held-out data, where there is both."""
    if pruned is None or inputs.evaluation is None:
        return None
    keras_accuracy, _ = evaluate(
        inputs.evaluation, bench.preprocessing, {}, keras_model=pruned.model, settings=bench.settings
    )
    return keras_accuracy.top1


def _write(report: ConvertReport, measured: dict[str, Measured], labels: list[str], config: ConvertConfig) -> None:
    """Every variant's file and bundle, then the report files, each atomically."""
    log.debug("writing into %s", config.output_dir)
    for result in report.variants:
        content = measured[result.variant].file.content
        atomic_write_bytes(result.path, content, overwrite=config.overwrite)
        write_bundle(report, result, content, labels, config.model_version, overwrite=True)
    write_report_files(report, overwrite=config.overwrite)


def _outputs(model_paths: Iterable[Path], output_dir: Path) -> list[Path]:
    """Model files, the bundle files beside them, and the report files: everything a run may write."""
    model_paths = list(model_paths)
    bundle_files = [extra for path in model_paths for extra in BundlePaths.beside(path).extras()]
    return [*model_paths, *bundle_files, *report_paths(output_dir)]
