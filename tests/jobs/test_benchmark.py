"""The benchmark job on .tflite files it did not make: the full report, and what it refuses."""

import json

import numpy as np
import pytest
from helpers import CORPUS

from tflite_opt.core.config import BenchmarkSettings, ConvertConfig
from tflite_opt.core.errors import DataError, ModelLoadError, UsageError
from tflite_opt.core.interpreter import TfliteRunner
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.core.shipping import Resize
from tflite_opt.jobs.benchmark import run_benchmark
from tflite_opt.jobs.convert import run_convert
from tflite_opt.stages.data import ImageSize, load_dataset

pytestmark = pytest.mark.slow
FAST = BenchmarkSettings(num_runs=10, warmup_runs=2)


def test_the_report_has_every_variant_measured_against_the_keras_model(
    converted_dir, saved_tiny_model, digit_folders, tmp_path
):
    _, evaluation = digit_folders
    paths = [converted_dir / f"tiny.{v}.tflite" for v in ("float32", "float16", "int8")]
    report = run_benchmark(paths, tmp_path, evaluation, saved_tiny_model, settings=FAST)
    assert report.model == "tiny" and report.reference == "float32"
    assert [v.variant for v in report.variants] == ["float32", "float16", "int8"]
    data = load_dataset(evaluation, ImageSize(12, 12, 1), require_labels=True)
    inputs = data.model_input(Preprocessing())
    int8 = report.variant("int8")
    expected = np.argmax(TfliteRunner(paths[2].read_bytes()).predict(inputs), axis=1)
    assert int8.top1 == pytest.approx(np.mean(expected == data.labels))
    assert int8.accuracy.confusion.sum() == 40 and len(int8.accuracy.confusion) == 10
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["schema_version"] == 1 and sum(v["chosen"] for v in saved["variants"]) == 1
    assert saved["variants"][0]["verdict"] == "reference"
    assert (tmp_path / "report.md").read_text().startswith("# tiny")
    for plot in ("tradeoff.png", "confusion.png"):
        assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_a_keras_model_the_float_file_is_the_reference(converted_dir, digit_folders, tmp_path):
    _, evaluation = digit_folders
    paths = [converted_dir / f"tiny.{v}.tflite" for v in ("int8", "float32")]
    report = run_benchmark(paths, tmp_path, evaluation, settings=FAST)
    assert report.reference == "float32" and report.keras_top1 is None
    assert report.top1_drop_points(report.variant("int8")) == pytest.approx(
        100 * (report.variant("float32").top1 - report.variant("int8").top1)
    )


def test_without_eval_data_only_latency_and_size_are_reported(converted_dir, tmp_path):
    report = run_benchmark([converted_dir / "tiny.int8.tflite"], tmp_path, settings=FAST)
    (variant,) = report.variants
    assert variant.top1 is None and variant.latency.p50 > 0 and variant.verdict.label == "unknown"
    assert not (tmp_path / "confusion.png").exists()


def test_eval_data_shared_with_calibration_is_refused(converted_dir, digit_folders, tmp_path):
    _, evaluation = digit_folders
    with pytest.raises(DataError, match="is also in the calibration data; accuracy must be measured on held-out"):
        run_benchmark([converted_dir / "tiny.int8.tflite"], tmp_path, evaluation, seen_data={"calibration": evaluation})


def test_models_of_different_inputs_and_missing_files_are_refused(converted_dir, tmp_path):
    with pytest.raises(UsageError, match="different or non-image inputs"):
        run_benchmark([converted_dir / "tiny.int8.tflite", CORPUS / "tflite" / "valid.tflite"], tmp_path)
    with pytest.raises(ModelLoadError, match="does not exist"):
        run_benchmark([tmp_path / "absent.tflite"], tmp_path)
    with pytest.raises(UsageError, match="pass at least one --model"):
        run_benchmark([], tmp_path)


@pytest.fixture(scope="module")
def faces_converted(faces, tmp_path_factory):
    """The faces model converted by the convert job, its int8 file taking pixels (--raw-pixel-input: left to itself
    the job measures both inputs and ships the better, which on this model is either by a single image)."""
    out = tmp_path_factory.mktemp("faces_out")
    config = ConvertConfig(
        model_path=faces["model"],
        representative_data=faces["root"] / "calibration",
        eval_data=faces["root"] / "eval",
        preprocessing=Preprocessing.from_mean_std(127.5, 127.5),
        labels_file=faces["labels"],
        output_dir=out,
        pixel_input=True,
    )
    return run_convert(config), out


def test_a_file_whose_manifest_says_it_takes_pixels_is_fed_pixels(faces, faces_converted, tmp_path):
    converted, out = faces_converted
    assert converted.variant("int8").pixel_input
    paths = [out / "faces.float32.tflite", out / "faces.int8.tflite"]
    report = run_benchmark(
        paths,
        tmp_path,
        faces["root"] / "eval",
        faces["model"],
        Preprocessing.from_mean_std(127.5, 127.5),
        settings=FAST,
        labels_file=faces["labels"],
    )
    assert report.variant("int8").top1 == converted.variant("int8").top1  # the same figure, measured again
    assert report.variant("int8").pixel_input and report.keras_top1 == 1.0


