"""The main job as one function: load → prune → calibrate → convert → verify → measure → write."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from tflite_opt import default_model
from tflite_opt.benchmark import Verdict
from tflite_opt.config import ConvertConfig, Mode, Preprocessing
from tflite_opt.errors import DataError, UsageError
from tflite_opt.fileio import atomic_write_bytes, refuse_existing
from tflite_opt.package import BundlePaths, write_bundle
from tflite_opt.report import ConvertReport, TensorInfo, VariantResult, report_paths, write_report_files
from tflite_opt.representative import Dataset, DataSource, ImageSize, load_dataset, open_source, range_warnings
from tflite_opt.tflite_file import Tensor, TfliteFile, read_tflite


def output_path(output_dir: Path, model_name: str, variant: str) -> Path:
    """``<output_dir>/<model>.<variant>.tflite``."""
    return Path(output_dir) / f"{model_name}.{variant}.tflite"


def resolve_defaults(config: ConvertConfig) -> ConvertConfig:
    """Fill in the embedded default model, data and preprocessing where the config has none."""
    if config.model_path is not None:
        if config.needs_calibration and config.representative_data is None:
            raise UsageError(
                "--full-int8 needs calibration data for your model: pass --representative-data "
                "(a folder of images or a .npy/.npz file)"
            )
        if config.prune is not None and config.train_data is None:
            raise UsageError(
                "pruning fine-tunes the model and needs labelled training data: pass --train-data "
                "(one subfolder per class, or an .npz file with arrays x and y)"
            )
        return replace(config, preprocessing=config.preprocessing or Preprocessing())
    if not default_model.data_paths_exist():
        raise UsageError(
            f"the embedded default data is missing under {default_model.DATA_DIR}; run from a source "
            "checkout (pip install -e .), or pass --model, --representative-data and --eval-data"
        )
    return replace(
        config,
        model_path=default_model.MODEL_PATH,
        model_name=config.model_name or default_model.MODEL_NAME,
        representative_data=config.representative_data or default_model.CALIBRATION_DIR,
        eval_data=config.eval_data or default_model.EVAL_DIR,
        train_data=config.train_data or (default_model.TRAIN_FILE if config.prune is not None else None),
        preprocessing=config.preprocessing or default_model.PREPROCESSING,
    )


def _tensor_info(tensor: Tensor) -> TensorInfo:
    q = tensor.quantization
    return TensorInfo(
        name=tensor.name,
        dtype=tensor.dtype,
        shape=tensor.shape,
        scale=q.scale if q else None,
        zero_point=q.zero_point if q else None,
    )


def _load_data(config: ConvertConfig, spec: Any) -> tuple[Dataset | None, DataSource | None, Dataset | None, list[str]]:
    """Calibration and training data (in memory), and the evaluation source (streamed)."""
    size = ImageSize(spec.height, spec.width, spec.channels)
    warnings: list[str] = []
    calibration = evaluation = train = None
    if config.needs_calibration:
        calibration = load_dataset(config.representative_data, size, config.num_calibration_samples, config.seed)
        warnings += [
            *calibration.warnings,
            *range_warnings(calibration, config.preprocessing, config.representative_data),
        ]
    if config.train_data is not None:
        train = load_dataset(config.train_data, size, require_labels=True)
        low, high = int(train.labels.min()), int(train.labels.max())
        if low < 0 or high >= spec.num_classes:
            raise DataError(
                f"{config.train_data}: labels run from {low} to {high}, but {spec.name} has {spec.num_classes} classes"
            )
    if config.eval_data is not None:
        evaluation = open_source(config.eval_data, size, require_labels=True)
    return calibration, evaluation, train, warnings


def seen_digests(**datasets: Dataset | None) -> dict[str, set[str]]:
    """Content digests of the data a model saw, by what it was for ("calibration", "training")."""
    from tflite_opt.benchmark import content_digests

    return {what: set(content_digests(data.raw)) for what, data in datasets.items() if data is not None}


def measure_variants(
    converted: dict[str, tuple[bytes, TfliteFile]],
    evaluation: DataSource | None,
    preprocessing: Preprocessing,
    keras_model: Any | None,
    settings: Any,
    seen: dict[str, set[str]],
    latency_sample: np.ndarray,
    reference: str | None,
    progress: bool = False,
) -> tuple[Any, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Accuracy (one streamed pass for all variants), latency and size of every variant.

    Returns:
        (Keras accuracy or None, accuracy by variant, latency by variant, size by variant).
    """
    from tflite_opt.benchmark import evaluate, measure_latency, measure_size

    keras_accuracy, accuracy = None, {}
    if evaluation is not None:
        keras_accuracy, accuracy = evaluate(
            evaluation,
            preprocessing,
            {name: content for name, (content, _) in converted.items()},
            keras_model=keras_model,
            reference=reference,
            settings=settings,
            held_out_from=seen,
            progress=progress,
        )
    latency = {name: measure_latency(content, latency_sample, settings) for name, (content, _) in converted.items()}
    sizes = {name: measure_size(content, parsed) for name, (content, parsed) in converted.items()}
    return keras_accuracy, accuracy, latency, sizes


