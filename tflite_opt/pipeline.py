"""The main job as one function: load → prune → calibrate → convert → verify → measure → write."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

from tflite_opt import default_model
from tflite_opt.config import ConvertConfig, Mode, Preprocessing
from tflite_opt.errors import DataError, UsageError
from tflite_opt.fileio import atomic_write_bytes, atomic_write_json, refuse_existing
from tflite_opt.report import ConvertReport, TensorInfo, VariantResult
from tflite_opt.representative import Dataset, ImageSize, load_dataset, range_warnings
from tflite_opt.tflite_file import Tensor, read_tflite


def output_path(output_dir: Path, model_name: str, variant: str) -> Path:
    """``<output_dir>/<model>.<variant>.tflite``."""
    return Path(output_dir) / f"{model_name}.{variant}.tflite"


def gzip_size(content: bytes) -> int:
    """Size after gzip -9: where pruning's zeros show."""
    return len(gzip.compress(content, compresslevel=9, mtime=0))


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


def _digests(dataset: Dataset) -> dict[str, str]:
    return {
        hashlib.sha256(sample.tobytes()).hexdigest(): source
        for sample, source in zip(dataset.raw, dataset.sources, strict=True)
    }


def refuse_overlap(evaluation: Dataset, other: Dataset, what: str) -> None:
    """Refuse evaluation data that shares an image with the calibration or training data."""
    evaluated = _digests(evaluation)
    shared = evaluated.keys() & _digests(other).keys()
    if shared:
        raise DataError(
            f"{len(shared)} evaluation samples also appear in the {what} data (e.g. {evaluated[next(iter(shared))]}); "
            "accuracy must be measured on held-out data"
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


def _load_data(config: ConvertConfig, spec: Any) -> tuple[Dataset | None, Dataset | None, Dataset | None, list[str]]:
    """Calibration, evaluation and training data as the config asks, checked against each other."""
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
        _check_labels(train, spec, config.train_data)
    if config.eval_data is not None:
        evaluation = load_dataset(config.eval_data, size, require_labels=True)
        warnings += list(evaluation.warnings)
        _check_labels(evaluation, spec, config.eval_data)
        if calibration is not None:
            refuse_overlap(evaluation, calibration, "calibration")
        if train is not None:
            refuse_overlap(evaluation, train, "training")
    return calibration, evaluation, train, warnings


def _check_labels(dataset: Dataset, spec: Any, source: Path) -> None:
    low, high = int(dataset.labels.min()), int(dataset.labels.max())
    if low < 0 or high >= spec.num_classes:
        raise DataError(f"{source}: labels run from {low} to {high}, but {spec.name} has {spec.num_classes} classes")


def _latency_sample(calibration: Any, evaluation: Any, spec: Any) -> Any:
    """One real input image for timing, or zeros where no data was given."""
    import numpy as np

    for data in (calibration, evaluation):
        if data is not None and len(data):
            return data[0]
    return np.zeros(spec.input_shape, dtype=np.float32)


def run_convert(config: ConvertConfig, progress: bool = False) -> ConvertReport:
    """Convert a Keras model (pruned first with ``config.prune``) to every requested variant,
    verify and measure each, and write them.

    Nothing is written until every variant converted, passed verification and was
    measured; each file is written atomically, report.json last.

    Raises:
        TfliteOptError: any user-facing problem, as a typed error.
    """
    from tflite_opt.benchmark import keras_scores, single_image_latency, tflite_scores, top1
    from tflite_opt.convert import convert_keras
    from tflite_opt.load import describe_classifier, load_keras_model
    from tflite_opt.verify import Verification, file_layer_sparsity, overall_sparsity, sparsity_check, verify_variant

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
    report_path = Path(config.output_dir) / "report.json"
    refuse_existing([*paths.values(), report_path], config.overwrite)

    model = load_keras_model(config.model_path)
    spec = describe_classifier(model, config.model_name)
    if not preprocessing.channel_count_fits(spec.channels):
        raise UsageError(
            f"the preprocessing has {len(preprocessing.scale)} scale and {len(preprocessing.offset)} offset values; "
            f"{spec.name} takes {spec.channels} channels"
        )
    calibration, evaluation, train, warnings = _load_data(config, spec)
    eval_input = evaluation.model_input(preprocessing) if evaluation is not None else None

    pruned = None
    if config.prune is not None:
        from tflite_opt.prune import prune_model

        pruned = prune_model(
            model, train.model_input(preprocessing), train.labels, config.prune, verbose=2 if progress else 0
        )
    keras_sparsity = {layer.layer: layer.sparsity for layer in pruned.stats.layers} if pruned else {}

    calibration_input = calibration.model_input(preprocessing) if calibration is not None else None
    converted = {}
    for variant, mode, from_pruned, sparse in plan:
        source = pruned.model if from_pruned else model
        content = convert_keras(source, mode, calibration_input, config.io_type, progress, sparse_weights=sparse)
        parsed = read_tflite(content, source=f"the {variant} model")
        verification = verify_variant(parsed, mode, config.io_type, spec.layer_names)
        if from_pruned:
            verification = Verification(variant, verification.checks + (sparsity_check(parsed, keras_sparsity),))
        verification.raise_for_failures()
        converted[variant] = (content, parsed, verification, from_pruned)

    # Measure everything before writing anything: an error or Ctrl-C while measuring leaves no file.
    keras_top1 = top1(keras_scores(model, eval_input), evaluation.labels) if evaluation is not None else None
    latency_sample = _latency_sample(calibration_input, eval_input, spec)
    results = []
    for variant, (content, parsed, verification, from_pruned) in converted.items():
        accuracy = top1(tflite_scores(content, eval_input), evaluation.labels) if evaluation is not None else None
        latency, delegate = single_image_latency(content, latency_sample)
        layers = file_layer_sparsity(parsed, list(keras_sparsity)) if from_pruned else {}
        results.append(
            VariantResult(
                variant=variant,
                path=paths[variant],
                size_bytes=len(content),
                gzip_size_bytes=gzip_size(content),
                sparsity=overall_sparsity(parsed),
                top1=accuracy,
                verification=verification,
                input=_tensor_info(parsed.input_tensors()[0]),
                output=_tensor_info(parsed.output_tensors()[0]),
                layer_sparsity={name: 1.0 - nonzero / weights for name, (weights, nonzero) in layers.items()},
                latency_p50_ms=latency,
                delegate=delegate,
            )
        )
    pruned_keras_top1 = None
    if pruned is not None and evaluation is not None:
        pruned_keras_top1 = top1(keras_scores(pruned.model, eval_input), evaluation.labels)
    for variant, (content, *_) in converted.items():
        atomic_write_bytes(paths[variant], content, overwrite=config.overwrite)
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
    atomic_write_json(report_path, report.to_dict(), overwrite=config.overwrite)
    return report
