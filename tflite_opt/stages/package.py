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

from tflite_opt.core.fileio import atomic_write_bytes, atomic_write_json
from tflite_opt.core.interpreter import INTEGER_RANGES
from tflite_opt.core.version import __version__
from tflite_opt.stages.report import ConvertReport, VariantResult

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
            labels=tflite.with_name(f"{model_name}.labels.txt"),
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
    prep = report.preprocessing
    channels = variant.input.shape[-1]
    scale, offset = (list(values) for values in prep.per_channel()) if prep else ([1.0], [0.0])
    input_info, output_info = variant.input.to_dict(), variant.output.to_dict()
    integer_in = input_info["dtype"] in INTEGER_RANGES
    low, high = INTEGER_RANGES.get(input_info["dtype"], (None, None))
    preprocessing = {
        "layout": "NHWC",
        "resize": {"height": variant.input.shape[1], "width": variant.input.shape[2], "method": "bilinear"},
        "channel_order": {1: "grayscale", 3: "RGB", 4: "RGBA"}.get(channels, f"{channels} channels"),
        "pixel_range": [0, 255],
        "scale": scale,
        "offset": offset,
        "mean": [-o / s for s, o in zip(scale, offset, strict=True)],
        "std": [1.0 / s for s in scale],
        "float_formula": "x = pixel * scale + offset  (equivalently (pixel - mean) / std)",
        "integer_formula": (
            f"q = clamp(round(x / {input_info['scale']!r}) + {input_info['zero_point']}, {low}, {high})"
            if integer_in
            else "none: the model takes float32 input x"
        ),
    }
    output_info["dequantize"] = (
        f"score = (q - {output_info['zero_point']}) * {output_info['scale']!r}"
        if output_info["dtype"] in INTEGER_RANGES
        else "none: the model gives float32 scores"
    )
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
        "preprocessing": preprocessing,
        "output": output_info,
        "metrics": {
            "top1": variant.top1,
            "top5": variant.accuracy.top5 if variant.accuracy else None,
            "eval_samples": report.eval_samples,
            "latency_ms_p50": variant.latency.p50,
            "num_threads": variant.latency.num_threads,
            "verdict": variant.verdict.label,
            "verdict_reason": variant.verdict.reason,
        },
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
    integer_in: bool
    integer_out: bool
    low: int
    high: int


def _code_facts(manifest: dict[str, Any]) -> _CodeFacts:
    words = f"{manifest['model']}_{manifest['variant']}".replace("-", "_").split("_")
    low, high = INTEGER_RANGES.get(manifest["input"]["dtype"], (0, 0))
    return _CodeFacts(
        type_name="".join(word.capitalize() for word in words),
        integer_in=manifest["input"]["dtype"] in INTEGER_RANGES,
        integer_out=manifest["output"]["dtype"] in INTEGER_RANGES,
        low=low,
        high=high,
    )


def _kotlin_floats(values: list[float]) -> str:
    return ", ".join(f"{v!r}f" for v in values)


def kotlin_source(manifest: dict[str, Any]) -> str:
    """Android (LiteRT Interpreter) pre- and post-processing with the manifest's constants."""
    prep, tensor_in, tensor_out = manifest["preprocessing"], manifest["input"], manifest["output"]
    facts = _code_facts(manifest)
    class_name, integer_in, integer_out, low, high = (
        facts.type_name,
        facts.integer_in,
        facts.integer_out,
        facts.low,
        facts.high,
    )
    store = {"int8": "put(q.toByte())", "uint8": "put(q.toByte())"}.get(tensor_in["dtype"], "putFloat(x)")
    element = {"int8": 1, "uint8": 1}.get(tensor_in["dtype"], 4)
    read = {
        "int8": "out.get(i).toInt()",
        "uint8": "(out.get(i).toInt() and 0xFF)",
    }.get(tensor_out["dtype"], "out.getFloat(i * 4)")
    return f"""// Generated by tflite_opt {manifest["tool"]["version"]} from the bundle manifest; do not edit.
// {manifest["file"]["name"]}  sha256 {manifest["file"]["sha256"]}
package tflite_opt.generated

import android.graphics.Bitmap
import java.nio.ByteBuffer
import java.nio.ByteOrder

object {class_name} {{
    const val MODEL_FILE = "{manifest["file"]["name"]}"
    const val MODEL_SHA256 = "{manifest["file"]["sha256"]}"
    const val LABELS_FILE = "{manifest["labels_file"]}"
    const val INPUT_HEIGHT = {prep["resize"]["height"]}
    const val INPUT_WIDTH = {prep["resize"]["width"]}
    const val INPUT_CHANNELS = {tensor_in["shape"][-1]}
    val SCALE = floatArrayOf({_kotlin_floats(prep["scale"])})
    val OFFSET = floatArrayOf({_kotlin_floats(prep["offset"])})
    const val INPUT_QUANT_SCALE = {tensor_in["scale"] if integer_in else 1.0!r}f
    const val INPUT_ZERO_POINT = {tensor_in["zero_point"] if integer_in else 0}
    const val OUTPUT_QUANT_SCALE = {tensor_out["scale"] if integer_out else 1.0!r}f
    const val OUTPUT_ZERO_POINT = {tensor_out["zero_point"] if integer_out else 0}
    const val NUM_CLASSES = {len(manifest["labels"])}

    /** Resize, then x = pixel * SCALE + OFFSET per channel{", then quantize" if integer_in else ""}. */
    fun preprocess(bitmap: Bitmap): ByteBuffer {{
        val resized = Bitmap.createScaledBitmap(bitmap, INPUT_WIDTH, INPUT_HEIGHT, true)
        val buffer = ByteBuffer.allocateDirect(INPUT_HEIGHT * INPUT_WIDTH * INPUT_CHANNELS * {element})
        buffer.order(ByteOrder.nativeOrder())
        val pixels = IntArray(INPUT_HEIGHT * INPUT_WIDTH)
        resized.getPixels(pixels, 0, INPUT_WIDTH, 0, 0, INPUT_WIDTH, INPUT_HEIGHT)
        for (argb in pixels) {{
            val r = (argb shr 16) and 0xFF; val g = (argb shr 8) and 0xFF; val b = argb and 0xFF
            val channels = if (INPUT_CHANNELS == 1) intArrayOf(Math.round(0.299f * r + 0.587f * g + 0.114f * b))
                else intArrayOf(r, g, b, (argb ushr 24) and 0xFF).copyOf(INPUT_CHANNELS)
            for (c in 0 until INPUT_CHANNELS) {{
                val x = channels[c] * SCALE[if (SCALE.size == 1) 0 else c] + OFFSET[if (OFFSET.size == 1) 0 else c]
                val q = Math.round(x / INPUT_QUANT_SCALE + INPUT_ZERO_POINT).coerceIn({low}, {high})
                buffer.{store}
            }}
        }}
        buffer.rewind()
        return buffer
    }}

    /** Scores as floats{" (dequantized: (q - OUTPUT_ZERO_POINT) * OUTPUT_QUANT_SCALE)" if integer_out else ""}. */
    fun postprocess(out: ByteBuffer): FloatArray = FloatArray(NUM_CLASSES) {{ i ->
        {f"({read} - OUTPUT_ZERO_POINT) * OUTPUT_QUANT_SCALE" if integer_out else read}
    }}
}}
"""


