"""Deployment bundles: beside each .tflite, a manifest, the labels and the app's pre/post-processing.

The most common mobile failure is a preprocessing or quantization mismatch
between training and the app, so every number an app needs is written down
here, read from the converted file (tensor shapes, scales, zero points) or the
measurement (top-1, latency, verdict), never retyped.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from tflite_opt.core.errors import DataError
from tflite_opt.core.fileio import atomic_write_bytes, atomic_write_json
from tflite_opt.core.interpreter import INTEGER_RANGES, ROUNDING
from tflite_opt.core.preprocessing import PIXELS, Preprocessing
from tflite_opt.core.tflite_file import read_tflite
from tflite_opt.core.version import __version__
from tflite_opt.results.report import ConvertReport, VariantResult
from tflite_opt.stages.metadata import clients, file_metadata, labels_file_name, labels_text

MANIFEST_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class BundlePaths:
    """The files of one variant's bundle (labels are shared by a model's variants)."""

    model: Path
    manifest: Path
    labels: Path
    kotlin: Path
    swift: Path

    @classmethod
    def beside(cls, tflite: Path) -> BundlePaths:
        stem = tflite.name[: -len(".tflite")]
        model_name = stem.split(".")[0]
        return cls(
            model=tflite,
            manifest=tflite.with_name(f"{stem}.manifest.json"),
            labels=tflite.with_name(labels_file_name(model_name)),
            kotlin=tflite.with_name(f"{stem}.kt"),
            swift=tflite.with_name(f"{stem}.swift"),
        )

    def extras(self) -> list[Path]:
        return [self.manifest, self.labels, self.kotlin, self.swift]


def sha256_of(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def build_manifest(
    report: ConvertReport, variant: VariantResult, content: bytes, labels: list[str], model_version: str
) -> dict[str, Any]:
    """The manifest of one variant, from its measured result and the file's bytes."""
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
        "input": input_info,
        "preprocessing": _preprocessing(report.preprocessing, variant, input_info),
        "output": output_info,
        "metrics": _metrics(report, variant),
        # Read back from the file: what its TFLite Metadata says, and which app runtimes take it as it is.
        "tflite_metadata": metadata.to_dict() if metadata is not None else None,
        "clients": {client.kind.value: client.to_dict() for client in clients(parsed)},
    }


