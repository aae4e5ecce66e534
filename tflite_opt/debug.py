"""``python -m tflite_opt.debug``: each layer's int8 error, worst first.

This module parses flags, calls :func:`tflite_opt.jobs.layer_errors.run_layer_errors` and prints the table
(or JSON).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from absl import flags

from tflite_opt.command import (
    OUTPUT_GROUP,
    define_calibration_flags,
    define_model_flags,
    define_preprocessing_flags,
    path_flag,
    preprocessing_from_flags,
    run_cli,
    supervised,
)
from tflite_opt.core.config import InputConfig
from tflite_opt.jobs.layer_errors import run_layer_errors
from tflite_opt.stages.layer_errors import format_error_table

# The line `tflite-opt --help` lists this command with, and the first of its own --help.
SUMMARY = "each layer's int8 error, worst first"

_GROUP = "Model and data"


def _define_flags(flag_values: flags.FlagValues) -> None:
    define_model_flags(flag_values, _GROUP, "Keras model. Default: the embedded MNIST CNN.")
    define_calibration_flags(flag_values, _GROUP)
    group = {"flag_values": flag_values, "module_name": _GROUP}
    flags.DEFINE_bool("per-tensor", False, "Measure per-tensor weight quantization.", **group)
    flags.DEFINE_list("float-layers", [], "Layers to keep in float while measuring the others.", **group)
    define_preprocessing_flags(flag_values)
    flags.DEFINE_bool(
        "json", False, "Print JSON instead of the table.", flag_values=flag_values, module_name=OUTPUT_GROUP
    )


def _run(fv: flags.FlagValues) -> int:
    config = InputConfig(
        model_path=path_flag(fv, "model"),
        representative_data=path_flag(fv, "representative-data"),
        preprocessing=preprocessing_from_flags(fv),
        num_calibration_samples=fv["num-calibration-samples"].value,
        seed=fv["seed"].value,
        allow_unsafe_deserialization=fv["allow-unsafe-deserialization"].value,
    )
    report = run_layer_errors(config, fv["per-tensor"].value, fv["float-layers"].value, progress=True)
    if fv["json"].value:
        print(json.dumps(report.to_dict()))
    else:
        print(format_error_table(report.errors, report.model, report.samples))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tflite_opt.debug``: the per-layer quantization error table."""
    return run_cli("tflite_opt.debug", argv, _define_flags, _run, SUMMARY)


if __name__ == "__main__":
    sys.exit(supervised("tflite_opt.debug", main))
