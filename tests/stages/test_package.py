"""Bundles: manifests read from the converted file, and the generated app code carrying their constants."""

import hashlib
import json
import re

import pytest

from tflite_opt.core.errors import DataError
from tflite_opt.core.tflite_file import read_tflite
from tflite_opt.stages.package import BundlePaths, kotlin_source, read_manifest, swift_source

pytestmark = pytest.mark.slow


def test_bundle_files_are_named_after_the_model_and_variant(tmp_path):
    paths = BundlePaths.beside(tmp_path / "cats.int8-pruned80.tflite")
    assert paths.manifest.name == "cats.int8-pruned80.manifest.json"
    assert paths.labels.name == "cats.labels.txt"  # shared by the model's variants
    assert (paths.kotlin.name, paths.swift.name) == ("cats.int8-pruned80.kt", "cats.int8-pruned80.swift")
    assert paths.extras() == [paths.manifest, paths.labels, paths.kotlin, paths.swift]


def test_int8_manifest_matches_the_file(bundle_dir):
    manifest = json.loads((bundle_dir / "mnist_cnn.int8.manifest.json").read_text())
    content = (bundle_dir / "mnist_cnn.int8.tflite").read_bytes()
    assert manifest["schema_version"] == 1 and manifest["variant"] == "int8" and manifest["version"] == "1"
    assert manifest["file"]["sha256"] == hashlib.sha256(content).hexdigest()
    assert manifest["file"]["size_bytes"] == len(content)
    tensor_in, tensor_out = read_tflite(content).input_tensors()[0], read_tflite(content).output_tensors()[0]
    assert manifest["input"]["scale"] == tensor_in.quantization.scale
    assert manifest["input"]["zero_point"] == tensor_in.quantization.zero_point
    assert manifest["output"]["zero_point"] == tensor_out.quantization.zero_point
    assert manifest["input"]["shape"] == list(tensor_in.shape) and manifest["input"]["dtype"] == "int8"
    assert manifest["labels"] == [str(i) for i in range(10)]
    assert (bundle_dir / manifest["labels_file"]).read_text().split() == manifest["labels"]
    report = json.loads((bundle_dir / "report.json").read_text())
    measured = next(v for v in report["variants"] if v["variant"] == "int8")
    assert manifest["metrics"]["top1"] == measured["top1"] and manifest["metrics"]["verdict"] == measured["verdict"]
    assert manifest["preprocessing"]["scale"] == report["preprocessing"]["scale"]


def test_the_manifest_says_what_the_files_metadata_holds_and_which_clients_take_it(bundle_dir):
    int8 = json.loads((bundle_dir / "mnist_cnn.int8.manifest.json").read_text())
    float32 = json.loads((bundle_dir / "mnist_cnn.float32.manifest.json").read_text())
    assert int8["tflite_metadata"]["labels_file"] == int8["labels_file"] == "mnist_cnn.labels.txt"
    assert int8["tflite_metadata"]["color_space"] == "GRAYSCALE" and int8["tflite_metadata"]["normalization"] is None
    assert float32["tflite_metadata"]["normalization"] == {"mean": [0.0], "std": [255.0]}
    assert [kind for kind, client in int8["clients"].items() if client["runs"]] == ["interpreter"]
    # The default model is grey, so MediaPipe Tasks takes none of its variants, float32 included.
    for manifest in (int8, float32):
        assert "1-channel grayscale input" in manifest["clients"]["mediapipe_tasks"]["why"]
    assert "int8 input: MediaPipe Tasks takes uint8 or float32" in int8["clients"]["mediapipe_tasks"]["why"]
    assert float32["clients"]["litert_support_library"]["runs"]


def constant(source: str, name: str) -> str:
    match = re.search(rf"\b{name}\b(?::\s*\w+)?\s*=\s*(.+)", source)
    assert match, f"{name} not in the generated code"
    return match.group(1).strip()


