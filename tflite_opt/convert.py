"""``python -m tflite_opt.convert``: the main job, a Keras model to verified, measured .tflite files.

This module parses flags, calls :func:`tflite_opt.jobs.convert.run_convert` and prints the table.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from absl import flags

from tflite_opt.command import (
    OUTPUT_GROUP,
    PRUNING_GROUP,
    cluster_config_from_flags,
    define_calibration_flags,
    define_model_flags,
    define_overwrite_flag,
    define_preprocessing_flags,
    define_pruning_flags,
    define_qat_flags,
    define_timing_flags,
    path_flag,
    preprocessing_from_flags,
    prune_config_from_flags,
    qat_config_from_flags,
    run_cli,
    supervised,
    timing_from_flags,
)
from tflite_opt.core.config import DEFAULT_SPARSITY_GRID, ConvertConfig, IoType, Mode, SearchConfig, SearchSchedule
from tflite_opt.core.errors import UsageError
from tflite_opt.core.shipping import AppCode, ModelCard, Resize
from tflite_opt.jobs.convert import run_convert
from tflite_opt.stages.report import format_table

# The line `tflite-opt --help` lists this command with, and the first of its own --help.
SUMMARY = "a Keras model to verified, measured .tflite files and app bundles (the main job)"

# Everything was written, but no candidate met --max-accuracy-drop.
EXIT_BUDGET_MISSED = 3

_MODE_FLAGS = {
    "full-int8": Mode.FULL_INT8,
    "dynamic-range": Mode.DYNAMIC_RANGE,
    "float16": Mode.FLOAT16,
    "float32": Mode.FLOAT32,
}
_DATA_GROUP = "Calibration and evaluation data"
_SEARCH_GROUP = "Accuracy budget (search for the smallest full-int8 model within it)"


def _define_flags(flag_values: flags.FlagValues) -> None:
    modes = {
        "flag_values": flag_values,
        "module_name": "Modes (one flag per mode; float32 is always produced as the reference)",
    }
    flags.DEFINE_bool(
        "full-int8",
        None,
        "Full-integer int8 model calibrated on representative data. Made where no mode flag is given.",
        **modes,
    )
    flags.DEFINE_bool("dynamic-range", False, "int8 weights, float activations; no calibration needed.", **modes)
    flags.DEFINE_bool("float16", False, "float16 weights.", **modes)
    flags.DEFINE_bool("float32", False, "Plain float32 conversion only.", **modes)
    define_model_flags(
        flag_values, "Model", "Keras model: .keras, .h5 or a SavedModel folder. Default: the embedded MNIST CNN."
    )
    define_calibration_flags(flag_values, _DATA_GROUP)
    data = {"flag_values": flag_values, "module_name": _DATA_GROUP}
    flags.DEFINE_string(
        "eval-data",
        None,
        "Held-out data: one subfolder per class (looked up in --labels), .npz with x and y, or a flat folder of "
        "unlabelled images (then fidelity to the float model is measured, not accuracy).",
        **data,
    )
    flags.DEFINE_string(
        "train-data", None, "Labelled training data for pruning's fine-tuning (per-class folder or .npz).", **data
    )
    define_preprocessing_flags(flag_values)
    define_timing_flags(flag_values)
    define_pruning_flags(flag_values)
    define_qat_flags(flag_values)
    flags.DEFINE_bool(
        "sparse-format",
        False,
        "With --prune, also write <variant>-sparse with tf.lite.Optimize.EXPERIMENTAL_SPARSITY.",
        flag_values=flag_values,
        module_name=PRUNING_GROUP,
    )
    _define_search_flags(flag_values)
    _define_output_flags(flag_values)
    _define_app_flags(flag_values)


def _define_search_flags(flag_values: flags.FlagValues) -> None:
    search = {"flag_values": flag_values, "module_name": _SEARCH_GROUP}
    flags.DEFINE_float(
        "max-accuracy-drop",
        None,
        "Top-1 points the model may lose against Keras on --eval-data. Where full-int8 loses more: with --qat, "
        "quantization-aware training first; then the worst int8 layers kept in float. With --prune, also "
        "searches the highest sparsity within it (with --cluster, clustered; with --qat, -pqat/-pcqat where a "
        "level's int8 misses).",
        **search,
    )
    flags.DEFINE_list(
        "sparsity-grid",
        [str(s) for s in DEFAULT_SPARSITY_GRID],
        "Sparsities the search tries, ascending: chained, each continuing from the last; parallel, each from the "
        "float model.",
        **search,
    )
    flags.DEFINE_string(
        "ray-address",
        None,
        "Build the search's candidates as Ray tasks on this cluster: local (a new instance on this machine for the "
        "run), auto (the cluster this machine is part of), host:port or ray://host:10001. Needs "
        "pip install 'tflite-opt[ray]'. Default: in this process.",
        **search,
    )
    flags.DEFINE_enum(
        "search-schedule",
        None,
        [s.value for s in SearchSchedule],
        "chained: each sparsity fine-tuned from the previous level's model, one after the other, stopping after two "
        "misses; parallel: each from the float model, all at once. Default: parallel with --ray-address, chained "
        "otherwise.",
        **search,
    )
    flags.DEFINE_bool(
        "resume",
        False,
        "Continue an interrupted search into the same --output-dir: every candidate it finished (kept in "
        "<output-dir>/search/) is taken as it is, not built again.",
        **search,
    )
    flags.DEFINE_integer("max-float-layers", 3, "At most this many layers kept in float.", lower_bound=0, **search)
    flags.DEFINE_bool(
        "refine", True, "One bisection step between the best sparsity within budget and the next.", **search
    )
    flags.DEFINE_bool(
        "per-tensor",
        False,
        "One int8 scale per weight tensor (some accelerators need it) instead of one per output channel. "
        "Without a search, the per-channel int8 model is measured too, to show the cost.",
        **search,
    )


def _define_app_flags(flag_values: flags.FlagValues) -> None:
    """What the app side of the bundle does: how pictures are resized, what the generated code is called."""
    output = {"flag_values": flag_values, "module_name": OUTPUT_GROUP}
    flags.DEFINE_enum(
        "resize",
        Resize.STRETCH.value,
        [r.value for r in Resize],
        "How a picture of another shape becomes the model's size, in the benchmark, the manifest and the generated "
        "code: stretch (the whole picture, as Keras's image_dataset_from_directory does by default) or center-crop "
        "(the largest centred box of the model's aspect ratio, as crop_to_aspect_ratio=True).",
        **output,
    )
    flags.DEFINE_string("kotlin-package", AppCode.kotlin_package, "Package of the generated Kotlin classes.", **output)
    flags.DEFINE_string(
        "class-prefix",
        "",
        "Prefix of the generated Kotlin and Swift class names (<prefix><Model><Variant>V<version>). Default: none.",
        **output,
    )


def _define_output_flags(flag_values: flags.FlagValues) -> None:
    output = {"flag_values": flag_values, "module_name": OUTPUT_GROUP}
    flags.DEFINE_string(
        "model-version",
        "1",
        "Version recorded in each bundle's manifest and file metadata, and used by publish.",
        **output,
    )
    flags.DEFINE_string(
        "model-description",
        None,
        "What the model does, written into each file's TFLite Metadata. Default: one generated from the variant "
        "(classes, input size and type).",
        **output,
    )
    flags.DEFINE_string("author", None, "Author written into each file's TFLite Metadata. Default: none.", **output)
    flags.DEFINE_string(
        "license",
        None,
        "Licence of the model, e.g. Apache-2.0, written into each file's TFLite Metadata. Default: none.",
        **output,
    )
    flags.DEFINE_string(
        "labels",
        None,
        "The model's class names, one per line, in its order: class folders are looked up in it. "
        "Default: the --eval-data folder names in sorted order (a guess the report points out).",
        **output,
    )
    flags.DEFINE_string("output-dir", "artifacts", "Folder for <model>.<variant>.tflite and report.json.", **output)
    flags.DEFINE_enum(
        "io-type",
        None,
        [t.value for t in IoType],
        "Input/output type of the full-int8 model. Default: uint8 for an RGB model (camera bytes, the input MediaPipe "
        "Tasks and the LiteRT Support Library feed), int8 otherwise.",
        **output,
    )
    flags.DEFINE_bool(
        "raw-pixel-input",
        None,
        "The int8/uint8 model takes camera pixels as they are (the normalization inside, input scale 1): "
        "an app copies bytes. Default: on for uint8 input, and where quantizing the normalized input would put "
        "pixels on rounding ties.",
        **output,
    )
    define_overwrite_flag(flag_values, OUTPUT_GROUP, "existing output files")


def _search_config(fv: flags.FlagValues) -> SearchConfig | None:
    if fv["max-accuracy-drop"].value is None:
        given = [f"--{name}" for name in ("ray-address", "search-schedule", "resume") if fv[name].present]
        if given:
            raise UsageError(f"{', '.join(given)} apply to the search: pass --max-accuracy-drop")
        return None
    try:
        grid = tuple(float(level) for level in fv["sparsity-grid"].value)
    except ValueError as exc:
        raise UsageError(f"--sparsity-grid takes numbers such as 0.5,0.7,0.9: {exc}") from exc
    return SearchConfig(
        max_accuracy_drop=fv["max-accuracy-drop"].value,
        sparsities=grid,
        max_float_layers=fv["max-float-layers"].value,
        refine=fv["refine"].value,
        schedule=SearchSchedule(fv["search-schedule"].value) if fv["search-schedule"].value else None,
        ray_address=fv["ray-address"].value,
        resume=fv["resume"].value,
    )


def config_from_flags(fv: flags.FlagValues) -> ConvertConfig:
    """Turn parsed flags into a validated ConvertConfig."""
    modes = tuple(mode for flag, mode in _MODE_FLAGS.items() if fv[flag].value) or (Mode.FULL_INT8,)
    search = _search_config(fv)
    return ConvertConfig(
        modes=modes,
        model_path=path_flag(fv, "model"),
        representative_data=path_flag(fv, "representative-data"),
        eval_data=path_flag(fv, "eval-data"),
        output_dir=Path(fv["output-dir"].value),
        io_type=IoType(fv["io-type"].value) if fv["io-type"].value is not None else None,
        preprocessing=preprocessing_from_flags(fv),
        prune=prune_config_from_flags(fv),
        qat=qat_config_from_flags(fv),
        cluster=cluster_config_from_flags(fv),
        train_data=path_flag(fv, "train-data"),
        sparse_format=fv["sparse-format"].value,
        allow_unsafe_deserialization=fv["allow-unsafe-deserialization"].value,
        model_version=fv["model-version"].value,
        labels_file=path_flag(fv, "labels"),
        num_calibration_samples=fv["num-calibration-samples"].value,
        seed=fv["seed"].value,
        overwrite=fv["overwrite"].value,
        search=search,
        per_tensor=fv["per-tensor"].value,
        pixel_input=fv["raw-pixel-input"].value,
        card=ModelCard(fv["model-description"].value, fv["author"].value, fv["license"].value),
        app_code=AppCode(fv["kotlin-package"].value, fv["class-prefix"].value),
        resize=Resize(fv["resize"].value),
        benchmark=timing_from_flags(fv),
    )


def _run(fv: flags.FlagValues) -> int:
    report = run_convert(config_from_flags(fv), progress=True)
    print(format_table(report))
    if report.search is not None and not report.search.met:
        return EXIT_BUDGET_MISSED
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the convert CLI on ``argv`` (without the program name); returns the exit code."""
    return run_cli("tflite_opt.convert", argv, _define_flags, _run, SUMMARY)


if __name__ == "__main__":
    sys.exit(supervised("tflite_opt.convert", main))
