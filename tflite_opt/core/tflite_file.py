"""Read a .tflite flatbuffer in pure Python: tensors, operators, weight buffers.

Uses the schema that ships with ai-edge-litert, so nothing here runs native code
on the file: it is safe to call before handing the file to the interpreter.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from tflite_opt.core.errors import ModelLoadError

FILE_IDENTIFIER = b"TFL3"

_NUMPY_DTYPES = {
    "FLOAT32": np.float32,
    "FLOAT16": np.float16,
    "FLOAT64": np.float64,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
}
FLOAT_TYPES = frozenset({"FLOAT32", "FLOAT16", "FLOAT64"})


@cache
def _schema():
    # Deferred: the generated schema is a large module, needed only when a file is read.
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


@cache
def _enum_names(enum_name: str) -> dict[int, str]:
    enum_class = getattr(_schema(), enum_name)
    return {value: name for name, value in vars(enum_class).items() if not name.startswith("_")}


@dataclass(frozen=True)
class Quantization:
    scales: tuple[float, ...]
    zero_points: tuple[int, ...]
    axis: int

    @property
    def scale(self) -> float:
        return self.scales[0]

    @property
    def zero_point(self) -> int:
        return self.zero_points[0]


@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    buffer: int
    quantization: Quantization | None
    is_constant: bool
    is_sparse: bool = False

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_TYPES


@dataclass(frozen=True)
class Operator:
    index: int
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class TfliteFile:
    """The main subgraph of a .tflite model, and the model's named metadata buffers (``TFLITE_METADATA``,
    ``min_runtime_version``, ...)."""

    tensors: tuple[Tensor, ...]
    operators: tuple[Operator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    buffers: tuple[bytes, ...]
    metadata: tuple[tuple[str, bytes], ...] = ()

    def metadata_buffer(self, name: str) -> bytes | None:
        """The bytes of the metadata entry called ``name``, or None."""
        return next((data for entry, data in self.metadata if entry == name), None)

    def input_tensors(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.inputs]

    def output_tensors(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.outputs]

    def constant_array(self, tensor: Tensor) -> np.ndarray:
        """The stored values of a constant tensor (weights, biases); 1-D for a sparse tensor,
        which stores only its non-zero blocks."""
        if not tensor.is_constant:
            raise ValueError(f"tensor {tensor.name!r} has no stored values")
        dtype = _NUMPY_DTYPES.get(tensor.dtype)
        if dtype is None:
            raise ValueError(f"tensor {tensor.name!r} has unsupported type {tensor.dtype}")
        values = np.frombuffer(self.buffers[tensor.buffer], dtype=dtype)
        return values if tensor.is_sparse else values.reshape(tensor.shape)


def _ints(table, field: str) -> tuple[int, ...]:
    """A flatbuffer vector field as ints; the generated code returns 0, not [], for an absent vector."""
    if not getattr(table, f"{field}Length")():
        return ()
    return tuple(int(x) for x in getattr(table, f"{field}AsNumpy")())


def read_tflite(data: bytes, source: str = "model") -> TfliteFile:
    """Parse a .tflite flatbuffer.

    Raises:
        ModelLoadError: the bytes are not a TFLite model or cannot be parsed.
    """
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise ModelLoadError(f"{source} is not a TFLite model (no {FILE_IDENTIFIER.decode()} file identifier)")
    try:
        model = _schema().Model.GetRootAs(data, 0)
        if model.SubgraphsLength() < 1:
            raise ModelLoadError(f"{source} has no subgraph")
        buffers = _buffers(model, data)
        graph = model.Subgraphs(0)
        tensors = tuple(_tensor(graph.Tensors(i), i, buffers, source) for i in range(graph.TensorsLength()))
        operators = _operators(graph, _opcode_names(model), source)
        inputs, outputs = _ints(graph, "Inputs"), _ints(graph, "Outputs")
        metadata = _metadata(model, buffers)
    except ModelLoadError:
        raise
    except Exception as exc:  # a malformed flatbuffer surfaces as any of several errors
        raise ModelLoadError(f"{source} is not a valid TFLite model: {type(exc).__name__}: {exc}") from exc
    for index in (*inputs, *outputs, *(i for op in operators for i in (*op.inputs, *op.outputs))):
        if not -1 <= index < len(tensors):
            raise ModelLoadError(f"{source} refers to tensor {index}, which does not exist")
    return TfliteFile(tensors, operators, inputs, outputs, buffers, metadata)


def set_input_range(content: bytes, low: float, high: float) -> bytes:
    """A calibrated model (from the converter's calibrate-only step) whose input tensor records the range
    ``low..high`` instead of the one seen in calibration, so quantizing it gives the input the scale
    ``(high - low) / 255`` exactly.

    The two floats are overwritten where they are stored; nothing else of the file changes.

    Raises:
        ModelLoadError: the model is not calibrated, or its input does not record one min and one max.
    """
    data = bytearray(content)
    model = _schema().Model.GetRootAs(data, 0)
    graph = model.Subgraphs(0)
    for index in _ints(graph, "Inputs"):
        q = graph.Tensors(index).Quantization()
        if q is None or q.MinLength() != 1 or q.MaxLength() != 1:
            raise ModelLoadError("the model's input records no calibrated range to set")
        # On a bytearray these are writable views into the file's bytes.
        q.MinAsNumpy()[0], q.MaxAsNumpy()[0] = low, high
    return bytes(data)


def _opcode_names(model) -> list[str]:
    """Operator names by opcode index; a custom operator as ``CUSTOM:<its name>``."""
    op_names = _enum_names("BuiltinOperator")
    names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = op_names.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            custom = code.CustomCode()
            name = f"CUSTOM:{custom.decode() if custom else '?'}"
        names.append(name)
    return names


def _buffers(model, data: bytes) -> tuple[bytes, ...]:
    """Every buffer's bytes: stored inline, or (files over 2 GB) at an offset past the flatbuffer."""
    buffers = []
    for i in range(model.BuffersLength()):
        buffer = model.Buffers(i)
        if buffer.Offset() > 1:
            buffers.append(bytes(data[buffer.Offset() : buffer.Offset() + buffer.Size()]))
        elif buffer.DataLength():
            buffers.append(buffer.DataAsNumpy().tobytes())
        else:
            buffers.append(b"")
    return tuple(buffers)


def _metadata(model, buffers: tuple[bytes, ...]) -> tuple[tuple[str, bytes], ...]:
    """(name, bytes) of each metadata entry; one pointing at no buffer is left out (the interpreter needs none)."""
    entries = []
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if 0 <= entry.Buffer() < len(buffers):
            entries.append(((entry.Name() or b"").decode("utf-8", "replace"), buffers[entry.Buffer()]))
    return tuple(entries)


def _tensor(table, index: int, buffers: tuple[bytes, ...], source: str) -> Tensor:
    quantization = None
    q = table.Quantization()
    if q is not None and q.ScaleLength():
        quantization = Quantization(
            scales=tuple(float(s) for s in q.ScaleAsNumpy()),
            zero_points=_ints(q, "ZeroPoint") or (0,),
            axis=int(q.QuantizedDimension()),
        )
    buffer_index = table.Buffer()
    if not 0 <= buffer_index < len(buffers):
        raise ModelLoadError(f"{source}: tensor {index} points at buffer {buffer_index}, which does not exist")
    return Tensor(
        index=index,
        name=(table.Name() or b"").decode("utf-8", "replace"),
        dtype=_enum_names("TensorType").get(table.Type(), f"TYPE_{table.Type()}"),
        shape=_ints(table, "Shape"),
        buffer=buffer_index,
        quantization=quantization,
        is_constant=buffer_index > 0 and len(buffers[buffer_index]) > 0,
        is_sparse=table.Sparsity() is not None,
    )


def _operators(graph, opcodes: list[str], source: str) -> tuple[Operator, ...]:
    operators = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        index = op.OpcodeIndex()
        if not 0 <= index < len(opcodes):
            raise ModelLoadError(f"{source}: operator {i} has unknown opcode index {index}")
        operators.append(
            Operator(index=i, name=opcodes[index], inputs=_ints(op, "Inputs"), outputs=_ints(op, "Outputs"))
        )
    return tuple(operators)


KERNEL_OPERATORS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"})


def kernel_tensor(model: TfliteFile, op: Operator) -> Tensor | None:
    """The stored weight tensor of a conv or dense operator, looking through the DEQUANTIZE
    (float16 weights) or DENSIFY (sparse weights) that may produce it."""
    if op.name not in KERNEL_OPERATORS or len(op.inputs) < 2 or op.inputs[1] < 0:
        return None
    weights = model.tensors[op.inputs[1]]
    for _ in range(2):  # at most DENSIFY then DEQUANTIZE
        if weights.is_constant:
            return weights
        producer = next((o for o in model.operators if weights.index in o.outputs), None)
        if producer is None or producer.name not in ("DEQUANTIZE", "DENSIFY") or not producer.inputs:
            return None
        weights = model.tensors[producer.inputs[0]]
    return weights if weights.is_constant else None


def weight_counts(model: TfliteFile, tensor: Tensor) -> tuple[int, int]:
    """(weights, non-zero weights) of a stored tensor, dense or sparse."""
    values = model.constant_array(tensor)
    return int(np.prod(tensor.shape)), int(np.count_nonzero(values))


def distinct_per_channel(model: TfliteFile, op: Operator, tensor: Tensor) -> int:
    """The largest number of distinct stored values in one output channel of a weight tensor (clustering keeps
    it at most the number of clusters). The output channel is the first axis, the last for a depthwise kernel."""
    values = model.constant_array(tensor).reshape(tensor.shape)
    axis = values.ndim - 1 if op.name == "DEPTHWISE_CONV_2D" else 0
    channels = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
    return max(len(np.unique(channel)) for channel in channels)
