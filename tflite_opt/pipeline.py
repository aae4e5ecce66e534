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
    verify and measure each, and write them.

    Nothing is written until every variant converted, passed verification and was
    measured; each file is written atomically, report.json last.

    Raises:
        TfliteOptError: any user-facing problem, as a typed error.
    """
    from tflite_opt.benchmark import evaluate
    from tflite_opt.convert import convert_keras
    from tflite_opt.load import describe_classifier, load_keras_model
    from tflite_opt.verify import Verification, file_layer_sparsity, sparsity_check, verify_variant

    config = resolve_defaults(config)
    preprocessing = config.preprocessing
    # (variant, mode, from the pruned model, sparse weight format)
    plan = [("float32", Mode.FLOAT32, False, False)]
    if config.prune is None:
        plan += [(m.value, m, False, False) for m in config.modes if m is not Mode.FLOAT32]
    else:
        plan += [(config.variant_name(m), m, True, False) for m in config.pruned_modes]
        if config.sparse_format:
            plan += [(f"{config.variant_name(m)}-sparse", m, True, True) for m in config.pruned_modes]
    paths = {variant: output_path(config.output_dir, config.model_name, variant) for variant, *_ in plan}
    bundle_files = [extra for path in paths.values() for extra in BundlePaths.beside(path).extras()]
    refuse_existing([*paths.values(), *bundle_files, *report_paths(config.output_dir)], config.overwrite)

    model = load_keras_model(config.model_path, config.allow_unsafe_deserialization)
    spec = describe_classifier(model, config.model_name)
    if not preprocessing.channel_count_fits(spec.channels):
        raise UsageError(
            f"the preprocessing has {len(preprocessing.scale)} scale and {len(preprocessing.offset)} offset values; "
            f"{spec.name} takes {spec.channels} channels"
        )
    calibration, evaluation, train, warnings = _load_data(config, spec)

    pruned = None
    if config.prune is not None:
        from tflite_opt.prune import prune_model

        pruned = prune_model(
            model, train.model_input(preprocessing), train.labels, config.prune, verbose=2 if progress else 0
        )
    keras_sparsity = {layer.layer: layer.sparsity for layer in pruned.stats.layers} if pruned else {}

    calibration_input = calibration.model_input(preprocessing) if calibration is not None else None
    converted, verifications, from_pruned = {}, {}, set()
    for variant, mode, pruned_source, sparse in plan:
        source = pruned.model if pruned_source else model
        content = convert_keras(source, mode, calibration_input, config.io_type, progress, sparse_weights=sparse)
        parsed = read_tflite(content, source=f"the {variant} model")
        verification = verify_variant(parsed, mode, config.io_type, spec.layer_names)
        if pruned_source:
            verification = Verification(variant, verification.checks + (sparsity_check(parsed, keras_sparsity),))
            from_pruned.add(variant)
        verification.raise_for_failures()
        converted[variant], verifications[variant] = (content, parsed), verification

    # Measure everything before writing anything: an error or Ctrl-C while measuring leaves no file.
    settings = config.benchmark
    keras_accuracy, accuracy, latency, sizes = measure_variants(
        converted,
        evaluation,
        preprocessing,
        model,
        settings,
        seen_digests(calibration=calibration, training=train),
        latency_sample(calibration, evaluation, spec.input_shape, preprocessing),
        reference=None,
        progress=progress,
    )
    keras_top1 = keras_accuracy.top1 if keras_accuracy else None
    pruned_keras_top1 = None
    if pruned is not None and evaluation is not None:
        pruned_keras_top1 = evaluate(evaluation, preprocessing, {}, keras_model=pruned.model, settings=settings)[0].top1

    layer_sparsity = {
        variant: file_layer_sparsity(parsed, list(keras_sparsity))
        for variant, (_, parsed) in converted.items()
        if variant in from_pruned
    }
    results = assemble_results(
        converted, paths, verifications, accuracy, latency, sizes, "float32", keras_top1, settings, layer_sparsity
    )
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
    )
    labels = _labels(config, evaluation, spec.num_classes)
    for result in results:
        content = converted[result.variant][0]
        atomic_write_bytes(result.path, content, overwrite=config.overwrite)
        write_bundle(report, result, content, labels, config.model_version, overwrite=True)
    write_report_files(report, overwrite=config.overwrite)
    return report


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