def assemble_results(
    converted: dict[str, tuple[bytes, TfliteFile]],
    paths: dict[str, Path],
    verifications: dict[str, Any],
    accuracy: dict[str, Any],
    latency: dict[str, Any],
    sizes: dict[str, Any],
    reference: str | None,
    baseline_top1: float | None,
    settings: Any,
    layer_sparsity: dict[str, dict[str, tuple[int, int]]] | None = None,
) -> list[VariantResult]:
    """One VariantResult per variant, judged against the baseline top-1 and the reference size."""
    from tflite_opt.benchmark import verdict
    from tflite_opt.verify import overall_sparsity

    results = []
    for variant, (_, parsed) in converted.items():
        measured = accuracy.get(variant)
        drop = 100.0 * (baseline_top1 - measured.top1) if measured and baseline_top1 is not None else None
        if variant == reference:
            judged = Verdict("reference", "the float32 model the others are compared with")
        else:
            ratio = sizes[variant].bytes / sizes[reference].bytes if reference else None
            judged = verdict(drop, ratio, bool(measured and measured.degenerate), settings)
        layers = (layer_sparsity or {}).get(variant, {})
        results.append(
            VariantResult(
                variant=variant,
                path=paths[variant],
                size=sizes[variant],
                sparsity=overall_sparsity(parsed),
                verification=verifications[variant],
                input=_tensor_info(parsed.input_tensors()[0]),
                output=_tensor_info(parsed.output_tensors()[0]),
                latency=latency[variant],
                verdict=judged,
                accuracy=measured,
                layer_sparsity={name: 1.0 - kept / weights for name, (weights, kept) in layers.items()},
            )
        )
    return results


def latency_sample(
    calibration: Dataset | None, evaluation: DataSource | None, input_shape: tuple[int, ...], prep: Preprocessing
) -> np.ndarray:
    """One real input image for timing (calibration first, then evaluation), or zeros where no data was given."""
    if calibration is not None:
        return calibration.model_input(prep)[0]
    if evaluation is not None:
        return Dataset(evaluation.read([0]), None, ()).model_input(prep)[0]
    return np.zeros(input_shape, dtype=np.float32)


