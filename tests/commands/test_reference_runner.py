"""The reference app: reading nothing but a pulled bundle, it gets the benchmark's top-1."""

import json
import shutil

import pytest

from tflite_opt.core import default_data
from tflite_opt.reference_runner import BundleClassifier, main, top1_on_folder

pytestmark = pytest.mark.slow
BUNDLE = ("mnist_cnn.int8.tflite", "mnist_cnn.int8.manifest.json", "mnist_cnn.labels.txt")


@pytest.fixture
def alone(bundle_dir, tmp_path):
    """Only the three files an app pulls."""
    for name in BUNDLE:
        shutil.copy(bundle_dir / name, tmp_path / name)
    return tmp_path


def test_reading_only_the_bundle_matches_the_benchmark(bundle_dir, alone):
    classifier = BundleClassifier(alone / "mnist_cnn.int8.manifest.json")
    report = json.loads((bundle_dir / "report.json").read_text())
    expected = next(v for v in report["variants"] if v["variant"] == "int8")["top1"]
    assert top1_on_folder(classifier, default_data.EVAL_DIR) == pytest.approx(expected, abs=1e-9)


def test_one_image_is_classified_by_its_label(alone, capsys):
    image = sorted((default_data.EVAL_DIR / "7").iterdir())[0]
    assert main([str(alone / "mnist_cnn.int8.manifest.json"), str(image)]) == 0
    assert capsys.readouterr().out.strip() == "7"


def test_a_model_that_does_not_match_its_manifest_is_refused(alone):
    (alone / "mnist_cnn.int8.tflite").write_bytes(b"TFL3 not the model")
    with pytest.raises(ValueError, match="does not match its manifest's sha256"):
        BundleClassifier(alone / "mnist_cnn.int8.manifest.json")
