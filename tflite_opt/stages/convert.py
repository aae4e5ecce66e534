"""Convert a Keras model to TensorFlow Lite: one model, one mode, bytes out.

:func:`convert_keras` is the plain conversion; :func:`calibrate_keras` and
:func:`quantize_calibrated` split full-int8 conversion in two, so a model
calibrated once can be quantized again with some layers kept in float. The whole
job (load, calibrate, convert, verify, measure, write) is
:func:`tflite_opt.jobs.convert.run_convert`.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

import numpy as np
from tqdm import tqdm

from tflite_opt.core import keras2
from tflite_opt.core.config import IoType, Mode
from tflite_opt.core.errors import ConversionError
from tflite_opt.core.quiet import native_stderr_silenced
from tflite_opt.stages.data import calibration_generator


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
    tf = keras2.tf
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
    tf = keras2.tf
    return {IoType.INT8: tf.int8, IoType.UINT8: tf.uint8, IoType.FLOAT32: tf.float32}[io_type]


@contextlib.contextmanager
def _converting(what: str) -> Iterator[TextIO]:
    """TensorFlow's native log silenced and its failures turned into one ConversionError.

    Yields the real stderr, for a progress bar.
    """
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
            converter.optimizations = [*converter.optimizations, keras2.tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
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
            operator with its float twin (for :mod:`tflite_opt.stages.layer_errors`; not a model to ship).

    Raises:
        ConversionError: the quantizer failed.
    """
    # Deferred: TensorFlow's converter internals; mlir_quantize has no public name.
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
