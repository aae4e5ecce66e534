"""Benchmark .tflite files you already have: ``python -m tflite_opt.benchmark`` as a job."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from tflite_opt.core.config import BenchmarkSettings
from tflite_opt.core.errors import DataError, ModelLoadError, UsageError
from tflite_opt.core.fileio import refuse_existing
from tflite_opt.core.native_probe import check_size, probe_in_child
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.core.shipping import Resize
from tflite_opt.core.tflite_file import read_tflite
from tflite_opt.core.variant import split_file_names
from tflite_opt.jobs.inputs import seen_digests
from tflite_opt.jobs.measure import KERAS, Bench, assemble_results, latency_pixels
from tflite_opt.results.files import BundlePaths, Verification, Verified
from tflite_opt.results.measures import AccuracyStats, Measured
from tflite_opt.results.report import ConvertReport
from tflite_opt.stages.benchmark import busy_machine
from tflite_opt.stages.data import ImageSize, load_dataset, open_source, read_labels
from tflite_opt.stages.load import describe_classifier, load_keras_model
from tflite_opt.stages.package import read_manifest, sha256_of
from tflite_opt.stages.report import report_paths, write_report_files
from tflite_opt.stages.verdict import DEFAULT_SETTINGS, reference_problem


def run_benchmark(
    model_paths: list[Path],
    output_dir: Path,
    eval_data: Path | None = None,
    keras_model_path: Path | None = None,
    preprocessing: Preprocessing | None = None,
    settings: BenchmarkSettings = DEFAULT_SETTINGS,
    seen_data: dict[str, Path] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    allow_unsafe: bool = False,
    labels_file: Path | None = None,
) -> ConvertReport:
    """Benchmark existing .tflite files and write report.json, report.md and the plots.

    Args:
        model_paths: the variants, ``<model>.<variant>.tflite`` where the names allow it.
        output_dir: where the report files go.
        eval_data: labelled held-out data; without it, latency and size only.
        keras_model_path: the float Keras model, the top-1 and agreement reference.
        preprocessing: pixels to model input (default: x = pixel / 255).
        settings: latency runs, threads, batch size, verdict thresholds.
        seen_data: data the models saw, by what it was for ("calibration", "training"); refused if
            it shares an image with ``eval_data``.
        overwrite: replace existing report files.
        progress: a progress bar on a terminal.
        allow_unsafe: load a Keras model that carries code.
        labels_file: the model's class names in its order; class folders of ``eval_data`` are looked up in it.

    Raises:
        TfliteOptError: unreadable models, mismatched inputs, overlapping data.
    """
    if not model_paths:
        raise UsageError("pass at least one --model file.tflite")
    refuse_existing(report_paths(output_dir), overwrite)
    model_name, variants = split_file_names(model_paths)
    paths = dict(zip(variants, model_paths, strict=True))
    opened = {variant: _foreign_file(path, variant) for variant, path in paths.items()}
    files = {variant: file for variant, (file, _, _) in opened.items()}
    size = replace(_image_size(files), resize=_recorded_resize({v: resize for v, (_, _, resize) in opened.items()}))
    recorded = {variant: normalization for variant, (_, normalization, _) in opened.items()}
    preprocessing, warnings = _preprocessing(preprocessing, recorded, size.channels)
    keras_model = _keras_reference(keras_model_path, size, allow_unsafe) if keras_model_path is not None else None
    labels = read_labels(labels_file) if labels_file is not None else None
    evaluation = open_source(eval_data, size, labels=labels) if eval_data is not None else None
    reference = _float_reference(files)
    seen = seen_digests(**{what: load_dataset(path, size) for what, path in (seen_data or {}).items()})
    pixels = latency_pixels(None, evaluation, (size.height, size.width, size.channels))
    bench = Bench(evaluation, preprocessing, settings, pixels, seen, keras_model, reference, progress)
    scores, measured = bench.measure(files)
    keras_accuracy = scores.get(KERAS)
    report = _report(model_name, Path(output_dir), bench, keras_accuracy, measured, paths, warnings)
    report = replace(report, resize=size.resize)
    write_report_files(report, overwrite=overwrite)
    return report


def _report(
    model_name: str,
    output_dir: Path,
    bench: Bench,
    keras_accuracy: AccuracyStats | None,
    measured: dict[str, Measured],
    paths: dict[str, Path],
    warnings: list[str],
) -> ConvertReport:
    """Every file judged against the Keras model, or without one against the float file."""
    reference, evaluation = bench.reference, bench.evaluation
    baseline = keras_accuracy or (measured[reference].accuracy if reference is not None else None)
    results = assemble_results(measured, paths, reference, baseline.top1 if baseline else None, bench.settings)
    return ConvertReport(
        model=model_name,
        output_dir=output_dir,
        keras_top1=keras_accuracy.top1 if keras_accuracy else None,
        eval_samples=len(evaluation) if evaluation is not None else 0,
        calibration_samples=0,
        preprocessing=bench.preprocessing,
        variants=tuple(results),
        reference=reference,
        warnings=(*warnings, *filter(None, [busy_machine({r.variant: r.latency for r in results})])),
        labelled=evaluation is None or evaluation.labels is not None,
        class_mapping=evaluation.mapping if evaluation is not None else None,
        reference_warning=reference_problem(baseline, evaluation.class_names if evaluation is not None else None),
    )


def _foreign_file(path: Path, variant: str) -> tuple[Verified, Preprocessing | None, Resize | None]:
    """A .tflite file made elsewhere: size-checked, parsed in pure Python, then probed in a child process; and the
    normalization and resize policy its manifest records (the normalization inside the model for a pixel-input
    file, which is then fed pixels), None without a manifest of these bytes.

    Raises:
        DataError: a manifest without the preprocessing it should record.
    """
    if not path.is_file():
        raise ModelLoadError(f"{path} does not exist")
    check_size(path)
    content = path.read_bytes()
    parsed = read_tflite(content, source=str(path))
    probe_in_child(path)  # files from elsewhere: a native crash must not take this process down
    manifest = _manifest_of(path, content)
    steps = manifest.get("preprocessing", {}) if manifest is not None else {}
    pixel_input = bool(steps.get("in_model"))
    file = Verified(content, parsed, Verification(variant, ()), pixel_input)
    if manifest is None:
        return file, None, None
    try:
        resize = Resize(steps.get("resize", {}).get("policy", Resize.STRETCH.value))  # older manifests: stretch
        return file, Preprocessing.from_dict(steps["normalization_in_model"] if pixel_input else steps), resize
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{BundlePaths.beside(path).manifest} records no usable preprocessing ({exc})") from exc


def _recorded_resize(recorded: dict[str, Resize | None]) -> Resize:
    """The resize policy the manifests record (stretch without one).

    Raises:
        UsageError: manifests that record different policies.
    """
    policies = {resize for resize in recorded.values() if resize is not None}
    if len(policies) > 1:
        described = ", ".join(f"{name}: {resize}" for name, resize in recorded.items() if resize is not None)
        raise UsageError(f"the manifests beside the files resize differently ({described}); benchmark them apart")
    return policies.pop() if policies else Resize.STRETCH


def _manifest_of(path: Path, content: bytes) -> dict[str, Any] | None:
    """The bundle manifest beside the file, where there is one and it describes these bytes."""
    manifest = BundlePaths.beside(path).manifest
    if not manifest.is_file():
        return None
    recorded = read_manifest(manifest)
    if recorded.get("file", {}).get("sha256") != sha256_of(content):
        return None  # the manifest describes another file
    return recorded


def _preprocessing(
    given: Preprocessing | None, recorded: dict[str, Preprocessing | None], channels: int
) -> tuple[Preprocessing, list[str]]:
    """The normalization every file and the Keras model are measured with, and what the user should know about it:
    as given (--mean/--std), else as the manifests beside the files record it, else pixel / 255.

    Raises:
        UsageError: without one given, manifests that record different normalizations.
    """
    found = {name: prep for name, prep in recorded.items() if prep is not None}
    if given is not None:
        differ = [name for name, prep in found.items() if not _same(prep, given, channels)]
        return given, [
            f"the manifest of {name} records {found[name].describe()}; it was measured with {given.describe()}, as "
            "given: if the model was converted for the recorded input, its figures are wrong"
            for name in differ
        ]
    distinct: list[Preprocessing] = []
    for prep in found.values():
        if not any(_same(prep, seen, channels) for seen in distinct):
            distinct.append(prep)
    if len(distinct) > 1:
        described = "; ".join(f"{name}: {prep.describe()}" for name, prep in found.items())
        raise UsageError(
            f"the manifests beside the files record different preprocessing ({described}): pass --mean/--std"
        )
    if distinct:
        bare = [name for name, prep in recorded.items() if prep is None]
        return distinct[0], [
            f"{name} has no manifest beside it; it was measured with {distinct[0].describe()}, as the others' record"
            for name in bare
        ]
    default = Preprocessing()
    return default, [
        f"no --mean/--std and no manifest beside the files: measured with {default.describe()}; if the model was "
        "trained on other input, every figure is wrong"
    ]


def _same(a: Preprocessing, b: Preprocessing, channels: int) -> bool:
    """The same formula on ``channels`` channels, a single value standing for every channel."""

    def values(prep: Preprocessing) -> np.ndarray:
        return np.array([np.broadcast_to(np.array(v, float), (channels,)) for v in (prep.scale, prep.offset)])

    return bool(np.allclose(values(a), values(b), rtol=1e-9, atol=1e-12))


def _image_size(files: dict[str, Verified]) -> ImageSize:
    """The one image input size all files share."""
    shapes = {tuple(file.parsed.input_tensors()[0].shape[1:]) for file in files.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3:
        raise UsageError(
            f"the models take different or non-image inputs {sorted(shapes)}; benchmark one model's variants"
        )
    height, width, channels = next(iter(shapes))
    return ImageSize(height, width, channels)


def _keras_reference(path: Path, size: ImageSize, allow_unsafe: bool) -> Any:
    keras_model = load_keras_model(path, allow_unsafe)
    if describe_classifier(keras_model).input_shape != (size.height, size.width, size.channels):
        raise UsageError(f"{path} takes a different input than the .tflite files")
    return keras_model


def _float_reference(files: dict[str, Verified]) -> str | None:
    """The float model the others are compared with: 'float32' if given, else one without quantized weights."""
    if "float32" in files:
        return "float32"
    for name, file in files.items():
        if {t.dtype for t in file.parsed.tensors if t.is_constant} <= {"FLOAT32", "INT32"}:
            return name
    return None
