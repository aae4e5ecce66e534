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
from PIL import Image

from tflite_opt import reference_runner
from tflite_opt.core import default_data
from tflite_opt.reference_runner import BundleClassifier, main, round_half_away_from_zero, top1_on_folder

BUNDLE = (
    "mnist_cnn.int8.tflite",
    "mnist_cnn.int8.manifest.json",
    "mnist_cnn.labels.txt",
    "mnist_cnn.int8.golden.json",
)
USAGE = "python -m tflite_opt.reference_runner BUNDLE_DIR/mnist_cnn.int8.manifest.json [IMAGE_OR_FOLDER]"


@pytest.fixture
def classifier(stub):
    """BundleClassifier stubbed: it calls every image a 7 and has no golden vectors."""
    app = types.SimpleNamespace(classify=lambda path: "7", check_golden=lambda: (0, []))
    return stub(reference_runner, "BundleClassifier", result=app)


def test_golden_vectors_are_checked_first_and_a_mismatch_exits_1_before_any_image(classifier, tmp_path, capsys):
    classifier.result.check_golden = lambda: (3, [])
    assert main(["m.int8.manifest.json"]) == 0
    assert capsys.readouterr().out == "golden vectors: 3 of 3 agree\n"
    problem = "golden image 1 (eval/7/a.png): the input tensor differs from the benchmark's"
    classifier.result.check_golden = lambda: (3, [problem, problem.replace("the input tensor", "output")])
    assert main(["m.int8.manifest.json", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "golden vectors: 2 of 3 agree\n" and problem in captured.err


def test_help_says_what_it_does_and_exits_0(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("A reference app in Python") and out.rstrip().endswith(USAGE)


def test_a_flat_folder_prints_each_images_class(classifier, tmp_path, capsys):
    for name in ("b.png", "a.png"):
        (tmp_path / name).write_bytes(b"")
    assert main(["m.int8.manifest.json", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "a.png\t7\nb.png\t7\n"


def test_one_image_is_printed_as_its_label(classifier, tmp_path, capsys):
    image = tmp_path / "digit.png"
    image.write_bytes(b"")
    assert main(["bundle/m.int8.manifest.json", str(image)]) == 0
    assert capsys.readouterr().out == "7\n"
    assert classifier.received == {"manifest_path": Path("bundle/m.int8.manifest.json")}


def test_a_folder_is_printed_as_the_top1_on_its_class_folders(classifier, stub, tmp_path, capsys):
    (tmp_path / "7").mkdir()
    top1 = stub(reference_runner, "top1_on_folder", result=0.98765)
    assert main(["m.int8.manifest.json", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "top-1 0.9877\n"
    assert top1.received == {"classifier": classifier.result, "folder": tmp_path}


@pytest.mark.parametrize("argv", [[], ["a", "b", "c"]], ids=["none", "three"])
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
    """End to end: only the files an app pulls; the golden vectors agree, and stop agreeing when the manifest's
    preprocessing is wrong."""
    for name in BUNDLE:
        shutil.copy(bundle_dir / name, tmp_path / name)
    manifest = tmp_path / "mnist_cnn.int8.manifest.json"
    report = json.loads((bundle_dir / "report.json").read_text())
    expected = next(v for v in report["variants"] if v["variant"] == "int8")["top1"]
    assert top1_on_folder(BundleClassifier(manifest), default_data.EVAL_DIR) == pytest.approx(expected, abs=1e-9)
    assert main([str(manifest), str(default_data.EVAL_DIR)]) == 0
    assert capsys.readouterr().out == f"golden vectors: 3 of 3 agree\ntop-1 {expected:.4f}\n"
    wrong = json.loads(manifest.read_text())
    wrong["preprocessing"]["offset"] = [-0.5]  # an app centring the pixels the model expects in 0..1
    manifest.write_text(json.dumps(wrong))
    count, problems = BundleClassifier(manifest).check_golden()
    assert count == 3 and any("the input tensor differs from the benchmark's" in p for p in problems), problems


@pytest.mark.slow
def test_a_center_crop_manifest_crops_the_middle_before_resizing(bundle_dir, tmp_path):
    for name in BUNDLE:
        shutil.copy(bundle_dir / name, tmp_path / name)
    manifest = tmp_path / "mnist_cnn.int8.manifest.json"
    cropping = json.loads(manifest.read_text())
    cropping["preprocessing"]["resize"]["policy"] = "center-crop"
    manifest.write_text(json.dumps(cropping))
    digit = np.asarray(Image.open(next(default_data.EVAL_DIR.glob("*/*.png"))).convert("L"))
    noise = np.random.default_rng(0).integers(0, 256, (28, 14)).astype(np.uint8)
    wide = Image.fromarray(np.concatenate([noise, digit, noise], axis=1), mode="L")
    app = BundleClassifier(manifest)
    np.testing.assert_array_equal(app.preprocess(wide), app.preprocess(Image.fromarray(digit, mode="L")))
