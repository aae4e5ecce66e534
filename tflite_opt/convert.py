"""Convert a Keras model to TensorFlow Lite; ``python -m tflite_opt.convert`` is the main job.

The library function is :func:`convert_keras` (one model, one mode, bytes out);
the whole job (load, calibrate, convert, verify, measure, write) is
:func:`tflite_opt.pipeline.run_convert`. The CLI only parses flags and calls it.
"""

from __future__ import annotations

import contextlib
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from tflite_opt.config import DEFAULT_SPARSITY_GRID, ConvertConfig, IoType, Mode, SearchConfig
from tflite_opt.errors import ConversionError, UsageError

# Everything was written, but no candidate met --max-accuracy-drop.
EXIT_BUDGET_MISSED = 3

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


def _converter(
    model: Any,
    mode: Mode,
    calibration: np.ndarray | None,
    io_type: IoType,
    per_tensor: bool,
    progress_file: TextIO | None,
):
    """A TFLiteConverter set up for ``mode``; calibration shows a bar on ``progress_file`` (None: no bar)."""
    from tflite_opt.keras2 import tf
    from tflite_opt.representative import calibration_generator

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode is not Mode.FLOAT32:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    # Some accelerators only run one scale per weight tensor; the option has no public name.
    converter._experimental_disable_per_channel = per_tensor
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
                file=progress_file,
                disable=None if progress_file is not None else True,
                leave=False,
            )

        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = _tf_type(io_type)
        converter.inference_output_type = _tf_type(io_type)
    return converter


def _tf_type(io_type: IoType) -> Any:
    from tflite_opt.keras2 import tf

    return {IoType.INT8: tf.int8, IoType.UINT8: tf.uint8, IoType.FLOAT32: tf.float32}[io_type]


@contextlib.contextmanager
def _converting(what: str):
    """TensorFlow's native log silenced and its failures turned into one ConversionError.

    Yields the real stderr, for a progress bar.
    """
    from tflite_opt.quiet import native_stderr_silenced

    try:
        with warnings.catch_warnings(), native_stderr_silenced() as terminal:
            # "Statistics for quantized inputs were expected": the representative dataset provides them.
            warnings.simplefilter("ignore", UserWarning)
            yield terminal
    except ConversionError:
        raise
    except Exception as exc:  # the converter raises ConverterError and assorted runtime errors
        raise ConversionError(f"{what} failed: {_converter_error_summary(exc)}") from exc


def convert_keras(
    model: Any,
    mode: Mode,
    calibration: np.ndarray | None = None,
    io_type: IoType = IoType.INT8,
    progress: bool = True,
    sparse_weights: bool = False,
    per_tensor: bool = False,
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
        per_tensor: one quantization scale per weight tensor instead of one per output channel.

    Raises:
        ConversionError: the converter failed, or full-int8 was asked without calibration data.
    """
    with _converting(f"{mode.value} conversion of {model.name}") as terminal:
        converter = _converter(model, mode, calibration, io_type, per_tensor, terminal if progress else None)
        if sparse_weights:
            from tflite_opt.keras2 import tf

            converter.optimizations = [*converter.optimizations, tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
        return bytes(converter.convert())


def calibrate_keras(model: Any, calibration: np.ndarray, progress: bool = True) -> bytes:
    """A float .tflite model carrying the activation ranges seen on ``calibration``.

    Quantizing it (:func:`quantize_calibrated`) gives what ``convert_keras(..., Mode.FULL_INT8)``
    gives, and it can be quantized again with other layers kept in float without calibrating again.
    """
    with _converting(f"calibration of {model.name}") as terminal:
        converter = _converter(model, Mode.FULL_INT8, calibration, IoType.INT8, False, terminal if progress else None)
        converter._experimental_calibrate_only = True  # the step the converter runs before quantizing
        return bytes(converter.convert())


def quantize_calibrated(
    calibrated: bytes,
    io_type: IoType = IoType.INT8,
    per_tensor: bool = False,
    float_nodes: Sequence[str] = (),
    numeric_verify: bool = False,
) -> bytes:
    """Quantize a calibrated model to full-int8, keeping the operators that write ``float_nodes`` in float.

    Args:
        calibrated: the output of :func:`calibrate_keras`.
        io_type: input and output type.
        per_tensor: one scale per weight tensor.
        float_nodes: output tensor names (as in the calibrated model) of operators to leave in float.
        numeric_verify: add TensorFlow's NumericVerify operators, which compare each quantized
            operator with its float twin (for :mod:`tflite_opt.debug`; not a model to ship).

    Raises:
        ConversionError: the quantizer failed.
    """
    from tensorflow.lite.python import convert as tflite_convert

    with _converting("full-int8 quantization"):
        return bytes(
            tflite_convert.mlir_quantize(
                calibrated,
                disable_per_channel=per_tensor,
                fully_quantize=True,
                input_data_type=_tf_type(io_type),
                output_data_type=_tf_type(io_type),
                enable_numeric_verify=numeric_verify,
                denylisted_nodes=list(float_nodes) or None,
            )
        )


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

    search = group("Accuracy budget (search for the smallest full-int8 model within it)")
    flags.DEFINE_float(
        "max-accuracy-drop",
        None,
        "Top-1 points the model may lose against Keras on --eval-data. Keeps the worst int8 layers in float "
        "while full-int8 loses more; with --prune, also searches the highest sparsity within it.",
        **search,
    )
    flags.DEFINE_list(
        "sparsity-grid",
        [str(s) for s in DEFAULT_SPARSITY_GRID],
        "Sparsities the search tries, ascending, each continuing from the last.",
        **search,
    )
    flags.DEFINE_integer("max-float-layers", 3, "At most this many layers kept in float.", lower_bound=0, **search)
    flags.DEFINE_bool(
        "refine", True, "One bisection step between the best sparsity within budget and the next.", **search
    )
    flags.DEFINE_bool(
        "per-tensor",
        False,
        "One int8 scale per weight tensor (some accelerators need it) instead of one per output channel. "
        "Without a search, the per-channel int8 model is measured too, to show the cost.",
        **search,
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
    search = None
    if fv["max-accuracy-drop"].value is not None:
        try:
            grid = tuple(float(level) for level in fv["sparsity-grid"].value)
        except ValueError as exc:
            raise UsageError(f"--sparsity-grid takes numbers such as 0.5,0.7,0.9: {exc}") from exc
        search = SearchConfig(
            max_accuracy_drop=fv["max-accuracy-drop"].value,
            sparsities=grid,
            max_float_layers=fv["max-float-layers"].value,
            refine=fv["refine"].value,
        )

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
        search=search,
        per_tensor=fv["per-tensor"].value,
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
    if report.search is not None and not report.search.met:
        return EXIT_BUDGET_MISSED
    return 0


if __name__ == "__main__":
    sys.exit(main())
