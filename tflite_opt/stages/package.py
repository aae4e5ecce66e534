"""Deployment bundles: beside each .tflite, a manifest, the labels and the app's pre/post-processing.

The most common mobile failure is a preprocessing or quantization mismatch
between training and the app, so every number an app needs is written down
here, read from the converted file (tensor shapes, scales, zero points) or the
measurement (top-1, latency, verdict), never retyped.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from tflite_opt.core.errors import DataError
from tflite_opt.core.fileio import atomic_write_bytes, atomic_write_json
from tflite_opt.core.interpreter import INTEGER_RANGES, ROUNDING
from tflite_opt.core.preprocessing import PIXELS, Preprocessing, app_input
from tflite_opt.core.shipping import AppCode, Resize
from tflite_opt.core.tflite_file import read_tflite
from tflite_opt.core.version import __version__
from tflite_opt.results.files import BundlePaths
from tflite_opt.results.report import ConvertReport, VariantResult
from tflite_opt.stages.app_code import DEFAULT_NAMES
from tflite_opt.stages.kotlin_code import kotlin_source
from tflite_opt.stages.metadata import clients, file_metadata, labels_text
from tflite_opt.stages.swift_code import swift_source

MANIFEST_SCHEMA_VERSION = 1


def sha256_of(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def build_manifest(
    report: ConvertReport,
    variant: VariantResult,
    content: bytes,
    labels: list[str],
    model_version: str,
    golden: bool = False,
) -> dict[str, Any]:
    """The manifest of one variant, from its measured result and the file's bytes (``golden``: with golden
    vectors beside it)."""
    parsed = read_tflite(content, source=variant.path.name)
    metadata = file_metadata(parsed)
    input_info, output_info = variant.input.to_dict(), variant.output.to_dict()
    output_info["dequantize"] = (
        f"score = (q - {output_info['zero_point']}) * {output_info['scale']!r}"
        if output_info["dtype"] in INTEGER_RANGES
        else "none: the model gives float32 scores"
    )
    # int8 scores tie often; the benchmark breaks ties as argmax does.
    output_info["top1"] = "the first class with the highest score (the lowest index where scores tie)"
    return {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "model": report.model,
        "version": model_version,
        "variant": variant.variant,
        "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "tool": {"name": "tflite_opt", "version": __version__},
        "tensorflow": _tensorflow_version(),
        "file": {"name": variant.path.name, "sha256": sha256_of(content), "size_bytes": len(content)},
        "labels_file": BundlePaths.beside(variant.path).labels.name,
        "labels": labels,
        "golden_file": BundlePaths.beside(variant.path).golden.name if golden else None,
        "input": input_info,
        "preprocessing": _preprocessing(report.preprocessing, variant, input_info, report.resize),
        "output": output_info,
        "metrics": _metrics(report, variant),
        # What was checked in the file and what was done to it (an int8 HARD_SWISH rewritten for XNNPACK, ...).
        "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in variant.verification.checks],
        # Read back from the file: what its TFLite Metadata says, and which app runtimes take it as it is.
        "tflite_metadata": metadata.to_dict() if metadata is not None else None,
        "clients": {client.kind.value: client.to_dict() for client in clients(parsed)},
    }


def _resize(resize: Resize, height: int, width: int) -> dict[str, Any]:
    """How a picture becomes the model's size, as the benchmark did it."""
    crop = (
        f"crop the largest centred box of aspect {width}:{height}: crop_width = min(W, H * {width} // {height}), "
        f"crop_height = min(H, W * {height} // {width}), left = (W - crop_width) // 2, top = (H - crop_height) // 2 "
        "(integer division), then scale"
        if resize is Resize.CENTER_CROP
        else "scale the whole picture, whatever its aspect ratio"
    )
    return {
        "height": height,
        "width": width,
        "policy": resize.value,
        "rule": crop,
        "method": "bilinear (Pillow's, antialiased when shrinking)",
    }


