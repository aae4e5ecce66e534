"""Bundles: manifests read from the converted file, and the generated app code carrying their constants."""

import hashlib
import json

import pytest

from tflite_opt.core.errors import DataError
from tflite_opt.core.tflite_file import read_tflite
from tflite_opt.results.files import BundlePaths
from tflite_opt.stages.package import read_manifest

pytestmark = pytest.mark.slow


def test_bundle_files_are_named_after_the_model_and_variant(tmp_path):
    paths = BundlePaths.beside(tmp_path / "cats.int8-pruned80.tflite")
    assert paths.manifest.name == "cats.int8-pruned80.manifest.json"
    assert paths.labels.name == "cats.labels.txt"  # shared by the model's variants
    assert (paths.kotlin.name, paths.swift.name) == ("cats.int8-pruned80.kt", "cats.int8-pruned80.swift")
    assert paths.golden.name == "cats.int8-pruned80.golden.json"
    assert paths.extras() == [paths.manifest, paths.labels, paths.kotlin, paths.swift, paths.golden]


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
    assert manifest["golden_file"] == "mnist_cnn.int8.golden.json" and (bundle_dir / manifest["golden_file"]).exists()
    assert manifest["preprocessing"]["scale"] == report["preprocessing"]["scale"]
    assert manifest["preprocessing"]["resize"]["policy"] == report["resize"] == "stretch"
    checks = {check["name"]: check for check in manifest["checks"]}
    assert checks["integer-only"]["passed"] and checks["integer-only"]["detail"].startswith("all ")


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


def test_a_damaged_manifest_is_a_data_error_naming_it(tmp_path):
    path = tmp_path / "m.int8.manifest.json"
    path.write_text('{"model": ')
    with pytest.raises(DataError, match=r"m\.int8\.manifest\.json is damaged or unreadable"):
        read_manifest(path)
    path.write_text("[1, 2]")
    with pytest.raises(DataError, match="not a JSON object"):
        read_manifest(path)
