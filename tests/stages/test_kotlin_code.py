"""The generated Kotlin: the manifest's constants and rules, compiled against stubs of Android and LiteRT, and its
preprocessing run on the JVM: byte for byte the tensor the benchmark fed (the golden vectors' sha256, or Pillow's
resize and the manifest's formula on pictures of other sizes)."""

import base64
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import code_constant as constant
from helpers import synthetic_manifest
from PIL import Image

from tflite_opt.core.interpreter import quantize
from tflite_opt.core.shipping import AppCode, Resize
from tflite_opt.stages.app_code import type_name
from tflite_opt.stages.data import ImageSize, load_image
from tflite_opt.stages.golden import png_base64
from tflite_opt.stages.kotlin_code import kotlin_source

STUBS = Path(__file__).parents[1] / "kotlin" / "stubs"


def manifest_of(bundle_dir, variant: str) -> dict:
    return json.loads((bundle_dir / f"mnist_cnn.{variant}.manifest.json").read_text())


@pytest.mark.slow
def test_the_kotlin_carries_the_manifest_constants(bundle_dir):
    manifest = manifest_of(bundle_dir, "int8")
    kotlin = (bundle_dir / "mnist_cnn.int8.kt").read_text()
    tensor_in, prep = manifest["input"], manifest["preprocessing"]
    assert float(constant(kotlin, "INPUT_QUANT_SCALE").rstrip("f")) == pytest.approx(tensor_in["scale"], rel=1e-7)
    assert int(constant(kotlin, "INPUT_ZERO_POINT")) == tensor_in["zero_point"]
    assert int(constant(kotlin, "INPUT_HEIGHT")) == prep["resize"]["height"]
    assert constant(kotlin, "MODEL_SHA256").strip('"') == manifest["file"]["sha256"]
    assert constant(kotlin, "val SCALE") == f"floatArrayOf({prep['scale'][0]!r}f)"
    assert int(constant(kotlin, "NUM_CLASSES")) == len(manifest["labels"])
    assert "package tflite_opt.generated" in kotlin and "class MnistCnnInt8V1(" in kotlin


@pytest.mark.slow
def test_the_kotlin_follows_the_model_io_types(bundle_dir):
    int8, float32 = manifest_of(bundle_dir, "int8"), manifest_of(bundle_dir, "float32")
    kotlin = kotlin_source(int8)
    assert "val r = if (v < 0f) -Math.round(-v) else Math.round(v)" in kotlin  # half away from zero
    assert "into.put((r + INPUT_ZERO_POINT).coerceIn(-128, 127).toByte())" in kotlin
    assert "putFloat(x)" in kotlin_source(float32)
    assert "sortedWith(compareBy<Int>({ -scores[it] }, { it }))" in kotlin  # ties: the lowest index first
    named = kotlin_source(int8, AppCode("com.acme.vision", "Acme"))
    assert "package com.acme.vision" in named and "class AcmeMnistCnnInt8V1(" in named


@pytest.mark.parametrize("dtype, kotlin", [("uint8", "into.put(p.toByte())"), ("int8", "into.put((p - 128).toByte())")])
def test_a_model_that_normalizes_inside_gets_the_bytes_copied(dtype, kotlin):
    kotlin_code = kotlin_source(synthetic_manifest(dtype, True, 1))
    assert kotlin in kotlin_code and "Math.round(v)" not in kotlin_code
    assert "the pixels as they are (the model normalizes them itself)" in kotlin_code


def expected_input(manifest: dict, pixels: np.ndarray) -> bytes:
    """The input tensor's bytes as the benchmark computes them from pixels."""
    tensor, prep = manifest["input"], manifest["preprocessing"]
    if prep["in_model"]:
        return (pixels.astype(np.int16) + tensor["zero_point"]).astype(tensor["dtype"]).tobytes()
    x = pixels.astype(np.float32) * np.float32(prep["scale"][0]) + np.float32(prep["offset"][0])
    if tensor["dtype"] == "float32":
        return x.astype("<f4").tobytes()
    return quantize(x, tensor["scale"], tensor["zero_point"], np.dtype(tensor["dtype"])).tobytes()


