"""Convert a Keras model to TensorFlow Lite: one model, one mode, bytes out.

:func:`convert_keras` is the plain conversion; :func:`calibrate_keras` and
:func:`quantize_calibrated` split full-int8 conversion in two, so a model
calibrated once can be quantized again with some layers kept in float. The whole
job (load, calibrate, convert, verify, measure, write) is
:func:`tflite_opt.jobs.convert.run_convert`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

import numpy as np
from tqdm import tqdm

from tflite_opt.core import keras2
from tflite_opt.core.config import IoType, Mode
from tflite_opt.core.errors import ConversionError
from tflite_opt.core.interpreter import round_half_away_from_zero
from tflite_opt.core.keras3 import keras_of
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.core.quiet import native_stderr_silenced
from tflite_opt.core.tflite_file import set_input_range
from tflite_opt.results.inputs import PixelInputChoice
from tflite_opt.stages.data import calibration_generator

log = logging.getLogger(__name__)


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
    printed = io.StringIO()
    try:
        # stdout: the converter exports a Keras 3 model first, and the export prints its endpoints.
        with (
            warnings.catch_warnings(),
            native_stderr_silenced() as terminal,
            contextlib.redirect_stdout(printed),
            keras2.releasing_traced_gradients(),  # each conversion of EfficientNetB0 kept 300-450 MB otherwise
        ):
            # "Statistics for quantized inputs were expected": the representative dataset provides them.
            warnings.simplefilter("ignore", UserWarning)
            yield terminal
    except ConversionError:
        raise
    except Exception as exc:  # the converter raises ConverterError and assorted runtime errors
        raise ConversionError(f"{what} failed: {_converter_error_summary(exc)}") from exc
    finally:
        if printed.getvalue().strip():
            log.debug("%s printed: %s", what, printed.getvalue().strip())


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


def calibrate_keras(
    model: Any, calibration: np.ndarray, progress: bool = True, input_range: tuple[float, float] | None = None
) -> bytes:
    """A float .tflite model carrying the activation ranges seen on ``calibration``.

    Quantizing it (:func:`quantize_calibrated`) gives what ``convert_keras(..., Mode.FULL_INT8)``
    gives, and it can be quantized again with other layers kept in float without calibrating again.

    Args:
        model: a tf_keras model.
        calibration: float32 model input (N, H, W, C).
        progress: a progress bar over the samples on a terminal.
        input_range: the range to record for the input instead of the one seen (pixels: 0..255, so the
            quantized input has scale 1).
    """
    with _converting(f"calibration of {model.name}") as terminal:
        converter = _converter(model, Mode.FULL_INT8, calibration, IoType.INT8, False, terminal if progress else None)
        converter._experimental_calibrate_only = True  # the step the converter runs before quantizing
        calibrated = bytes(converter.convert())
    return calibrated if input_range is None else set_input_range(calibrated, *input_range)


PIXEL_RANGE = (0.0, 255.0)


def pixel_input_model(model: Any, preprocessing: Preprocessing) -> Any:
    """``model`` with its normalization in front (a Rescaling layer): it takes pixels 0..255 as they are."""
    keras = keras_of(model)  # a Keras 3 model is wrapped in Keras 3
    scales, offsets = preprocessing.per_channel()
    pixels = keras.Input(tuple(model.inputs[0].shape[1:]), name="pixels")
    normalized = keras.layers.Rescaling(
        scale=list(scales) if len(scales) > 1 else scales[0],
        offset=list(offsets) if len(offsets) > 1 else offsets[0],
        name="normalize",
    )(pixels)
    return keras.Model(pixels, model(normalized), name=model.name)


def convert_pixel_input(
    model: Any,
    preprocessing: Preprocessing,
    pixels: np.ndarray,
    io_type: IoType = IoType.INT8,
    per_tensor: bool = False,
    progress: bool = True,
    sparse_weights: bool = False,
) -> bytes:
    """A full-int8 model that takes camera pixels as they are: the normalization is the model's first
    operator and the input has scale 1 (uint8: the pixel; int8: pixel - 128), so an app copies bytes and
    rounds nothing.

    Args:
        model: the tf_keras model, taking normalized input.
        preprocessing: how pixels become its input.
        pixels: calibration images as pixels 0..255 (float32), not normalized.
        io_type: int8 or uint8.
        per_tensor: one scale per weight tensor.
        progress: a progress bar over the samples on a terminal.
        sparse_weights: store pruned weights sparsely.
    """
    wrapped = pixel_input_model(model, preprocessing)
    calibrated = calibrate_keras(wrapped, pixels, progress, input_range=PIXEL_RANGE)
    return quantize_calibrated(calibrated, io_type, per_tensor, sparse_weights=sparse_weights)


def choose_pixel_input(
    asked: bool | None,
    io_type: IoType,
    integer_io: bool,
    preprocessing: Preprocessing,
    calibration: np.ndarray | None,
    channels: int,
) -> PixelInputChoice:
    """Whether the full-int8 models take pixels: as ``asked`` (--raw-pixel-input) says, else for uint8 input
    (camera bytes, as MediaPipe Tasks feeds them), else exactly when quantizing the normalized input
    (``calibration``: the normalized calibration samples) of a model with integer input (``integer_io``) would
    put pixel values on rounding ties."""
    ties = 0
    if integer_io and calibration is not None:
        scale, _ = predicted_input_quantization(calibration)
        ties = rounding_ties(preprocessing, scale, channels)
    uint8_bytes = integer_io and io_type is IoType.UINT8
    chosen = asked if asked is not None else (uint8_bytes or (integer_io and ties > 0))
    return PixelInputChoice(bool(chosen), ties, asked, preprocessing, channels, uint8_bytes)


def prefer_pixel_input(pixels_score: float, normalized_score: float) -> bool:
    """Ship pixel input unless taking the normalized input scored better on the held-out data: on a tie, pixels,
    since an app that copies bytes rounds nothing."""
    return pixels_score >= normalized_score


def predicted_input_quantization(calibration: np.ndarray) -> tuple[float, int]:
    """The int8 (scale, zero point) the converter gives an input whose calibration samples are
    ``calibration``: the range, widened to include 0, over 255 steps, the zero point rounded half away from
    zero (checked against the converter in the tests)."""
    low, high = min(np.float32(calibration.min()), np.float32(0)), max(np.float32(calibration.max()), np.float32(0))
    scale = float((high - low) / np.float32(255)) or 1.0  # in float32, as the converter computes it
    zero_point = int(np.clip(round_half_away_from_zero(np.array(-128.0 - float(low) / scale)), -128, 127))
    return scale, zero_point


def rounding_ties(preprocessing: Preprocessing, scale: float, channels: int, tolerance: float = 1e-4) -> int:
    """How many (channel, pixel value) pairs an app would quantize on a rounding tie: ``x / scale`` within
    ``tolerance`` of a half step, where numpy, Kotlin and Swift round differently unless told one rule.

    ``x = pixel * scale_c + offset_c`` in float32, as the manifest tells an app to compute it.
    """
    scales, offsets = preprocessing.per_channel()
    pixels = np.arange(256, dtype=np.float32)
    ties = 0
    for channel in range(channels):
        c = channel if len(scales) > 1 else 0
        x = pixels * np.float32(scales[c]) + np.float32(offsets[c])
        steps = x / np.float32(scale)
        ties += int(np.sum(np.abs(steps - np.floor(steps) - 0.5) < tolerance))
    return ties


def quantize_calibrated(
    calibrated: bytes,
    io_type: IoType = IoType.INT8,
    per_tensor: bool = False,
    float_nodes: Sequence[str] = (),
    numeric_verify: bool = False,
    sparse_weights: bool = False,
) -> bytes:
    """Quantize a calibrated model to full-int8, keeping the operators that write ``float_nodes`` in float.

    Args:
        calibrated: the output of :func:`calibrate_keras`.
        io_type: input and output type.
        per_tensor: one scale per weight tensor.
        float_nodes: output tensor names (as in the calibrated model) of operators to leave in float.
        numeric_verify: add TensorFlow's NumericVerify operators, which compare each quantized
            operator with its float twin (for :mod:`tflite_opt.stages.layer_errors`; not a model to ship).
        sparse_weights: then store pruned weights sparsely, as ``Optimize.EXPERIMENTAL_SPARSITY`` does.

    Raises:
        ConversionError: the quantizer failed.
    """
    # Deferred: TensorFlow's converter internals; mlir_quantize has no public name.
    from tensorflow.lite.python import convert as tflite_convert

    with _converting("full-int8 quantization"):
        # fully_quantize=False, as TensorFlow's converter calls it: the I/O types are then the ones asked for
        # (with True, the I/O would be int8 whatever was asked).
        quantized = tflite_convert.mlir_quantize(
            calibrated,
            disable_per_channel=per_tensor,
            fully_quantize=False,
            input_data_type=_tf_type(io_type),
            output_data_type=_tf_type(io_type),
            enable_numeric_verify=numeric_verify,
            denylisted_nodes=list(float_nodes) or None,
        )
        return bytes(tflite_convert.mlir_sparsify(quantized) if sparse_weights else quantized)
