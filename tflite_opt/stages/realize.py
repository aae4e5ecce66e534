"""One road from a variant's recipe to a verified file: convert (or quantize a calibrated model), add the TFLite
Metadata, read, verify, check that fine-tuning's zeros and shared values survived, raise on the first failure. The
convert job and the search both take it, so the bytes verified, measured, hashed and written are the bytes with
metadata."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tflite_opt.core.config import IoType, Mode
from tflite_opt.core.preprocessing import PIXELS, Preprocessing
from tflite_opt.core.tflite_file import read_tflite
from tflite_opt.core.variant import VariantSpec
from tflite_opt.results.files import Check, Verified
from tflite_opt.results.tuning import NOT_TUNED, FineTuned
from tflite_opt.stages.convert import (
    PIXEL_RANGE,
    calibrate_keras,
    convert_keras,
    pixel_input_model,
    quantize_calibrated,
)
from tflite_opt.stages.data import Dataset
from tflite_opt.stages.layer_errors import float_nodes, layer_nodes
from tflite_opt.stages.load import ClassifierSpec
from tflite_opt.stages.metadata import MetadataSpec, metadata_check, with_metadata
from tflite_opt.stages.verify import fine_tuning_kept, pixel_input_check, verify_variant
from tflite_opt.stages.xnnpack import COMPARED_IMAGES, faster_hard_swish, int8_hard_swish_count


@dataclass(frozen=True)
class Calibration:
    """The calibration samples, normalized once: as the model takes them, and as pixels (0..255) for a model
    that normalizes inside."""

    model_input: np.ndarray
    pixels: np.ndarray
    preprocessing: Preprocessing

    @classmethod
    def of(cls, dataset: Dataset, preprocessing: Preprocessing) -> Calibration:
        return cls(dataset.model_input(preprocessing), dataset.model_input(PIXELS), preprocessing)

    def samples(self, pixel_input: bool) -> np.ndarray:
        """The samples as a model taking pixels (``pixel_input``) or normalized input takes them."""
        return self.pixels if pixel_input else self.model_input


@dataclass(frozen=True)
class Target:
    """What every variant of a run is checked against: the I/O type asked for and the Keras model's layers; and
    what each file's TFLite Metadata says (none without ``metadata``)."""

    io_type: IoType
    classifier: ClassifierSpec
    progress: bool = False
    metadata: MetadataSpec | None = None


def source_model(spec: VariantSpec, model: Any, tuned: FineTuned) -> Any:
    """The Keras model a variant is converted from: the quantization-aware one, the pruned and/or clustered one,
    or ``model`` as it came."""
    if spec.qat is not None:
        return tuned.qat.model
    return tuned.model(model) if spec.fine_tuned else model


def calibrate(model: Any, calibration: Calibration, pixel_input: bool, progress: bool = False) -> bytes:
    """``model`` calibrated for full int8 (with the normalization in front, taking pixels, with ``pixel_input``):
    quantized by :func:`realize` with any layers kept in float, without calibrating again."""
    if pixel_input:
        wrapped = pixel_input_model(model, calibration.preprocessing)
        return calibrate_keras(wrapped, calibration.pixels, progress, input_range=PIXEL_RANGE)
    return calibrate_keras(model, calibration.model_input, progress)


def realize(
    spec: VariantSpec,
    source: Any,
    calibration: Calibration | None,
    target: Target,
    tuned: FineTuned = NOT_TUNED,
    calibrated: bytes | None = None,
) -> Verified:
    """The verified file of ``spec``, converted from ``source`` (see :func:`source_model`).

    Args:
        calibration: needed for full int8.
        tuned: what ``source`` was fine-tuned into; a pruned or clustered variant's zeros and shared values are
            checked in the file.
        calibrated: ``source`` already calibrated (:func:`calibrate`): post-training full int8 is then
            quantized from it.

    Raises:
        ConversionError: the converter failed.
        VerificationError: the file is not what ``spec`` asks for.
    """
    content = _converted(spec, source, calibration, target, calibrated)
    content, xnnpack = _xnnpack_ready(content, spec, source, calibration)
    if target.metadata is not None:
        content = with_metadata(content, target.metadata, spec)
    parsed = read_tflite(content, source=f"the {spec.name} model")
    verification = replace(
        verify_variant(parsed, spec.mode, target.io_type, target.classifier.layer_scopes, spec.float_layers),
        variant=spec.name,
    )
    if target.metadata is not None:
        verification = verification.with_check(metadata_check(content, parsed, target.metadata))
    if spec.pixel_input:
        verification = verification.with_check(pixel_input_check(parsed, target.io_type))
    if spec.fine_tuned:
        verification = fine_tuning_kept(verification, parsed, tuned, target.classifier)
    if xnnpack is not None:
        verification = verification.with_check(xnnpack)
    verification.raise_for_failures()
    return Verified(content, parsed, verification, spec.pixel_input)


def _xnnpack_ready(
    content: bytes, spec: VariantSpec, source: Any, calibration: Calibration | None
) -> tuple[bytes, Check | None]:
    """A full-int8 file with int8 HARD_SWISH, rewritten so that XNNPACK runs it whole where that is faster and as
    faithful (:func:`~tflite_opt.stages.xnnpack.faster_hard_swish`, judged on calibration images against the float
    model); anything else as it is, with no check."""
    if spec.mode is not Mode.FULL_INT8 or calibration is None:
        return content, None
    parsed = read_tflite(content, source=f"the {spec.name} model")
    if not int8_hard_swish_count(parsed):
        return content, None
    samples = calibration.samples(spec.pixel_input)[:COMPARED_IMAGES]
    reference = np.asarray(source.predict(calibration.model_input[:COMPARED_IMAGES], verbose=0))
    return faster_hard_swish(content, parsed, samples, reference)


def _converted(
    spec: VariantSpec, source: Any, calibration: Calibration | None, target: Target, calibrated: bytes | None
) -> bytes:
    post_training_int8 = spec.mode is Mode.FULL_INT8 and spec.qat is None
    if post_training_int8 and (calibrated is not None or spec.pixel_input or spec.float_layers):
        calibrated = calibrated or calibrate(source, calibration, spec.pixel_input, target.progress)
        keep = []
        if spec.float_layers:
            nodes = layer_nodes(read_tflite(calibrated, source="the calibrated model"), target.classifier.layer_scopes)
            keep = float_nodes(nodes, spec.float_layers)
        return quantize_calibrated(
            calibrated, target.io_type, spec.per_tensor, keep, sparse_weights=spec.sparse_weights
        )
    return convert_keras(
        source,
        spec.mode,
        calibration.model_input if calibration is not None else None,
        target.io_type,
        target.progress,
        sparse_weights=spec.sparse_weights,
        per_tensor=spec.per_tensor,
    )