def _preprocessing(prep: Preprocessing | None, variant: VariantResult, input_info: dict[str, Any]) -> dict[str, Any]:
    """What an app does to a picture before the model sees it, every constant read from the file."""
    channels = variant.input.shape[-1]
    normalization = prep or PIXELS
    app = PIXELS if variant.pixel_input else normalization  # a pixel-input model normalizes inside
    scale, offset = (list(values) for values in app.per_channel())
    steps = {
        "layout": "NHWC",
        "resize": {"height": variant.input.shape[1], "width": variant.input.shape[2], "method": "bilinear"},
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


@dataclass(frozen=True)
class _CodeFacts:
    """What both generated languages need from a manifest."""

    type_name: str
    input_dtype: str
    integer_in: bool
    integer_out: bool
    pixel_input: bool
    low: int
    high: int


def _code_facts(manifest: dict[str, Any]) -> _CodeFacts:
    words = f"{manifest['model']}_{manifest['variant']}".replace("-", "_").split("_")
    dtype = manifest["input"]["dtype"]
    low, high = INTEGER_RANGES.get(dtype, (0, 0))
    return _CodeFacts(
        type_name="".join(word.capitalize() for word in words),
        input_dtype=dtype,
        integer_in=dtype in INTEGER_RANGES,
        integer_out=manifest["output"]["dtype"] in INTEGER_RANGES,
        pixel_input=bool(manifest["preprocessing"].get("in_model")),
        low=low,
        high=high,
    )


def _kotlin_floats(values: list[float]) -> str:
    return ", ".join(f"{v!r}f" for v in values)


def _kotlin_store(facts: _CodeFacts) -> str:
    """Kotlin that puts channel value ``p`` (0..255) into the input buffer, as the manifest says."""
    if facts.pixel_input:
        return "buffer.put(p.toByte())" if facts.input_dtype == "uint8" else "buffer.put((p - 128).toByte())"
    x = "val x = p * SCALE[if (SCALE.size == 1) 0 else c] + OFFSET[if (OFFSET.size == 1) 0 else c]"
    if not facts.integer_in:
        return f"{x}\n                buffer.putFloat(x)"
    return (
        f"{x}\n"
        "                val v = x / INPUT_QUANT_SCALE\n"
        "                // Half away from zero: Math.round alone rounds -2.5 to -2.\n"
        "                val r = if (v < 0f) -Math.round(-v) else Math.round(v)\n"
        f"                buffer.put((r + INPUT_ZERO_POINT).coerceIn({facts.low}, {facts.high}).toByte())"
    )


def kotlin_source(manifest: dict[str, Any]) -> str:
    """Android (LiteRT Interpreter) pre- and post-processing with the manifest's constants."""
    prep, tensor_in, tensor_out = manifest["preprocessing"], manifest["input"], manifest["output"]
    facts = _code_facts(manifest)
    element = 1 if facts.integer_in else 4
    read = {
        "int8": "out.get(i).toInt()",
        "uint8": "(out.get(i).toInt() and 0xFF)",
    }.get(tensor_out["dtype"], "out.getFloat(i * 4)")
    dequantized = " (dequantized: (q - OUTPUT_ZERO_POINT) * OUTPUT_QUANT_SCALE)" if facts.integer_out else ""
    doc = (
        "the pixels as they are (the model normalizes them itself)"
        if facts.pixel_input
        else "x = pixel * SCALE + OFFSET per channel" + (", quantized" if facts.integer_in else "")
    )
    return f"""// Generated by tflite_opt {manifest["tool"]["version"]} from the bundle manifest; do not edit.
// {manifest["file"]["name"]}  sha256 {manifest["file"]["sha256"]}
package tflite_opt.generated

import android.graphics.Bitmap
import java.nio.ByteBuffer
import java.nio.ByteOrder

object {facts.type_name} {{
    const val MODEL_FILE = "{manifest["file"]["name"]}"
    const val MODEL_SHA256 = "{manifest["file"]["sha256"]}"
    const val LABELS_FILE = "{manifest["labels_file"]}"
    const val INPUT_HEIGHT = {prep["resize"]["height"]}
    const val INPUT_WIDTH = {prep["resize"]["width"]}
    const val INPUT_CHANNELS = {tensor_in["shape"][-1]}
    val SCALE = floatArrayOf({_kotlin_floats(prep["scale"])})
    val OFFSET = floatArrayOf({_kotlin_floats(prep["offset"])})
    const val INPUT_QUANT_SCALE = {tensor_in["scale"] if facts.integer_in else 1.0!r}f
    const val INPUT_ZERO_POINT = {tensor_in["zero_point"] if facts.integer_in else 0}
    const val OUTPUT_QUANT_SCALE = {tensor_out["scale"] if facts.integer_out else 1.0!r}f
    const val OUTPUT_ZERO_POINT = {tensor_out["zero_point"] if facts.integer_out else 0}
    const val NUM_CLASSES = {len(manifest["labels"])}

    /** Resize, then {doc}. */
    fun preprocess(bitmap: Bitmap): ByteBuffer {{
        val resized = Bitmap.createScaledBitmap(bitmap, INPUT_WIDTH, INPUT_HEIGHT, true)
        val buffer = ByteBuffer.allocateDirect(INPUT_HEIGHT * INPUT_WIDTH * INPUT_CHANNELS * {element})
        buffer.order(ByteOrder.nativeOrder())
        val pixels = IntArray(INPUT_HEIGHT * INPUT_WIDTH)
        resized.getPixels(pixels, 0, INPUT_WIDTH, 0, 0, INPUT_WIDTH, INPUT_HEIGHT)
        for (argb in pixels) {{
            val r = (argb shr 16) and 0xFF; val g = (argb shr 8) and 0xFF; val b = argb and 0xFF
            // Grey as Pillow computes it, so the app sees the pixels the benchmark saw.
            val channels = if (INPUT_CHANNELS == 1) intArrayOf((r * 19595 + g * 38470 + b * 7471 + 0x8000) shr 16)
                else intArrayOf(r, g, b, (argb ushr 24) and 0xFF).copyOf(INPUT_CHANNELS)
            for (c in 0 until INPUT_CHANNELS) {{
                val p = channels[c]
                {_kotlin_store(facts)}
            }}
        }}
        buffer.rewind()
        return buffer
    }}

    /** Scores as floats{dequantized}. */
    fun postprocess(out: ByteBuffer): FloatArray = FloatArray(NUM_CLASSES) {{ i ->
        {f"({read} - OUTPUT_ZERO_POINT) * OUTPUT_QUANT_SCALE" if facts.integer_out else read}
    }}
}}
"""


def _swift_value(facts: _CodeFacts, element: str) -> str:
    """Swift that appends channel value ``pixel`` to ``values``, as the manifest says."""
    if facts.pixel_input:
        return "values.append(pixel)" if facts.input_dtype == "uint8" else "values.append(Int8(Int(pixel) - 128))"
    x = (
        "let c = i % inputChannels\n"
        "            let x = Float(pixel) * scale[scale.count == 1 ? 0 : c] + offset[offset.count == 1 ? 0 : c]"
    )
    if not facts.integer_in:
        return f"{x}\n            values.append(Float32(x))"
    return (
        f"{x}\n"
        "            let q = Int((x / inputQuantScale).rounded(.toNearestOrAwayFromZero)) + inputZeroPoint\n"
        f"            values.append({element}(max({facts.low}, min({facts.high}, q))))"
    )


def swift_source(manifest: dict[str, Any]) -> str:
    """iOS (TensorFlowLiteSwift) pre- and post-processing with the manifest's constants."""
    prep, tensor_in, tensor_out = manifest["preprocessing"], manifest["input"], manifest["output"]
    facts = _code_facts(manifest)
    element = {"int8": "Int8", "uint8": "UInt8"}.get(tensor_in["dtype"], "Float32")
    out_element = {"int8": "Int8", "uint8": "UInt8"}.get(tensor_out["dtype"], "Float32")
    floats = lambda values: ", ".join(repr(v) for v in values)  # noqa: E731
    score = "(Float(q) - Float(outputZeroPoint)) * outputQuantScale" if facts.integer_out else "Float(q)"
    return f"""// Generated by tflite_opt {manifest["tool"]["version"]} from the bundle manifest; do not edit.
// {manifest["file"]["name"]}  sha256 {manifest["file"]["sha256"]}
import Foundation

enum {facts.type_name} {{
    static let modelFile = "{manifest["file"]["name"]}"
    static let modelSHA256 = "{manifest["file"]["sha256"]}"
    static let labelsFile = "{manifest["labels_file"]}"
    static let inputHeight = {prep["resize"]["height"]}
    static let inputWidth = {prep["resize"]["width"]}
    static let inputChannels = {tensor_in["shape"][-1]}
    static let scale: [Float] = [{floats(prep["scale"])}]
    static let offset: [Float] = [{floats(prep["offset"])}]
    static let inputQuantScale: Float = {tensor_in["scale"] if facts.integer_in else 1.0!r}
    static let inputZeroPoint = {tensor_in["zero_point"] if facts.integer_in else 0}
    static let outputQuantScale: Float = {tensor_out["scale"] if facts.integer_out else 1.0!r}
    static let outputZeroPoint = {tensor_out["zero_point"] if facts.integer_out else 0}
    static let numClasses = {len(manifest["labels"])}

    /// `pixels`: inputHeight x inputWidth x inputChannels bytes (0...255), already resized, NHWC.
    static func preprocess(pixels: [UInt8]) -> Data {{
        var values = [{element}]()
        values.reserveCapacity(pixels.count)
        for (i, pixel) in pixels.enumerated() {{
            {_swift_value(facts, element)}
        }}
        return values.withUnsafeBufferPointer {{ Data(buffer: $0) }}
    }}

    /// Scores as floats from the output tensor's data.
    static func postprocess(output: Data) -> [Float] {{
        let raw = output.withUnsafeBytes {{ Array($0.bindMemory(to: {out_element}.self)) }}
        return raw.prefix(numClasses).map {{ q in {score} }}
    }}
}}
"""


def write_bundle(
    report: ConvertReport,
    variant: VariantResult,
    content: bytes,
    labels: list[str],
    model_version: str,
    overwrite: bool,
) -> BundlePaths:
    """Write a variant's manifest, the model's labels and the Kotlin/Swift helpers, atomically."""
    paths = BundlePaths.beside(variant.path)
    manifest = build_manifest(report, variant, content, labels, model_version)
    atomic_write_bytes(paths.labels, labels_text(labels), overwrite=True)
    atomic_write_bytes(paths.kotlin, kotlin_source(manifest).encode("utf-8"), overwrite=overwrite)
    atomic_write_bytes(paths.swift, swift_source(manifest).encode("utf-8"), overwrite=overwrite)
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
