"""Per-layer int8 quantization error, with Keras layer names (``python -m tflite_opt.debug`` prints it).

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

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from tflite_opt.core import keras2
from tflite_opt.core.config import IoType
from tflite_opt.core.errors import ConversionError
from tflite_opt.core.quiet import native_stderr_silenced
from tflite_opt.core.text import aligned
from tflite_opt.core.tflite_file import TfliteFile, read_tflite
from tflite_opt.results.search import LayerError
from tflite_opt.stages.convert import quantize_calibrated
from tflite_opt.stages.verify import layer_for_tensor_name, layers_for_operator

# Values this close to zero have no meaningful relative error.
_TINY = 1e-6


def operator_layers(calibrated: TfliteFile, layer_names: Sequence[str]) -> dict[str, tuple[str, list[str]]]:
    """Each operator of a calibrated model by its output tensor's name: (the operator, the Keras layers it carries,
    the one owning its weights first); an operator no layer name matches carries its output's name."""
    found = {}
    for op in calibrated.operators:
        if not op.outputs or op.outputs[0] < 0:
            continue
        output = calibrated.tensors[op.outputs[0]].name
        found[output] = (op.name, layers_for_operator(calibrated, op, layer_names) or [output])
    return found


def layer_nodes(calibrated: TfliteFile, layer_names: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """(operator, output tensor name) of each Keras layer's operators in a calibrated model: an operator fused
    from several layers (a convolution and the next layer's activation) is listed under each.

    An operator no layer name matches is listed under its output tensor's name.
    """
    nodes: dict[str, list[tuple[str, str]]] = {}
    for output, (op_name, layers) in operator_layers(calibrated, layer_names).items():
        for layer in layers:
            nodes.setdefault(layer, []).append((op_name, output))
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
        calibrated: output of :func:`tflite_opt.stages.convert.calibrate_keras`.
        samples: float model input (N, H, W, C) to run the comparison on.
        layer_names: the Keras model's layer names, to name operators.
        per_tensor: measure the model quantized with one scale per weight tensor.
        float_layers: layers already kept in float (they are not measured).

    Raises:
        ConversionError: the debugger could not build or run the instrumented model.
    """
    parsed = read_tflite(calibrated, source="the calibrated model")
    carried = {output: layers for output, (_, layers) in operator_layers(parsed, layer_names).items()}
    layer_of_node = {output: layers[0] for output, layers in carried.items()}
    keep = float_nodes(layer_nodes(parsed, layer_names), float_layers)
    debug_model = quantize_calibrated(calibrated, IoType.FLOAT32, per_tensor, keep, numeric_verify=True)
    debugger, compared, channel_errors = _run_debugger(debug_model, samples)
    by_layer: dict[str, LayerError] = {}
    for position, verify in enumerate(compared):
        # "NumericVerify/<quantized tensor>:<its index>"; the debugger offers no public accessor.
        index = int(verify["name"].rsplit(":", 1)[1])
        tensor = debugger._quant_interpreter._get_tensor_details(index, subgraph_index=0)
        op_index = debugger._defining_op[index]
        rmse_over_scale, relative = channel_errors.measures(position)
        measured = LayerError(
            layer=_layer_of(tensor["name"], layer_of_node, layer_names, _input_names(debugger, op_index)),
            operators=(debugger._quant_interpreter._get_op_details(op_index)["op_name"],),
            carries=tuple(carried.get(_calibrated_name(tensor["name"], carried), [])[1:]),
            rmse_over_scale=rmse_over_scale,
            relative_error=relative,
            scale=channel_errors.scale[position],
            elements=channel_errors.elements[position] // max(1, len(samples)),
            position=op_index,
        )
        by_layer[measured.layer] = _merged(by_layer.get(measured.layer), measured)
    return tuple(sorted(by_layer.values(), key=_rank, reverse=True))


def _run_debugger(debug_model: bytes, samples: np.ndarray) -> tuple[Any, list[dict], _ChannelErrors]:
    """TensorFlow's QuantizationDebugger run over ``samples``: the debugger, the NumericVerify tensors it
    compared (in the order it reports them), and the per-channel errors collected."""
    tf = keras2.tf
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
    return debugger, compared, channel_errors


def _merged(before: LayerError | None, measured: LayerError) -> LayerError:
    """One layer's errors over its operators: the worst operator's figures, every operator named."""
    if before is None:
        return measured
    worst = max(before, measured, key=_rank)
    return replace(
        worst,
        operators=before.operators + measured.operators,
        carries=tuple(dict.fromkeys(before.carries + measured.carries)),
        rmse_over_scale=max(before.rmse_over_scale, measured.rmse_over_scale),
        position=min(before.position, measured.position),
    )


def _rank(error: LayerError) -> tuple[float, int]:
    """Larger relative error first; among equal ones (to 0.1%), the earlier layer, because a layer
    fed the wreck of an earlier one shows a large error too and is not the cause."""
    relative = error.relative_error if np.isfinite(error.relative_error) else -1.0
    return round(relative, 3), -error.position


def _layer_of(
    tensor_name: str, layer_of_node: dict[str, str], layer_names: Sequence[str], input_names: Sequence[str] = ()
) -> str:
    """The layer an operator belongs to: told from its output, else from its inputs, weights first (the model's
    last output is named after the signature, StatefulPartitionedCall:0)."""
    found = layer_of_node.get(_calibrated_name(tensor_name, layer_of_node)) or layer_for_tensor_name(
        tensor_name, layer_names
    )
    for name in reversed(input_names):
        found = found or layer_for_tensor_name(name, layer_names)
    return found or tensor_name


def _calibrated_name(debug_name: str, calibrated_names: Mapping[str, Any]) -> str:
    """The calibrated model's name of a tensor of the debug model: the quantized copy the debugger compares is
    named after the original with a "1" appended (``.../Conv2D`` → ``.../Conv2D1``)."""
    if debug_name not in calibrated_names and debug_name.endswith("1") and debug_name[:-1] in calibrated_names:
        return debug_name[:-1]
    return debug_name


def _input_names(debugger: Any, op_index: int) -> list[str]:
    """The names of an operator's input tensors in the debugger's quantized model."""
    interpreter = debugger._quant_interpreter
    inputs = interpreter._get_op_details(op_index)["inputs"]
    return [interpreter._get_tensor_details(i, subgraph_index=0)["name"] for i in inputs if i >= 0]


def format_error_table(errors: Sequence[LayerError], model_name: str, samples: int) -> str:
    """The per-layer table, worst first, with a line on how to read it."""
    header = ("layer", "operators", "relative error", "rmse/scale", "scale")
    rows = [
        (
            e.layer + (f" (+{', '.join(e.carries)})" if e.carries else ""),
            ",".join(dict.fromkeys(e.operators)),
            f"{100 * e.relative_error:.2f}%" if np.isfinite(e.relative_error) else "n/a",
            f"{e.rmse_over_scale:.3f}",
            f"{e.scale:.3g}",
        )
        for e in errors
    ]
    return "\n".join(
        [
            f"{model_name}: int8 error per layer on {samples} calibration samples, worst first",
            *aligned(header, rows, left=2),
            "",
            "relative error: rms(int8 - float) / rms(float) per output channel, median over channels;",
            "rmse/scale: error in quantization steps (0.29 is plain rounding; far above means the layer computes "
            "badly in int8).",
            "Equal relative errors (to 0.1%): the earlier layer first, since a layer fed an earlier one's error shows "
            "it too. (+name): a layer the converter fused into this one's operator; either name is accepted by "
            "--float-layers.",
            "A layer far above the others is the one to keep in float (convert --max-accuracy-drop does it).",
        ]
    )
