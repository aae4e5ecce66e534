"""The main job as one function: load → calibrate → convert → verify → measure → write."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tflite_opt import default_model
from tflite_opt.config import ConvertConfig, Mode, Preprocessing
from tflite_opt.errors import DataError, UsageError
from tflite_opt.fileio import atomic_write_bytes, atomic_write_json, refuse_existing
from tflite_opt.report import ConvertReport, TensorInfo, VariantResult
from tflite_opt.representative import Dataset, ImageSize, load_dataset, range_warnings
from tflite_opt.tflite_file import Tensor, read_tflite


def output_path(output_dir: Path, model_name: str, mode: Mode) -> Path:
    """``<output_dir>/<model>.<variant>.tflite``."""
    return Path(output_dir) / f"{model_name}.{mode.value}.tflite"


def resolve_defaults(config: ConvertConfig) -> ConvertConfig:
    """Fill in the embedded default model, data and preprocessing where the config has none."""
    from dataclasses import replace

    if config.model_path is not None:
        if config.needs_calibration and config.representative_data is None:
            raise UsageError(
                "--full-int8 needs calibration data for your model: pass --representative-data "
                "(a folder of images or a .npy/.npz file)"
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
        preprocessing=config.preprocessing or default_model.PREPROCESSING,
    )


def _digests(dataset: Dataset) -> dict[str, str]:
    return {
        hashlib.sha256(sample.tobytes()).hexdigest(): source
        for sample, source in zip(dataset.raw, dataset.sources, strict=True)
    }


def refuse_overlap(evaluation: Dataset, calibration: Dataset) -> None:
    """Refuse evaluation data that shares an image with the calibration data."""
    shared = _digests(evaluation).keys() & _digests(calibration).keys()
    if shared:
        example = _digests(evaluation)[next(iter(shared))]
        raise DataError(
            f"{len(shared)} evaluation samples also appear in the calibration data (e.g. {example}); "
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


def run_convert(config: ConvertConfig, progress: bool = False) -> ConvertReport:
    """Convert a Keras model to every requested variant, verify and measure each, and write them.

    Nothing is written until every variant converted and passed verification; each
    file is written atomically, report.json last.

    Raises:
        TfliteOptError: any user-facing problem, as a typed error.
    """
    from tflite_opt.benchmark import keras_scores, tflite_scores, top1
    from tflite_opt.convert import convert_keras
    from tflite_opt.load import describe_classifier, load_keras_model
    from tflite_opt.verify import verify_variant

    config = resolve_defaults(config)
    preprocessing = config.preprocessing
    paths = {mode: output_path(config.output_dir, config.model_name, mode) for mode in config.modes}
    report_path = Path(config.output_dir) / "report.json"
    refuse_existing([*paths.values(), report_path], config.overwrite)

    model = load_keras_model(config.model_path)
    spec = describe_classifier(model, config.model_name)
    if not preprocessing.channel_count_fits(spec.channels):
        raise UsageError(
            f"the preprocessing has {len(preprocessing.scale)} scale and {len(preprocessing.offset)} offset values; "
            f"{spec.name} takes {spec.channels} channels"
        )
    size = ImageSize(spec.height, spec.width, spec.channels)
    warnings: list[str] = []

    calibration = None
    if config.needs_calibration:
        calibration = load_dataset(config.representative_data, size, config.num_calibration_samples, config.seed)
        warnings += [*calibration.warnings, *range_warnings(calibration, preprocessing, config.representative_data)]
    evaluation = None
    if config.eval_data is not None:
        evaluation = load_dataset(config.eval_data, size, require_labels=True)
        warnings += list(evaluation.warnings)
        if int(evaluation.labels.max()) >= spec.num_classes or int(evaluation.labels.min()) < 0:
            raise DataError(
                f"{config.eval_data}: labels run from {evaluation.labels.min()} to {evaluation.labels.max()}, "
                f"but {spec.name} has {spec.num_classes} classes"
            )
        if calibration is not None:
            refuse_overlap(evaluation, calibration)

    calibration_input = calibration.model_input(preprocessing) if calibration is not None else None
    converted = {}
    for mode in config.modes:
        content = convert_keras(model, mode, calibration_input, config.io_type, progress=progress)
        parsed = read_tflite(content, source=f"the {mode.value} model")
        verification = verify_variant(parsed, mode, config.io_type, spec.layer_names)
        verification.raise_for_failures()
        converted[mode] = (content, parsed, verification)

    keras_top1 = None
    eval_input = None
    if evaluation is not None:
        eval_input = evaluation.model_input(preprocessing)
        keras_top1 = top1(keras_scores(model, eval_input), evaluation.labels)

    # Measure everything before writing anything: an error or Ctrl-C while measuring leaves no file.
    results = []
    for mode, (content, parsed, verification) in converted.items():
        accuracy = top1(tflite_scores(content, eval_input), evaluation.labels) if evaluation is not None else None
        results.append(
            VariantResult(
                variant=mode.value,
                path=paths[mode],
                size_bytes=len(content),
                top1=accuracy,
                verification=verification,
                input=_tensor_info(parsed.input_tensors()[0]),
                output=_tensor_info(parsed.output_tensors()[0]),
            )
        )
    for mode, (content, _, _) in converted.items():
        atomic_write_bytes(paths[mode], content, overwrite=config.overwrite)
    report = ConvertReport(
        model=spec.name,
        output_dir=Path(config.output_dir),
        keras_top1=keras_top1,
        eval_samples=len(evaluation) if evaluation is not None else 0,
        calibration_samples=len(calibration) if calibration is not None else 0,
        preprocessing=preprocessing,
        variants=tuple(results),
        warnings=tuple(warnings),
    )
    atomic_write_json(report_path, report.to_dict(), overwrite=config.overwrite)
    return report