def test_unlabelled_data_is_measured_as_fidelity_to_the_float_file(faces, faces_converted, tmp_path):
    _, out = faces_converted
    paths = [out / "faces.float32.tflite", out / "faces.int8.tflite"]
    report = run_benchmark(
        paths, tmp_path, faces["root"] / "unlabelled", None, Preprocessing.from_mean_std(127.5, 127.5)
    )
    assert not report.labelled and report.reference == "float32"
    assert report.variant("float32").top1 == 1.0
    int8 = report.variant("int8")
    assert int8.top1 == int8.accuracy.fidelity.agreement and int8.verdict.reason.startswith("agreement ")


def test_a_keras3_model_is_the_reference_of_files_converted_from_it(keras3_models, outlier_data, tmp_path):
    evaluation = outlier_data / "eval"
    converted = run_convert(
        ConvertConfig(
            model_path=keras3_models["functional"],
            representative_data=outlier_data / "calibration",
            eval_data=evaluation,
            output_dir=tmp_path / "converted",
        )
    )
    paths = [tmp_path / "converted" / f"k3_functional.{v}.tflite" for v in ("float32", "int8")]
    report = run_benchmark(paths, tmp_path / "bench", evaluation, keras3_models["functional"], settings=FAST)
    assert report.keras_top1 == converted.keras_top1 > 0.5
    assert report.variant("int8").top1 == converted.variant("int8").top1


def test_without_mean_and_std_the_manifests_normalization_is_used_and_a_contradiction_is_said(
    faces, faces_converted, tmp_path
):
    converted, out = faces_converted
    paths = [out / "faces.float32.tflite", out / "faces.int8.tflite"]
    evaluation = faces["root"] / "eval"
    recorded = run_benchmark(
        paths, tmp_path / "a", evaluation, faces["model"], settings=FAST, labels_file=faces["labels"]
    )
    assert recorded.preprocessing == Preprocessing.from_mean_std(127.5, 127.5) and not recorded.warnings
    assert recorded.variant("int8").top1 == converted.variant("int8").top1 and recorded.keras_top1 == 1.0
    wrong = run_benchmark(
        paths, tmp_path / "b", evaluation, faces["model"], Preprocessing(), settings=FAST, labels_file=faces["labels"]
    )
    assert [w.split(" records ")[0] for w in wrong.warnings[:2]] == [
        "the manifest of float32",
        "the manifest of int8",
    ]
    assert "x = (pixel - 127.5) / 127.5" in wrong.warnings[0] and "x = (pixel - 0) / 255" in wrong.warnings[0]


def test_without_mean_std_or_manifests_the_default_is_said_and_disagreeing_manifests_are_refused(
    faces_converted, tmp_path
):
    _, out = faces_converted
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "faces.int8.tflite").write_bytes((out / "faces.int8.tflite").read_bytes())
    report = run_benchmark([bare / "faces.int8.tflite"], tmp_path / "a", settings=FAST)
    assert report.warnings[0].startswith("no --mean/--std and no manifest beside the files: measured with x = ")
    for variant in ("float32", "int8"):
        for name in (f"faces.{variant}.tflite", f"faces.{variant}.manifest.json"):
            (bare / name).write_bytes((out / name).read_bytes())
    manifest = json.loads((bare / "faces.float32.manifest.json").read_text())
    manifest["preprocessing"].update(scale=[1 / 255], offset=[0.0])  # as if converted for pixel / 255
    (bare / "faces.float32.manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UsageError, match="manifests beside the files record different preprocessing"):
        run_benchmark([bare / "faces.float32.tflite", bare / "faces.int8.tflite"], tmp_path / "b", settings=FAST)


def test_the_manifests_resize_policy_is_the_benchmarks_and_disagreeing_policies_are_refused(faces_converted, tmp_path):
    _, out = faces_converted
    copy = tmp_path / "copy"
    copy.mkdir()
    for variant in ("float32", "int8"):
        for name in (f"faces.{variant}.tflite", f"faces.{variant}.manifest.json"):
            (copy / name).write_bytes((out / name).read_bytes())
    for variant in ("float32", "int8"):
        manifest = json.loads((copy / f"faces.{variant}.manifest.json").read_text())
        manifest["preprocessing"]["resize"]["policy"] = "center-crop"
        (copy / f"faces.{variant}.manifest.json").write_text(json.dumps(manifest))
    files = [copy / "faces.float32.tflite", copy / "faces.int8.tflite"]
    assert run_benchmark(files, tmp_path / "a", settings=FAST).resize is Resize.CENTER_CROP
    manifest["preprocessing"]["resize"]["policy"] = "stretch"
    (copy / "faces.int8.manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UsageError, match=r"resize differently \(float32: center-crop, int8: stretch\)"):
        run_benchmark(files, tmp_path / "b", settings=FAST)