def swift_source(manifest: dict[str, Any]) -> str:
    """iOS (TensorFlowLiteSwift) pre- and post-processing with the manifest's constants."""
    prep, tensor_in, tensor_out = manifest["preprocessing"], manifest["input"], manifest["output"]
    facts = _code_facts(manifest)
    type_name, integer_in, integer_out, low, high = (
        facts.type_name,
        facts.integer_in,
        facts.integer_out,
        facts.low,
        facts.high,
    )
    element = {"int8": "Int8", "uint8": "UInt8"}.get(tensor_in["dtype"], "Float32")
    out_element = {"int8": "Int8", "uint8": "UInt8"}.get(tensor_out["dtype"], "Float32")
    floats = lambda values: ", ".join(repr(v) for v in values)  # noqa: E731
    convert = (
        f"{element}(max({low}, min({high}, Int((x / inputQuantScale).rounded()) + inputZeroPoint)))"
        if integer_in
        else "Float32(x)"
    )
    score = "(Float(q) - Float(outputZeroPoint)) * outputQuantScale" if integer_out else "Float(q)"
    return f"""// Generated by tflite_opt {manifest["tool"]["version"]} from the bundle manifest; do not edit.
// {manifest["file"]["name"]}  sha256 {manifest["file"]["sha256"]}
import Foundation

enum {type_name} {{
    static let modelFile = "{manifest["file"]["name"]}"
    static let modelSHA256 = "{manifest["file"]["sha256"]}"
    static let labelsFile = "{manifest["labels_file"]}"
    static let inputHeight = {prep["resize"]["height"]}
    static let inputWidth = {prep["resize"]["width"]}
    static let inputChannels = {tensor_in["shape"][-1]}
    static let scale: [Float] = [{floats(prep["scale"])}]
    static let offset: [Float] = [{floats(prep["offset"])}]
    static let inputQuantScale: Float = {tensor_in["scale"] if integer_in else 1.0!r}
    static let inputZeroPoint = {tensor_in["zero_point"] if integer_in else 0}
    static let outputQuantScale: Float = {tensor_out["scale"] if integer_out else 1.0!r}
    static let outputZeroPoint = {tensor_out["zero_point"] if integer_out else 0}
    static let numClasses = {len(manifest["labels"])}

    /// `pixels`: inputHeight x inputWidth x inputChannels bytes (0...255), already resized, NHWC.
    static func preprocess(pixels: [UInt8]) -> Data {{
        var values = [{element}]()
        values.reserveCapacity(pixels.count)
        for (i, pixel) in pixels.enumerated() {{
            let c = i % inputChannels
            let x = Float(pixel) * scale[scale.count == 1 ? 0 : c] + offset[offset.count == 1 ? 0 : c]
            values.append({convert})
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
    atomic_write_bytes(paths.labels, ("\n".join(labels) + "\n").encode("utf-8"), overwrite=True)
    atomic_write_bytes(paths.kotlin, kotlin_source(manifest).encode("utf-8"), overwrite=overwrite)
    atomic_write_bytes(paths.swift, swift_source(manifest).encode("utf-8"), overwrite=overwrite)
    atomic_write_json(paths.manifest, manifest, overwrite=overwrite)
    return paths


def read_manifest(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
