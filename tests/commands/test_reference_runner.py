"""The reference app: its arguments and what it prints (the classifier stubbed), a model that does not match its
manifest refused, the manifest's rounding rule; end to end, reading nothing but a pulled bundle, it gets the
benchmark's top-1."""

import hashlib
import json
import shutil
import types
from pathlib import Path

import numpy as np
import pytest

from tflite_opt import reference_runner
from tflite_opt.core import default_data
from tflite_opt.reference_runner import BundleClassifier, main, round_half_away_from_zero, top1_on_folder

BUNDLE = ("mnist_cnn.int8.tflite", "mnist_cnn.int8.manifest.json", "mnist_cnn.labels.txt")
USAGE = "python -m tflite_opt.reference_runner BUNDLE_DIR/mnist_cnn.int8.manifest.json IMAGE_OR_FOLDER"


@pytest.fixture
def classifier(stub):
    """BundleClassifier stubbed: it calls every image a 7."""
    app = types.SimpleNamespace(classify=lambda path: "7")
    return stub(reference_runner, "BundleClassifier", result=app)


def test_one_image_is_printed_as_its_label(classifier, tmp_path, capsys):
    image = tmp_path / "digit.png"
    image.write_bytes(b"")
    assert main(["bundle/m.int8.manifest.json", str(image)]) == 0
    assert capsys.readouterr().out == "7\n"
    assert classifier.received == {"manifest_path": Path("bundle/m.int8.manifest.json")}


def test_a_folder_is_printed_as_the_top1_on_its_class_folders(classifier, stub, tmp_path, capsys):
    top1 = stub(reference_runner, "top1_on_folder", result=0.98765)
    assert main(["m.int8.manifest.json", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "top-1 0.9877\n"
    assert top1.received == {"classifier": classifier.result, "folder": tmp_path}


@pytest.mark.parametrize("argv", [[], ["m.int8.manifest.json"], ["a", "b", "c"]], ids=["none", "one", "three"])
def test_anything_but_a_manifest_and_an_image_prints_the_usage_and_exits_2(classifier, argv, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == USAGE and captured.out == ""
    assert classifier.calls == []


def test_a_model_that_does_not_match_its_manifest_is_refused(tmp_path):
    (tmp_path / "m.int8.tflite").write_bytes(b"TFL3 not the model")
    manifest = {"file": {"name": "m.int8.tflite", "sha256": hashlib.sha256(b"the model").hexdigest()}}
    (tmp_path / "m.int8.manifest.json").write_text(json.dumps({**manifest, "labels_file": "m.labels.txt"}))
    with pytest.raises(ValueError, match="m.int8.tflite does not match its manifest's sha256"):
        BundleClassifier(tmp_path / "m.int8.manifest.json")


def test_rounding_takes_a_half_away_from_zero():
    values = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49, -0.51, 3.0])
    np.testing.assert_array_equal(round_half_away_from_zero(values), [-3, -2, -1, 1, 2, 3, 0, -1, 3])


@pytest.mark.slow
def test_reading_only_the_bundle_matches_the_benchmark(bundle_dir, tmp_path, capsys):
    """End to end: only the three files an app pulls."""
    for name in BUNDLE:
        shutil.copy(bundle_dir / name, tmp_path / name)
    manifest = tmp_path / "mnist_cnn.int8.manifest.json"
    report = json.loads((bundle_dir / "report.json").read_text())
    expected = next(v for v in report["variants"] if v["variant"] == "int8")["top1"]
    assert top1_on_folder(BundleClassifier(manifest), default_data.EVAL_DIR) == pytest.approx(expected, abs=1e-9)
    assert main([str(manifest), str(default_data.EVAL_DIR)]) == 0
    assert capsys.readouterr().out == f"top-1 {expected:.4f}\n"
