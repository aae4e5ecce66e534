"""``python -m tflite_opt.prune``: prune and fine-tune a Keras model, save it stripped.

This module parses flags, calls :func:`tflite_opt.jobs.prune.run_prune` and prints what pruning did.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import flags

from tflite_opt.command import (
    define_model_flags,
    define_overwrite_flag,
    define_preprocessing_flags,
    define_pruning_flags,
    path_flag,
    preprocessing_from_flags,
    prune_config_from_flags,
    run_cli,
    supervised,
)
from tflite_opt.jobs.prune import run_prune

# The line `tflite-opt --help` lists this command with, and the first of its own --help.
SUMMARY = "prune and fine-tune a Keras model, save it stripped"

_GROUP = "Model and data"


def _define_flags(flag_values: flags.FlagValues) -> None:
    define_pruning_flags(flag_values)
    define_preprocessing_flags(flag_values)
    define_model_flags(flag_values, _GROUP, "Keras model to prune. Default: the embedded MNIST CNN.")
    io = {"flag_values": flag_values, "module_name": _GROUP}
    flags.DEFINE_string("train-data", None, "Labelled training data: per-class folder or .npz with x and y.", **io)
    flags.DEFINE_string(
        "output", None, "Where to save the stripped model. Default: artifacts/<model>.pruned<N>.keras", **io
    )
    define_overwrite_flag(flag_values, _GROUP, "an existing output file")


def _run(fv: flags.FlagValues) -> int:
    stats, output = run_prune(
        prune_config_from_flags(fv, always=True),
        model_path=path_flag(fv, "model"),
        train_data=path_flag(fv, "train-data"),
        preprocessing=preprocessing_from_flags(fv),
        output=path_flag(fv, "output"),
        overwrite=fv["overwrite"].value,
        allow_unsafe=fv["allow-unsafe-deserialization"].value,
        progress=True,
    )
    for layer in stats.layers:
        print(f"{layer.layer:<16} {layer.weights:>9} weights  {100 * layer.sparsity:5.1f}% zero")
    for layer, reason in stats.skipped:
        print(f"skipped {layer}: {reason}")
    if stats.tuning is not None:
        print(f"fine-tuning: {stats.tuning.describe()}")
    print(f"pruned in {stats.seconds:.0f} s; saved the stripped model to {output}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tflite_opt.prune``; returns the exit code."""
    return run_cli("tflite_opt.prune", argv, _define_flags, _run, SUMMARY)


if __name__ == "__main__":
    sys.exit(supervised("tflite_opt.prune", main))
