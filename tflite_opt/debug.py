"""Per-layer int8 quantization error, with Keras layer names: ``python -m tflite_opt.debug``.

TensorFlow's QuantizationDebugger runs a model in which every quantized
operator has a float twin fed the same input; comparing the two tells how much
error each operator adds. Two measures per Keras layer (its worst operator):

- ``rmse/scale``: TensorFlow's own measure, the error in units of the output's
  quantization step. Plain rounding gives 0.29 (1/sqrt(12)); much more means
  the operator computes badly in int8 (e.g. weights that lose precision).
- ``relative error``: per output channel, rms(int8 - float) / rms(float) over all
  samples; the median over channels. It catches what rmse/scale cannot: a few
  extreme values that stretch a tensor's one int8 range until the other channels
  round to nothing (their error is still "half a step", but a step is now larger
  than the values themselves). Taken per channel, tiny values that never matter
  (most of a softmax's output) do not count against a layer.

Layers are ranked by relative error; the search keeps the worst in float.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tflite_opt.config import IoType
from tflite_opt.errors import ConversionError
from tflite_opt.tflite_file import TfliteFile, read_tflite
from tflite_opt.verify import layer_for_operator

# Values this close to zero have no meaningful relative error.
_TINY = 1e-6


@dataclass(frozen=True)
class LayerError:
    """How much int8 error one Keras layer adds, measured on the calibration data."""

    layer: str
    operators: tuple[str, ...]
    rmse_over_scale: float
    relative_error: float
    scale: float
    elements: int
    position: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "operators": list(self.operators),
            "rmse_over_scale": round(self.rmse_over_scale, 4),
            "relative_error": round(self.relative_error, 4),
            "scale": self.scale,
            "elements": self.elements,
        }


def layer_nodes(calibrated: TfliteFile, layer_names: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """(operator, output tensor name) of each Keras layer's operators in a calibrated model.

    An operator no layer name matches is listed under its output tensor's name.
    """
    nodes: dict[str, list[tuple[str, str]]] = {}
    for op in calibrated.operators:
        if not op.outputs or op.outputs[0] < 0:
            continue
        output = calibrated.tensors[op.outputs[0]].name
        layer = layer_for_operator(calibrated, op, layer_names) or output
        nodes.setdefault(layer, []).append((op.name, output))
    return nodes


def float_nodes(nodes: dict[str, list[tuple[str, str]]], layers: Sequence[str]) -> list[str]:
    """The output tensor names to keep in float so that every operator of ``layers`` stays float.

    Args:
        nodes: :func:`layer_nodes` of the calibrated model.
        layers: Keras layer names.

    Raises:
        ConversionError: a layer has no operator in the model.
    """
    missing = [layer for layer in layers if layer not in nodes]
    if missing:
        raise ConversionError(f"no operator of layer(s) {', '.join(missing)} in the converted model")
    return [output for layer in layers for _, output in nodes[layer]]


class _ChannelErrors:
    """Sums of squared error and squared float value per output channel, for each compared operator.

    The debugger calls a direct-compare metric once per NumericVerify operator per sample,
    always in the same order, without saying which operator; the call count tells it.
    """

    def __init__(self) -> None:
        self.operators = 0
        self.calls = 0
        self.error: dict[int, np.ndarray] = {}
        self.signal: dict[int, np.ndarray] = {}
        self.elements: dict[int, int] = {}
        self.scale: dict[int, float] = {}

    def __call__(self, float_values: np.ndarray, quantized: np.ndarray, scale: float, zero_point: int) -> float:
        position = self.calls % self.operators
        self.calls += 1
        reference = float_values.astype(np.float64)
        error = (quantized.astype(np.int64) - zero_point) * float(scale) - reference
        channels = reference.shape[-1] if reference.ndim else 1
        squared_error = np.square(error).reshape(-1, channels).sum(axis=0)
        squared_signal = np.square(reference).reshape(-1, channels).sum(axis=0)
        if position in self.error:
            self.error[position] += squared_error
            self.signal[position] += squared_signal
            self.elements[position] += reference.size
        else:
            self.error[position], self.signal[position] = squared_error, squared_signal
            self.elements[position], self.scale[position] = reference.size, float(scale)
        return 0.0

    def measures(self, position: int) -> tuple[float, float]:
        """(rmse / scale, median over channels of rms(error) / rms(float))."""
        error, signal = self.error[position], self.signal[position]
        scale = self.scale[position]
        rmse = float(np.sqrt(error.sum() / max(1, self.elements[position])))
        live = signal > _TINY
        relative = float(np.median(np.sqrt(error[live] / signal[live]))) if live.any() else float("nan")
        return (rmse / scale if scale else float("nan")), relative


def quantization_errors(
    calibrated: bytes,
    samples: np.ndarray,
    layer_names: Sequence[str],
    per_tensor: bool = False,
    float_layers: Sequence[str] = (),
) -> tuple[LayerError, ...]:
    """Per-layer error of the full-int8 model, worst (highest relative error) first.

    Args:
        calibrated: output of :func:`tflite_opt.convert.calibrate_keras`.
        samples: float model input (N, H, W, C) to run the comparison on.
        layer_names: the Keras model's layer names, to name operators.
        per_tensor: measure the model quantized with one scale per weight tensor.
        float_layers: layers already kept in float (they are not measured).

    Raises:
        ConversionError: the debugger could not build or run the instrumented model.
    """
    from tflite_opt.convert import quantize_calibrated
    from tflite_opt.keras2 import tf
    from tflite_opt.quiet import native_stderr_silenced

    nodes = layer_nodes(read_tflite(calibrated, source="the calibrated model"), layer_names)
    layer_of_node = {output: layer for layer, pairs in nodes.items() for _, output in pairs}
    keep = float_nodes(nodes, float_layers)
    debug_model = quantize_calibrated(calibrated, IoType.FLOAT32, per_tensor, keep, numeric_verify=True)
    channel_errors = _ChannelErrors()
    options = tf.lite.experimental.QuantizationDebugOptions(layer_direct_compare_metrics={"channel": channel_errors})
    try:
        with warnings.catch_warnings(), native_stderr_silenced():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice: the debugger uses it
            debugger = tf.lite.experimental.QuantizationDebugger(
                quant_debug_model_content=debug_model,
                debug_dataset=lambda: ([sample[np.newaxis].astype(np.float32)] for sample in samples),
                debug_options=options,
            )
            compared = debugger._get_numeric_verify_tensor_details()
            channel_errors.operators = len(compared)
            debugger.run()
    except Exception as exc:  # the debugger raises ValueError and RuntimeError from the interpreter
        raise ConversionError(f"the quantization debugger failed: {exc}") from exc

    by_layer: dict[str, LayerError] = {}
    for position, verify in enumerate(compared):
        # "NumericVerify/<quantized tensor>:<its index>"; the debugger offers no public accessor.
        index = int(verify["name"].rsplit(":", 1)[1])
        tensor = debugger._quant_interpreter._get_tensor_details(index, subgraph_index=0)
        op_index = debugger._defining_op[index]
        op = debugger._quant_interpreter._get_op_details(op_index)["op_name"]
        rmse_over_scale, relative = channel_errors.measures(position)
        measured = LayerError(
            layer=_layer_of(tensor["name"], layer_of_node, layer_names),
            operators=(op,),
            rmse_over_scale=rmse_over_scale,
            relative_error=relative,
            scale=channel_errors.scale[position],
            elements=channel_errors.elements[position] // max(1, len(samples)),
            position=op_index,
        )
        before = by_layer.get(measured.layer)
        if before is None:
            by_layer[measured.layer] = measured
        else:
            worst = max(before, measured, key=_rank)
            by_layer[measured.layer] = replace(
                worst,
                operators=before.operators + measured.operators,
                rmse_over_scale=max(before.rmse_over_scale, measured.rmse_over_scale),
                position=min(before.position, measured.position),
            )
    return tuple(sorted(by_layer.values(), key=_rank, reverse=True))


def _rank(error: LayerError) -> tuple[float, int]:
    """Larger relative error first; among equal ones (to 0.1%), the earlier layer, because a layer
    fed the wreck of an earlier one shows a large error too and is not the cause."""
    relative = error.relative_error if np.isfinite(error.relative_error) else -1.0
    return round(relative, 3), -error.position


def _layer_of(tensor_name: str, layer_of_node: dict[str, str], layer_names: Sequence[str]) -> str:
    from tflite_opt.verify import layer_for_tensor_name

    return layer_of_node.get(tensor_name) or layer_for_tensor_name(tensor_name, layer_names) or tensor_name


def format_error_table(errors: Sequence[LayerError], model_name: str, samples: int) -> str:
    """The per-layer table, worst first, with a line on how to read it."""
    header = ("layer", "operators", "relative error", "rmse/scale", "scale")
    rows = [
        (
            e.layer,
            ",".join(dict.fromkeys(e.operators)),
            f"{100 * e.relative_error:.2f}%" if np.isfinite(e.relative_error) else "n/a",
            f"{e.rmse_over_scale:.3f}",
            f"{e.scale:.3g}",
        )
        for e in errors
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]

    def line(cells):
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join(
        [
            f"{model_name}: int8 error per layer on {samples} calibration samples, worst first",
            line(header),
            line(["-" * w for w in widths]),
            *(line(r) for r in rows),
            "",
            "relative error: rms(int8 - float) / rms(float) per output channel, median over channels;",
            "rmse/scale: error in quantization steps (0.29 is plain rounding; far above means the layer computes "
            "badly in int8).",
            "A layer far above the others is the one to keep in float (convert --max-accuracy-drop does it).",
        ]
    )


def _define_flags(flag_values) -> None:
    from absl import flags

    from tflite_opt.cli import define_preprocessing_flags, define_unsafe_flag

    group = {"flag_values": flag_values, "module_name": "Model and data"}
    flags.DEFINE_string("model", None, "Keras model. Default: the embedded MNIST CNN.", **group)
    define_unsafe_flag(flag_values, "Model and data")
    flags.DEFINE_string("representative-data", None, "Calibration images (folder) or .npy/.npz.", **group)
    flags.DEFINE_integer("num-calibration-samples", 200, "Calibration samples to draw.", lower_bound=1, **group)
    flags.DEFINE_integer("seed", 0, "Seed of the calibration draw.", **group)
    flags.DEFINE_bool("per-tensor", False, "Measure per-tensor weight quantization.", **group)
    flags.DEFINE_list("float-layers", [], "Layers to keep in float while measuring the others.", **group)
    define_preprocessing_flags(flag_values)
    output = {"flag_values": flag_values, "module_name": "Output"}
    flags.DEFINE_bool("json", False, "Print JSON instead of the table.", **output)
    flags.DEFINE_bool("verbose", False, "Show tracebacks and TensorFlow's own log.", **output)


def _run(fv) -> int:
    from tflite_opt.cli import preprocessing_from_flags
    from tflite_opt.config import ConvertConfig
    from tflite_opt.convert import calibrate_keras
    from tflite_opt.errors import UsageError
    from tflite_opt.load import describe_classifier, load_keras_model
    from tflite_opt.pipeline import resolve_defaults
    from tflite_opt.representative import ImageSize, load_dataset

    config = resolve_defaults(
        ConvertConfig(
            model_path=Path(fv["model"].value) if fv["model"].value else None,
            representative_data=Path(fv["representative-data"].value) if fv["representative-data"].value else None,
            preprocessing=preprocessing_from_flags(fv),
            num_calibration_samples=fv["num-calibration-samples"].value,
            seed=fv["seed"].value,
            allow_unsafe_deserialization=fv["allow-unsafe-deserialization"].value,
        )
    )
    model = load_keras_model(config.model_path, config.allow_unsafe_deserialization)
    spec = describe_classifier(model, config.model_name)
    unknown = [layer for layer in fv["float-layers"].value if layer not in spec.layer_names]
    if unknown:
        raise UsageError(f"--float-layers: {spec.name} has no layer {', '.join(unknown)}")
    data = load_dataset(
        config.representative_data,
        ImageSize(spec.height, spec.width, spec.channels),
        config.num_calibration_samples,
        config.seed,
    )
    samples = data.model_input(config.preprocessing)
    calibrated = calibrate_keras(model, samples, progress=True)
    errors = quantization_errors(
        calibrated, samples, spec.layer_names, fv["per-tensor"].value, fv["float-layers"].value
    )
    if fv["json"].value:
        print(json.dumps({"model": spec.name, "samples": len(samples), "layers": [e.to_dict() for e in errors]}))
    else:
        print(format_error_table(errors, spec.name, len(samples)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tflite_opt.debug``: the per-layer quantization error table."""
    from tflite_opt.cli import run_cli

    return run_cli("tflite_opt.debug", argv, _define_flags, _run)


if __name__ == "__main__":
    sys.exit(main())
