"""``python -m tflite_opt.benchmark --model a.tflite [--model b.tflite ...]``: measure .tflite files you have.

This module parses flags, calls :func:`tflite_opt.jobs.benchmark.run_benchmark` and prints the table.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from absl import flags

from tflite_opt.command import (
    OUTPUT_GROUP,
    TIMING_GROUP,
    define_overwrite_flag,
    define_preprocessing_flags,
    define_timing_flags,
    define_unsafe_flag,
    path_flag,
    preprocessing_from_flags,
    run_cli,
    supervised,
    timing_from_flags,
)
from tflite_opt.core.config import BenchmarkSettings
from tflite_opt.jobs.benchmark import run_benchmark
from tflite_opt.stages.report import format_table

# The line `tflite-opt --help` lists this command with, and the first of its own --help.
SUMMARY = "measure .tflite files you have: size, latency, top-1"


def _define_flags(flag_values: flags.FlagValues) -> None:
    models = {"flag_values": flag_values, "module_name": "Models"}
    define_unsafe_flag(flag_values, "Models")
    flags.DEFINE_multi_string("model", None, ".tflite file to benchmark; repeat for each variant.", **models)
    flags.DEFINE_string("keras-model", None, "The float Keras model: the top-1 and agreement reference.", **models)
    data = {"flag_values": flag_values, "module_name": "Data (held-out evaluation; others only to refuse overlap)"}
    flags.DEFINE_string(
        "eval-data",
        None,
        "Held-out data, labelled (class folders, .npz) or not (a flat folder: fidelity to the float model); "
        "without it, latency and size only.",
        **data,
    )
    flags.DEFINE_string(
        "labels",
        None,
        "The model's class names, one per line, in its order: class folders are looked up in it.",
        **data,
    )
    flags.DEFINE_string("calibration-data", None, "The calibration data, refused if it overlaps --eval-data.", **data)
    # convert calls the same data --representative-data: either name works in both commands.
    flags.DEFINE_alias(
        "representative-data", "calibration-data", flag_values=flag_values, module_name=data["module_name"]
    )
    flags.DEFINE_string("train-data", None, "The training data, refused if it overlaps --eval-data.", **data)
    define_preprocessing_flags(flag_values)
    define_timing_flags(flag_values)
    flags.DEFINE_float(
        "accuracy-budget",
        BenchmarkSettings().accuracy_budget,
        "Top-1 points a 'good' variant may lose.",
        flag_values=flag_values,
        module_name=TIMING_GROUP,
    )
    flags.DEFINE_string(
        "output-dir",
        "artifacts/benchmark",
        "Folder for report.json, report.md and plots.",
        flag_values=flag_values,
        module_name=OUTPUT_GROUP,
    )
    define_overwrite_flag(flag_values, OUTPUT_GROUP, "existing report files")


def settings_from_flags(fv: flags.FlagValues) -> BenchmarkSettings:
    return timing_from_flags(fv, BenchmarkSettings(accuracy_budget=fv["accuracy-budget"].value))


def _run(fv: flags.FlagValues) -> int:
    seen = {
        what: path_flag(fv, flag) for what, flag in (("calibration", "calibration-data"), ("training", "train-data"))
    }
    report = run_benchmark(
        [Path(p) for p in fv["model"].value or []],
        Path(fv["output-dir"].value),
        eval_data=path_flag(fv, "eval-data"),
        keras_model_path=path_flag(fv, "keras-model"),
        preprocessing=preprocessing_from_flags(fv),
        settings=settings_from_flags(fv),
        seen_data={what: p for what, p in seen.items() if p is not None},
        overwrite=fv["overwrite"].value,
        progress=True,
        allow_unsafe=fv["allow-unsafe-deserialization"].value,
        labels_file=path_flag(fv, "labels"),
    )
    print(format_table(report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tflite_opt.benchmark``; returns the exit code."""
    return run_cli("tflite_opt.benchmark", argv, _define_flags, _run, SUMMARY)


if __name__ == "__main__":
    sys.exit(supervised("tflite_opt.benchmark", main))