def _preprocessing(
    prep: Preprocessing | None, variant: VariantResult, input_info: dict[str, Any], resize: Resize
) -> dict[str, Any]:
    """What an app does to a picture before the model sees it, every constant read from the file."""
    channels = variant.input.shape[-1]
    normalization = prep or PIXELS
    app = app_input(variant.pixel_input, normalization)
    scale, offset = (list(values) for values in app.per_channel())
    steps = {
        "layout": "NHWC",
        "resize": _resize(resize, variant.input.shape[1], variant.input.shape[2]),
        "channel_order": {1: "grayscale", 3: "RGB", 4: "RGBA"}.get(channels, f"{channels} channels"),
        "pixel_range": [0, 255],
        "in_model": variant.pixel_input,
        "scale": scale,
        "offset": offset,
        "mean": [-o / s for s, o in zip(scale, offset, strict=True)],
        "std": [1.0 / s for s in scale],
        "float_formula": "x = pixel * scale + offset  (equivalently (pixel - mean) / std)",
        "integer_formula": _integer_formula(input_info, variant.pixel_input),
        "rounding": ROUNDING,
        "arithmetic": (
            "float32: x = float32(pixel) * scale[c] + offset[c] (a multiply, then an add; no fused multiply-add), "
            "then x / input scale, rounded as 'rounding' says"
        ),
    }
    if variant.pixel_input:
        steps["normalization_in_model"] = {**normalization.to_dict(), "formula": normalization.describe()}
    return steps


def _integer_formula(input_info: dict[str, Any], pixel_input: bool) -> str:
    dtype = input_info["dtype"]
    if dtype not in INTEGER_RANGES:
        return "none: the model takes float32 input x"
    if pixel_input:
        return "q = pixel: copy the bytes" if dtype == "uint8" else "q = pixel - 128: the bytes, shifted"
    low, high = INTEGER_RANGES[dtype]
    return (
        f"q = clamp(round(x / {input_info['scale']!r}) + {input_info['zero_point']}, {low}, {high}), round = {ROUNDING}"
    )


def _metrics(report: ConvertReport, variant: VariantResult) -> dict[str, Any]:
    """What was measured of the variant, as the report has it."""
    accuracy = variant.accuracy
    return {
        "top1": variant.top1 if report.labelled else None,
        "top5": accuracy.top5 if accuracy and report.labelled else None,
        "agreement": accuracy.agreement if accuracy else None,
        "evaluation": "accuracy" if report.labelled else "fidelity to the float model (no labels)",
        "eval_samples": report.eval_samples,
        "latency_ms_p50": variant.latency.p50,
        "cpu_ms_p50": variant.latency.cpu_p50,
        "num_threads": variant.latency.num_threads,
        "verdict": variant.verdict.label,
        "verdict_reason": variant.verdict.reason,
        "verdict_trusted": report.reference_warning is None,
    }


def _tensorflow_version() -> str:
    try:
        return version("tensorflow")
    except PackageNotFoundError:
        return "unknown"


def write_bundle(
    report: ConvertReport,
    variant: VariantResult,
    content: bytes,
    labels: list[str],
    model_version: str,
    overwrite: bool,
    golden: dict[str, Any] | None = None,
    app_code: AppCode = DEFAULT_NAMES,
) -> BundlePaths:
    """Write a variant's manifest, the model's labels, the Kotlin/Swift helpers and its ``golden`` vectors
    (:func:`~tflite_opt.stages.golden.golden_vectors`), atomically."""
    paths = BundlePaths.beside(variant.path)
    manifest = build_manifest(report, variant, content, labels, model_version, golden=golden is not None)
    if golden is not None:
        atomic_write_json(paths.golden, golden, overwrite=overwrite)
    atomic_write_bytes(paths.labels, labels_text(labels), overwrite=True)
    atomic_write_bytes(paths.kotlin, kotlin_source(manifest, app_code).encode("utf-8"), overwrite=overwrite)
    atomic_write_bytes(paths.swift, swift_source(manifest, app_code).encode("utf-8"), overwrite=overwrite)
    atomic_write_json(paths.manifest, manifest, overwrite=overwrite)
    return paths


def read_manifest(path: Path) -> dict[str, Any]:
    """A bundle's manifest.

    Raises:
        DataError: the file is not readable JSON, naming it.
    """
    try:
        manifest = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is damaged or unreadable: {exc}; convert again") from exc
    if not isinstance(manifest, dict):
        raise DataError(f"{path} is damaged: not a JSON object; convert again")
    return manifest
