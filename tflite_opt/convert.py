"""Convert a Keras model to TensorFlow Lite; ``python -m tflite_opt.convert`` is the main job.

The library function is :func:`convert_keras` (one model, one mode, bytes out);
the whole job (load, calibrate, convert, verify, measure, write) is
:func:`tflite_opt.pipeline.run_convert`. The CLI only parses flags and calls it.
"""

from __future__ import annotations

import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tflite_opt.config import ConvertConfig, IoType, Mode
from tflite_opt.errors import ConversionError

_MODE_FLAGS = {
    "full-int8": Mode.FULL_INT8,
    "dynamic-range": Mode.DYNAMIC_RANGE,
    "float16": Mode.FLOAT16,
    "float32": Mode.FLOAT32,
}


def _converter_error_summary(exc: Exception) -> str:
    """The lines of a converter failure that say what went wrong, without MLIR locations."""
    text = str(exc)
    errors = [m.strip() for m in re.findall(r"error: (.+)", text)]
    distinct = list(dict.fromkeys(errors))
    if distinct:
        return "; ".join(distinct[:3])
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def convert_keras(
    model: Any,
    mode: Mode,
    calibration: np.ndarray | None = None,
    io_type: IoType = IoType.INT8,
    progress: bool = True,
    sparse_weights: bool = False,
) -> bytes:
    """Convert a Keras model with TFLiteConverter and return the .tflite bytes.

    Args:
        model: a tf_keras model.
        mode: float32 (plain), dynamic-range, float16, or full-int8.
        calibration: float32 model input (N, H, W, C) for full-int8, fed one sample at a time.
        io_type: input and output type of a full-int8 model.
        progress: show a progress bar over calibration samples on a terminal.
        sparse_weights: add ``Optimize.EXPERIMENTAL_SPARSITY``: store pruned weights in a sparse
            format (smaller raw file; XNNPACK cannot run sparse fully-connected layers).

    Raises:
        ConversionError: the converter failed, or full-int8 was asked without calibration data.
    """
    from tflite_opt.keras2 import tf
    from tflite_opt.quiet import native_stderr_silenced
    from tflite_opt.representative import calibration_generator

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode is not Mode.FLOAT32:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if sparse_weights:
        converter.optimizations = [*converter.optimizations, tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    if mode is Mode.FLOAT16:
        converter.target_spec.supported_types = [tf.float16]
    if mode is Mode.FULL_INT8:
        if calibration is None or len(calibration) == 0:
            raise ConversionError("full-int8 conversion needs calibration samples")

        def representative_dataset():
            from tqdm import tqdm

            # disable=None: a bar on a terminal, nothing in logs or pipes.
            yield from tqdm(
                calibration_generator(calibration),
                total=len(calibration),
                desc="calibrating",
                unit="img",
                file=terminal,
                disable=None if progress else True,
                leave=False,
            )

        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        tf_type = {IoType.INT8: tf.int8, IoType.UINT8: tf.uint8, IoType.FLOAT32: tf.float32}[io_type]
        converter.inference_input_type = tf_type
        converter.inference_output_type = tf_type
    try:
        with warnings.catch_warnings(), native_stderr_silenced() as terminal:
            # "Statistics for quantized inputs were expected": the representative dataset provides them.
            warnings.simplefilter("ignore", UserWarning)
            return bytes(converter.convert())
    except Exception as exc:  # the converter raises ConverterError and assorted runtime errors
        raise ConversionError(
            f"{mode.value} conversion of {model.name} failed: {_converter_error_summary(exc)}"
        ) from exc


def _define_flags(flag_values):
    from absl import flags

    from tflite_opt.cli import define_preprocessing_flags, define_unsafe_flag
    from tflite_opt.prune import define_pruning_flags

    def group(name):
        return {"flag_values": flag_values, "module_name": name}

    modes = group("Modes (one flag per mode; float32 is always produced as the reference)")
    flags.DEFINE_bool(
        "full-int8", False, "Full-integer int8 model calibrated on representative data (the default).", **modes
    )
    flags.DEFINE_bool("dynamic-range", False, "int8 weights, float activations; no calibration needed.", **modes)
    flags.DEFINE_bool("float16", False, "float16 weights.", **modes)
    flags.DEFINE_bool("float32", False, "Plain float32 conversion only.", **modes)

    model = group("Model")
    flags.DEFINE_string(
        "model", None, "Keras model: .keras, .h5 or a SavedModel folder. Default: the embedded MNIST CNN.", **model
    )

    define_unsafe_flag(flag_values, "Model")

    data = group("Calibration and evaluation data")
    flags.DEFINE_string(
        "representative-data", None, "Calibration images (folder, flat or per class) or .npy/.npz.", **data
    )
    flags.DEFINE_string(
        "eval-data", None, "Held-out labelled data: one subfolder per class, or .npz with x and y.", **data
    )
    flags.DEFINE_integer("num-calibration-samples", 200, "Calibration samples to draw.", lower_bound=1, **data)
    flags.DEFINE_integer("seed", 0, "Seed of the calibration draw.", **data)

    define_preprocessing_flags(flag_values)
    define_pruning_flags(flag_values)
    flags.DEFINE_bool(
        "sparse-format",
        False,
        "With --prune, also write <variant>-sparse with tf.lite.Optimize.EXPERIMENTAL_SPARSITY.",
        flag_values=flag_values,
        module_name="Pruning (tensorflow-model-optimization)",
    )
    flags.DEFINE_string(
        "train-data", None, "Labelled training data for pruning's fine-tuning (per-class folder or .npz).", **data
    )

    output = group("Output")
    flags.DEFINE_string(
        "model-version", "1", "Version recorded in each bundle's manifest and used by publish.", **output
    )
    flags.DEFINE_string("labels", None, "Class names, one per line. Default: the --eval-data folder names.", **output)
    flags.DEFINE_string("output-dir", "artifacts", "Folder for <model>.<variant>.tflite and report.json.", **output)
    flags.DEFINE_enum(
        "io-type", IoType.INT8.value, [t.value for t in IoType], "Input/output type of the full-int8 model.", **output
    )
    flags.DEFINE_bool("overwrite", False, "Replace existing output files.", **output)
    flags.DEFINE_bool("verbose", False, "Show tracebacks and TensorFlow's own log.", **output)


def config_from_flags(fv) -> ConvertConfig:
    """Turn parsed flags into a validated ConvertConfig."""
    from tflite_opt.cli import preprocessing_from_flags
    from tflite_opt.prune import prune_config_from_flags

    modes = tuple(mode for flag, mode in _MODE_FLAGS.items() if fv[flag].value) or (Mode.FULL_INT8,)

    def path(name: str) -> Path | None:
        return Path(fv[name].value) if fv[name].value else None

    return ConvertConfig(
        modes=modes,
        model_path=path("model"),
        representative_data=path("representative-data"),
        eval_data=path("eval-data"),
        output_dir=Path(fv["output-dir"].value),
        io_type=IoType(fv["io-type"].value),
        preprocessing=preprocessing_from_flags(fv),
        prune=prune_config_from_flags(fv),
        train_data=path("train-data"),
        sparse_format=fv["sparse-format"].value,
        allow_unsafe_deserialization=fv["allow-unsafe-deserialization"].value,
        model_version=fv["model-version"].value,
        labels_file=path("labels"),
        num_calibration_samples=fv["num-calibration-samples"].value,
        seed=fv["seed"].value,
        overwrite=fv["overwrite"].value,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the convert CLI on ``argv`` (without the program name); returns the exit code."""
    from tflite_opt.cli import run_cli

    return run_cli("tflite_opt.convert", argv, _define_flags, _run)


def _run(fv) -> int:
    from tflite_opt.pipeline import run_convert
    from tflite_opt.report import format_table
    from tflite_opt.version_check import preflight

    config = config_from_flags(fv)
    for warning in preflight():
        print(f"warning: {warning}", file=sys.stderr)
    report = run_convert(config, progress=True)
    print(format_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
