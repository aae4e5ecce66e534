"""The generated Swift, read as text (no Swift toolchain on Linux CI): the manifest's constants and rules."""

import json

import pytest
from helpers import code_constant as constant
from helpers import synthetic_manifest

from tflite_opt.stages.swift_code import swift_source


@pytest.mark.slow
def test_the_swift_carries_the_manifest_constants_and_rules(bundle_dir):
    manifest = json.loads((bundle_dir / "mnist_cnn.int8.manifest.json").read_text())
    float32 = json.loads((bundle_dir / "mnist_cnn.float32.manifest.json").read_text())
    swift = (bundle_dir / "mnist_cnn.int8.swift").read_text()
    tensor_in = manifest["input"]
    assert float(constant(swift, "static let inputQuantScale")) == pytest.approx(tensor_in["scale"], rel=1e-7)
    assert int(constant(swift, "static let inputZeroPoint")) == tensor_in["zero_point"]
    assert constant(swift, "static let modelSHA256").strip('"') == manifest["file"]["sha256"]
    assert constant(swift, "static let labelsFile").strip('"') == manifest["labels_file"]
    assert "final class MnistCnnInt8V1" in swift
    assert ".rounded(.toNearestOrAwayFromZero)" in swift and "Int8(max(-128, min(127, q)))" in swift
    assert "Float32(x)" in swift_source(float32)
    assert "scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1" in swift  # ties: the lowest index


@pytest.mark.parametrize(
    "dtype, swift", [("uint8", "values.append(pixel)"), ("int8", "values.append(Int8(Int(pixel) - 128))")]
)
def test_a_model_that_normalizes_inside_gets_the_bytes_copied(dtype, swift):
    swift_code = swift_source(synthetic_manifest(dtype, True, 1))
    assert swift in swift_code and "toNearestOrAwayFromZero" not in swift_code
