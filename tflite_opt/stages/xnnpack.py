"""Keep a full-int8 graph in one XNNPACK partition: rewrite the int8 operators XNNPACK leaves to the built-in
kernels into operators it runs, where that makes the file faster and no less faithful to the float model; and say,
for the operators that have no such rewrite, what they cost and what to do.

XNNPACK takes no int8 HARD_SWISH: in a MobileNetV3 each one splits the graph, the data crosses between XNNPACK and
the built-in kernels at every split, and the int8 file runs slower than float32. hard_swish(x) = x * relu6(x + 3) / 6
is rewritten as ``ADD(x, 3)`` with a fused RELU6, ``MUL`` by 1/6 and ``MUL`` by x, all int8, all taken by XNNPACK.
The 1/6 needs its own ``MUL``: every TFLite operator computes on real values, so the factor cannot hide in a
tensor's scale without changing every consumer of the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as tflite_schema

from tflite_opt.core.interpreter import TfliteRunner
from tflite_opt.core.text import by_reason
from tflite_opt.core.tflite_file import FILE_IDENTIFIER, TfliteFile
from tflite_opt.results.files import Check

HARD_SWISH = "HARD_SWISH"
REWRITE_FORM = "ADD(x, 3) with RELU6, MUL by 1/6, MUL by x"
# Why XNNPACK leaves an operator of an int8 classifier to the built-in kernels, and what helps. Measured on
# ai-edge-litert 2.3 (one small Keras model per operator); the reasons are in LiteRT's xnnpack_delegate.cc.
_DYNAMIC_SHAPE = (
    "a shape computed at run time from the dynamic batch (Keras 3's Flatten or Reshape); XNNPACK takes only "
    "constant shapes: GlobalAveragePooling2D instead of Flatten, or a model built with batch_size=1, avoids it"
)
INT8_GAPS = {
    HARD_SWISH: f"float-only in XNNPACK; tflite_opt.convert rewrites it as {REWRITE_FORM} where that is faster "
    "(its XNNPACK check says whether it did)",
    "SOFTMAX": "float-only in XNNPACK; at the end of a classifier it runs once on a few scores and costs little; "
    "a model that outputs logits avoids it (top-1 is the same)",
    "AVERAGE_POOL_2D": "float-only in XNNPACK; GlobalAveragePooling2D converts to MEAN, which it takes",
    "PRELU": "float-only in XNNPACK; LeakyReLU (one slope) is taken",
    "MAXIMUM": "float-only in XNNPACK; a clip at 0 or 6 written as ReLU or ReLU6 fuses into the layer before",
    "MINIMUM": "float-only in XNNPACK; a clip at 0 or 6 written as ReLU or ReLU6 fuses into the layer before",
    "GELU": "float-only in XNNPACK; swish (LOGISTIC and MUL) is taken",
    "RELU": "float-only in XNNPACK when it stands alone (on the input); after a layer it fuses into that layer",
    "RELU6": "float-only in XNNPACK when it stands alone (on the input); after a layer it fuses into that layer",
    "RSQRT": "LayerNormalization: float-only in XNNPACK; BatchNormalization folds into the convolution before",
    "SQUARED_DIFFERENCE": "LayerNormalization: float-only in XNNPACK; BatchNormalization folds into the convolution",
    "TILE": "Keras 3's nearest-neighbour UpSampling2D; no TILE in XNNPACK; bilinear upsampling is taken",
    "SHAPE": _DYNAMIC_SHAPE,
    "PACK": _DYNAMIC_SHAPE,
    "RESHAPE": _DYNAMIC_SHAPE,
    "STRIDED_SLICE": _DYNAMIC_SHAPE,  # left only on the int32 shape it slices; XNNPACK takes it on int8 data
    "TRANSPOSE_CONV": "Conv2DTranspose with a dynamic batch; XNNPACK takes it with a constant output shape "
    "(a model built with batch_size=1)",
}
_TIMING_ROUNDS = 7
COMPARED_IMAGES = 32


def int8_hard_swish_count(model: TfliteFile) -> int:
    """The HARD_SWISH operators of ``model`` that compute in int8."""
    return sum(1 for op in model.operators if op.name == HARD_SWISH and model.tensors[op.inputs[0]].dtype == "INT8")


def gap_advice(undelegated: tuple[tuple[str, int], ...]) -> list[str]:
    """A sentence for the operators left to the built-in kernels that have one (see ``INT8_GAPS``), operators that
    share a reason named together."""
    return by_reason([(name, INT8_GAPS[name]) for name, _ in undelegated if name in INT8_GAPS])


def rewrite_hard_swish(content: bytes) -> bytes:
    """``content`` with every int8 HARD_SWISH replaced by ``REWRITE_FORM`` (pure Python: nothing native reads the
    file). The intermediate tensors take the ranges hard-swish implies: relu6(x + 3) in [0, 6] and
    hard_sigmoid(x) in [0, 1], each over the whole int8 range. Takes a file before its TFLite Metadata is added:
    the associated files packed after the flatbuffer (labels) do not survive the rewrite."""
    model = tflite_schema.ModelT.InitFromObj(tflite_schema.Model.GetRootAs(content, 0))
    codes = tflite_schema.BuiltinOperator
    hard_swish = {i for i, code in enumerate(model.operatorCodes) if _builtin(code) == codes.HARD_SWISH}
    add, mul = _opcode(model, codes.ADD), _opcode(model, codes.MUL)
    for graph in model.subgraphs:
        operators = []
        for op in graph.operators:
            x = int(op.inputs[0])
            if op.opcodeIndex not in hard_swish or graph.tensors[x].type != tflite_schema.TensorType.INT8:
                operators.append(op)
                continue
            n = len(operators)
            shape = list(graph.tensors[x].shape)
            three = _tensor(model, graph, f"hard_swish_rewrite/{n}/three", [], 1 / 32, np.int8(96))
            sixth = _tensor(model, graph, f"hard_swish_rewrite/{n}/sixth", [], 1 / 6 / 127, np.int8(127))
            relu6 = _tensor(model, graph, f"hard_swish_rewrite/{n}/relu6", shape, 6 / 255)
            sigmoid = _tensor(model, graph, f"hard_swish_rewrite/{n}/hard_sigmoid", shape, 1 / 255)
            operators += [
                _operator(add, [x, three], [relu6], "Add", tflite_schema.ActivationFunctionType.RELU6),
                _operator(mul, [relu6, sixth], [sigmoid], "Mul"),
                _operator(mul, [x, sigmoid], [int(o) for o in op.outputs], "Mul"),
            ]
        graph.operators = operators
    builder = flatbuffers.Builder(len(content) + 4096)
    builder.Finish(model.Pack(builder), FILE_IDENTIFIER)
    return bytes(builder.Output())


@dataclass(frozen=True)
class _Timed:
    """One file as XNNPACK runs it: its parts and its median invoke time over interleaved rounds."""

    parts: int
    median_ms: float


def faster_hard_swish(
    content: bytes, model: TfliteFile, samples: np.ndarray, reference: np.ndarray
) -> tuple[bytes, Check]:
    """The file to keep (``content`` or its :func:`rewrite_hard_swish`), and a check that says which and why.

    The rewrite is kept where XNNPACK runs it faster (both timed interleaved, one thread, medians) and its scores
    stay as close to the float model's (``reference``, on ``samples``) as the built-in HARD_SWISH's, within half an
    output quantization step on average.
    """
    count = int8_hard_swish_count(model)
    rewritten = rewrite_hard_swish(content)
    runners = {"built-in": TfliteRunner(content, batch_size=1, num_threads=1)}
    runners["rewrite"] = TfliteRunner(rewritten, batch_size=1, num_threads=1)
    error = {name: _score_error(runner, samples, reference) for name, runner in runners.items()}
    timed = _timed(runners, samples[0])
    faster = timed["rewrite"].median_ms < timed["built-in"].median_ms
    faithful = error["rewrite"] <= error["built-in"] + 0.5
    figures = (
        f"XNNPACK runs {_parts(timed['rewrite'].parts)} instead of {timed['built-in'].parts}, "
        f"{timed['rewrite'].median_ms:.3g} ms vs {timed['built-in'].median_ms:.3g} ms (median invoke, 1 thread, "
        f"interleaved); scores {error['rewrite']:.2f} output steps from the float model's on average vs "
        f"{error['built-in']:.2f} with the built-in kernel ({len(samples)} calibration images)"
    )
    if faster and faithful:
        return rewritten, Check("XNNPACK", True, f"{count} int8 HARD_SWISH rewritten as {REWRITE_FORM}: {figures}")
    why = "not faster" if not faster else "further from the float model"
    return content, Check("XNNPACK", True, f"{count} int8 HARD_SWISH kept: the rewrite was {why} ({figures})")


def _parts(count: int) -> str:
    return f"{count} part" + ("" if count == 1 else "s")


def _score_error(runner: TfliteRunner, samples: np.ndarray, reference: np.ndarray) -> float:
    """Mean distance of the file's scores from the float model's, in output quantization steps."""
    # A float output is measured in steps of 1/255 of the float model's range, as an int8 output would be.
    step = runner.output_quantization[0] if runner.output_quantization else float(np.ptp(reference) or 1.0) / 255
    return float(np.mean(np.abs(runner.predict(samples) - reference)) / step)


def _timed(runners: dict[str, TfliteRunner], sample: np.ndarray) -> dict[str, _Timed]:
    times: dict[str, list[float]] = {name: [] for name in runners}
    for runner in runners.values():
        runner.load(sample)
        runner.invoke()  # the first invoke prepares XNNPACK's kernels
    for _ in range(_TIMING_ROUNDS):
        for name, runner in runners.items():
            times[name] += [runner.invoke_timed()[0] for _ in range(3)]
    return {name: _Timed(runners[name].delegation()[0], float(np.median(times[name]))) for name in runners}


def _builtin(code: Any) -> int:
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def _opcode(model: Any, builtin: int) -> int:
    """The index of ``builtin``'s operator code, added where the file has none; at least version 2, the int8
    kernel's (a float-only file's ADD is version 1)."""
    for index, code in enumerate(model.operatorCodes):
        if _builtin(code) == builtin:
            code.version = max(code.version, 2)
            return index
    code = tflite_schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 2
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _tensor(model: Any, graph: Any, name: str, shape: list[int], scale: float, constant: Any = None) -> int:
    """A new int8 tensor of ``graph`` (zero point 0 for a constant, -128 for a range that starts at 0)."""
    tensor = tflite_schema.TensorT()
    tensor.name, tensor.shape, tensor.type = name.encode(), np.array(shape, np.int32), tflite_schema.TensorType.INT8
    quantization = tflite_schema.QuantizationParametersT()
    quantization.scale = np.array([scale], np.float32)
    quantization.zeroPoint = np.array([0 if constant is not None else -128], np.int64)
    tensor.quantization = quantization
    tensor.buffer = 0
    if constant is not None:
        buffer = tflite_schema.BufferT()
        buffer.data = np.frombuffer(np.asarray(constant, np.int8).tobytes(), np.uint8)
        model.buffers.append(buffer)
        tensor.buffer = len(model.buffers) - 1
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _operator(opcode: int, inputs: list[int], outputs: list[int], kind: str, activation: int = 0) -> Any:
    """An ``Add`` or ``Mul`` operator (``kind``) with its fused activation."""
    op = tflite_schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = opcode, np.array(inputs, np.int32), np.array(outputs, np.int32)
    op.builtinOptionsType = getattr(tflite_schema.BuiltinOptions, f"{kind}Options")
    op.builtinOptions = getattr(tflite_schema, f"{kind}OptionsT")()
    op.builtinOptions.fusedActivationFunction = activation
    return op