def run_convert(config: ConvertConfig, progress: bool = False) -> ConvertReport:
    """Convert a Keras model (pruned first with ``config.prune``) to every requested variant,
    verify and measure each, and write them. With ``config.search``, search for the smallest
    full-int8 model within the accuracy budget instead (:mod:`tflite_opt.search`).

    Nothing is written until every variant converted, passed verification and was
    measured; each file is written atomically, report.json last.

    Raises:
        TfliteOptError: any user-facing problem, as a typed error.
    """
    from tflite_opt.convert import convert_keras
    from tflite_opt.load import describe_classifier, load_keras_model
    from tflite_opt.verify import Verification, sparsity_check, verify_variant

    config = resolve_defaults(config)
    preprocessing = config.preprocessing
    from tflite_opt.search import candidate_name

    # (variant, mode, from the pruned model, sparse weight format, per-tensor weights)
    plan = [("float32", Mode.FLOAT32, False, False, False)]
    if config.search is not None:
        plan += [(candidate_name(0.0, (), config.per_tensor), Mode.FULL_INT8, False, False, config.per_tensor)]
    elif config.prune is None:
        plan += [(m.value, m, False, False, False) for m in config.modes if m is not Mode.FLOAT32]
        if config.per_tensor:
            plan.append((candidate_name(0.0, (), True), Mode.FULL_INT8, False, False, True))
    else:
        plan += [(config.variant_name(m), m, True, False, config.per_tensor) for m in config.pruned_modes]
        if config.sparse_format:
            plan += [(f"{config.variant_name(m)}-sparse", m, True, True, False) for m in config.pruned_modes]
    paths = {variant: output_path(config.output_dir, config.model_name, variant) for variant, *_ in plan}
    refuse_existing(_outputs(paths.values(), config.output_dir), config.overwrite)

    model = load_keras_model(config.model_path, config.allow_unsafe_deserialization)
    spec = describe_classifier(model, config.model_name)
    if not preprocessing.channel_count_fits(spec.channels):
        raise UsageError(
            f"the preprocessing has {len(preprocessing.scale)} scale and {len(preprocessing.offset)} offset values; "
            f"{spec.name} takes {spec.channels} channels"
        )
    calibration, evaluation, train, warnings = _load_data(config, spec)
    if config.search is not None and evaluation is None:
        raise UsageError("--max-accuracy-drop judges every candidate on held-out data: pass --eval-data")

    pruned = None
    if config.prune is not None and config.search is None:
        from tflite_opt.prune import prune_model

        pruned = prune_model(
            model, train.model_input(preprocessing), train.labels, config.prune, verbose=2 if progress else 0
        )
    keras_sparsity = {layer.layer: layer.sparsity for layer in pruned.stats.layers} if pruned else {}

    calibration_input = calibration.model_input(preprocessing) if calibration is not None else None
    converted, verifications, from_pruned = {}, {}, set()
    # The search converts its own int8 candidates; only the float32 reference is converted here.
    for variant, mode, pruned_source, sparse, per_tensor in plan if config.search is None else plan[:1]:
        source = pruned.model if pruned_source else model
        content = convert_keras(
            source, mode, calibration_input, config.io_type, progress, sparse_weights=sparse, per_tensor=per_tensor
        )
        parsed = read_tflite(content, source=f"the {variant} model")
        verification = verify_variant(parsed, mode, config.io_type, spec.layer_names)
        if pruned_source:
            verification = Verification(variant, verification.checks + (sparsity_check(parsed, keras_sparsity),))
            from_pruned.add(variant)
        verification.raise_for_failures()
        converted[variant], verifications[variant] = (content, parsed), verification

    # Measure everything before writing anything: an error or Ctrl-C while measuring leaves no file.
    settings = config.benchmark
    if config.search is not None:
        settings = replace(settings, accuracy_budget=min(config.search.max_accuracy_drop, settings.bad_drop))
    seen = seen_digests(calibration=calibration, training=train)
    sample = latency_sample(calibration, evaluation, spec.input_shape, preprocessing)
    keras_accuracy, accuracy, latency, sizes = measure_variants(
        converted, evaluation, preprocessing, model, settings, seen, sample, reference=None, progress=progress
    )
    keras_top1 = keras_accuracy.top1 if keras_accuracy else None

    outcome = None
    if config.search is not None:
        from tflite_opt.search import CandidateBuilder, run_search

        builder = CandidateBuilder(
            model=model,
            spec=spec,
            config=replace(config, benchmark=settings),
            calibration=calibration_input,
            train=train,
            evaluation=evaluation,
            seen=seen,
            sample=sample,
            keras_top1=keras_top1,
            progress=progress,
        )
        outcome = run_search(builder)
        first, chosen = outcome.candidates[0], outcome.chosen
        for candidate in dict.fromkeys([first, chosen]):
            measured = candidate.measured
            converted[candidate.variant] = (measured.content, measured.parsed)
            verifications[candidate.variant] = measured.verification
            accuracy[candidate.variant] = measured.accuracy
            latency[candidate.variant] = measured.latency
            sizes[candidate.variant] = measured.size
        paths[chosen.variant] = output_path(config.output_dir, config.model_name, chosen.variant)
        refuse_existing(_outputs([paths[chosen.variant]], config.output_dir), config.overwrite)
        if chosen.measured.pruned is not None:
            pruned = chosen.measured.pruned
            keras_sparsity = {layer.layer: layer.sparsity for layer in pruned.stats.layers}
            from_pruned.add(chosen.variant)

    pruned_keras_top1 = None
    if pruned is not None and evaluation is not None:
        from tflite_opt.benchmark import evaluate

        pruned_keras_top1 = evaluate(evaluation, preprocessing, {}, keras_model=pruned.model, settings=settings)[0].top1

    from tflite_opt.verify import file_layer_sparsity

    layer_sparsity = {
        variant: file_layer_sparsity(parsed, list(keras_sparsity))
        for variant, (_, parsed) in converted.items()
        if variant in from_pruned
    }
    results = assemble_results(
        converted, paths, verifications, accuracy, latency, sizes, "float32", keras_top1, settings, layer_sparsity
    )
    chosen_variant = None
    if outcome is not None:
        chosen_variant = outcome.chosen.variant
    elif config.per_tensor:
        chosen_variant = next(variant for variant, *_, per_tensor in plan if per_tensor)
    report = ConvertReport(
        model=spec.name,
        output_dir=Path(config.output_dir),
        keras_top1=keras_top1,
        eval_samples=len(evaluation) if evaluation is not None else 0,
        calibration_samples=len(calibration) if calibration is not None else 0,
        preprocessing=preprocessing,
        variants=tuple(results),
        warnings=tuple(warnings),
        pruning=pruned.stats if pruned is not None else None,
        pruned_keras_top1=pruned_keras_top1,
        search=outcome,
        chosen_variant=chosen_variant,
    )
    labels = _labels(config, evaluation, spec.num_classes)
    for result in results:
        content = converted[result.variant][0]
        atomic_write_bytes(result.path, content, overwrite=config.overwrite)
        write_bundle(report, result, content, labels, config.model_version, overwrite=True)
    write_report_files(report, overwrite=config.overwrite)
    return report


def _outputs(model_paths, output_dir: Path) -> list[Path]:
    """Model files, the bundle files beside them, and the report files: everything a run may write."""
    model_paths = list(model_paths)
    bundle_files = [extra for path in model_paths for extra in BundlePaths.beside(path).extras()]
    return [*model_paths, *bundle_files, *report_paths(output_dir)]


def _labels(config: ConvertConfig, evaluation: DataSource | None, num_classes: int) -> list[str]:
    """Class names for the bundle: --labels, else the evaluation folders' names, else the indices."""
    if config.labels_file is not None:
        try:
            names = [line.strip() for line in Path(config.labels_file).read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise DataError(f"cannot read --labels {config.labels_file}: {exc}") from exc
    elif evaluation is not None and evaluation.class_names is not None:
        names = list(evaluation.class_names)
    else:
        names = [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise DataError(f"{len(names)} labels for a model with {num_classes} classes; pass --labels with one per line")
    return names