@pytest.mark.slow
def test_the_kotlin_compiles_and_feeds_the_model_the_benchmarks_bytes(bundle_dir, tmp_path):
    """Every kind of input (int8 on rounding ties, uint8, float32, pixels as they are; grey and RGB; pictures to
    shrink, enlarge and crop) compiled in one package with stubs of Android and LiteRT; its preprocessing, run on
    the JVM, must give the golden vectors' input tensor (the real bundles) or what the benchmark's loader and
    formula give (the synthetic manifests) byte for byte."""
    if shutil.which("kotlinc") is None or shutil.which("kotlin") is None:
        pytest.skip("kotlinc not installed: `make install-test` installs Debian's kotlin where apt-get runs as root")
    sources, cases = tmp_path / "src", []
    sources.mkdir()
    rng = np.random.default_rng(0)
    for variant in ("int8", "float32"):
        manifest = manifest_of(bundle_dir, variant)
        golden = json.loads((bundle_dir / manifest["golden_file"]).read_text())
        for image in golden["images"]:
            cases.append((manifest, base64.b64decode(image["pixels_png"]), image["input_sha256"]))
    for dtype, in_model, channels in [("int8", False, 3), ("uint8", False, 1), ("uint8", True, 3), ("int8", True, 1)]:
        manifest = synthetic_manifest(dtype, in_model, channels)
        pixels = rng.integers(0, 256, (6, 5, channels)).astype(np.uint8)
        digest = hashlib.sha256(expected_input(manifest, pixels)).hexdigest()
        cases.append((manifest, base64.b64decode(png_base64(pixels)), digest))
    # Pictures of other sizes, read by the benchmark's own loader: Pillow's grey, crop and resize to compare with.
    for dtype, in_model, channels, policy, shape in [
        ("uint8", True, 3, "stretch", (23, 37)),  # shrinking both ways, by uneven factors
        ("int8", False, 1, "stretch", (29, 17)),  # grey from RGB, then shrunk
        ("float32", False, 3, "stretch", (4, 3)),  # enlarged
        ("uint8", True, 3, "center-crop", (6, 10)),  # the centre box is the model's size: the crop rule alone
        ("int8", True, 3, "center-crop", (15, 40)),  # cropped, then shrunk
    ]:
        manifest = synthetic_manifest(dtype, in_model, channels, policy=policy)
        picture = rng.integers(0, 256, (*shape, 3)).astype(np.uint8)
        path = tmp_path / f"picture_{len(cases)}.png"
        Image.fromarray(picture, mode="RGB").save(path)
        benchmark = load_image(path, ImageSize(6, 5, channels, Resize(policy)))
        cases.append((manifest, path.read_bytes(), hashlib.sha256(expected_input(manifest, benchmark)).hexdigest()))
    names = {}
    for manifest, _, _ in cases:
        name = type_name(manifest, AppCode())
        names[name] = manifest
        (sources / f"{name}.kt").write_text(kotlin_source(manifest))
    (sources / "Main.kt").write_text(main_source(sorted(names)))
    compiled = tmp_path / "classes"
    build = subprocess.run(
        ["kotlinc", str(STUBS), str(sources), "-d", str(compiled), "-nowarn"], capture_output=True, text=True
    )
    assert build.returncode == 0, build.stderr
    arguments = []
    for k, (manifest, png, _) in enumerate(cases):
        (tmp_path / f"{k}.png").write_bytes(png)
        arguments += [type_name(manifest, AppCode()), str(tmp_path / f"{k}.png")]
    run = subprocess.run(
        ["kotlin", "-classpath", str(compiled), "MainKt", *arguments], check=True, capture_output=True, text=True
    )
    assert run.stdout.split() == [digest for _, _, digest in cases]


def main_source(names: list[str]) -> str:
    """A Kotlin program printing, for each (class, PNG) pair of its arguments, the sha256 of the input tensor that
    class's fillInput writes for the PNG."""
    branches = "\n".join(
        f'            "{name}" -> {{ val b = ByteBuffer.allocateDirect({name}.INPUT_BYTES).order(LITTLE); '
        f"{name}.fillInput(bitmap, b); {name}.sha256Hex(b) }}"
        for name in names
    )
    return f"""import android.graphics.BitmapFactory
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import tflite_opt.generated.*

val LITTLE: ByteOrder = ByteOrder.LITTLE_ENDIAN

fun main(args: Array<String>) {{
    for (k in 0 until args.size step 2) {{
        val png = File(args[k + 1]).readBytes()
        val bitmap = BitmapFactory.decodeByteArray(png, 0, png.size)
        val digest = when (args[k]) {{
{branches}
            else -> throw IllegalArgumentException(args[k])
        }}
        println(digest)
    }}
}}
"""