def test_generated_kotlin_and_swift_carry_the_manifest_constants(bundle_dir):
    manifest = json.loads((bundle_dir / "mnist_cnn.int8.manifest.json").read_text())
    kotlin = (bundle_dir / "mnist_cnn.int8.kt").read_text()
    swift = (bundle_dir / "mnist_cnn.int8.swift").read_text()
    tensor_in, prep = manifest["input"], manifest["preprocessing"]
    assert float(constant(kotlin, "INPUT_QUANT_SCALE").rstrip("f")) == pytest.approx(tensor_in["scale"], rel=1e-7)
    assert int(constant(kotlin, "INPUT_ZERO_POINT")) == tensor_in["zero_point"]
    assert int(constant(kotlin, "INPUT_HEIGHT")) == prep["resize"]["height"]
    assert constant(kotlin, "MODEL_SHA256").strip('"') == manifest["file"]["sha256"]
    assert constant(kotlin, "val SCALE") == f"floatArrayOf({prep['scale'][0]!r}f)"
    assert int(constant(kotlin, "NUM_CLASSES")) == len(manifest["labels"])
    assert float(constant(swift, "static let inputQuantScale")) == pytest.approx(tensor_in["scale"], rel=1e-7)
    assert int(constant(swift, "static let inputZeroPoint")) == tensor_in["zero_point"]
    assert constant(swift, "static let modelSHA256").strip('"') == manifest["file"]["sha256"]
    assert constant(swift, "static let labelsFile").strip('"') == manifest["labels_file"]


def test_generated_code_follows_the_model_io_types(bundle_dir):
    int8 = json.loads((bundle_dir / "mnist_cnn.int8.manifest.json").read_text())
    float32 = json.loads((bundle_dir / "mnist_cnn.float32.manifest.json").read_text())
    kotlin, swift = kotlin_source(int8), swift_source(int8)
    assert "val r = if (v < 0f) -Math.round(-v) else Math.round(v)" in kotlin  # half away from zero
    assert "buffer.put((r + INPUT_ZERO_POINT).coerceIn(-128, 127).toByte())" in kotlin
    assert "putFloat(x)" in kotlin_source(float32)
    assert ".rounded(.toNearestOrAwayFromZero)" in swift and "Int8(max(-128, min(127, q)))" in swift
    assert "Float32(x)" in swift_source(float32)
    assert int8["preprocessing"]["rounding"] == "half away from zero" and not int8["preprocessing"]["in_model"]
    assert "object MnistCnnInt8" in kotlin_source(int8) and "enum MnistCnnFloat32" in swift_source(float32)
    assert float32["preprocessing"]["integer_formula"].startswith("none")
    assert int8["output"]["dequantize"].startswith(f"score = (q - {int8['output']['zero_point']})")


def pixel_manifest(dtype: str) -> dict:
    """A manifest as build_manifest writes it for a model that normalizes inside."""
    return {
        "model": "faces",
        "variant": "int8",
        "tool": {"version": "0"},
        "file": {"name": "faces.int8.tflite", "sha256": "0" * 64},
        "labels_file": "faces.labels.txt",
        "labels": ["a", "b"],
        "input": {"dtype": dtype, "shape": [1, 32, 32, 1], "scale": 1.0, "zero_point": -128 if dtype == "int8" else 0},
        "output": {"dtype": dtype, "scale": 0.0039, "zero_point": -128},
        "preprocessing": {"resize": {"height": 32, "width": 32}, "scale": [1.0], "offset": [0.0], "in_model": True},
    }


@pytest.mark.parametrize(
    "dtype, kotlin, swift",
    [
        ("uint8", "buffer.put(p.toByte())", "values.append(pixel)"),
        ("int8", "buffer.put((p - 128).toByte())", "values.append(Int8(Int(pixel) - 128))"),
    ],
)
def test_a_model_that_normalizes_inside_gets_the_bytes_copied(dtype, kotlin, swift):
    kotlin_code, swift_code = kotlin_source(pixel_manifest(dtype)), swift_source(pixel_manifest(dtype))
    assert kotlin in kotlin_code and "Math.round(v)" not in kotlin_code
    assert swift in swift_code and "rounded" not in swift_code
    assert "the pixels as they are (the model normalizes them itself)" in kotlin_code


def test_a_damaged_manifest_is_a_data_error_naming_it(tmp_path):
    path = tmp_path / "m.int8.manifest.json"
    path.write_text('{"model": ')
    with pytest.raises(DataError, match=r"m\.int8\.manifest\.json is damaged or unreadable"):
        read_manifest(path)
    path.write_text("[1, 2]")
    with pytest.raises(DataError, match="not a JSON object"):
        read_manifest(path)
