"""Run a .tflite classifier with the LiteRT interpreter, in batches, quantizing I/O as the model says."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import numpy as np

from tflite_opt.core import keras2
from tflite_opt.core.quiet import native_stderr_silenced

# The range of each integer tensor type, by its name in a manifest or numpy.
INTEGER_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}
# The one rounding rule for float input quantized outside the model: the benchmark, the manifest, the
# generated app code and the reference runner all use it. It is TFLite's own (its QUANTIZE kernel uses
# std::round), and Swift's default; numpy's round (half to even) and Kotlin's Math.round (half up) are not.
ROUNDING = "half away from zero"


def round_half_away_from_zero(values: np.ndarray) -> np.ndarray:
    """Round to the nearest integer; a value exactly halfway goes away from zero (2.5 → 3, -2.5 → -3).

    Exact for every float (``floor(x + 0.5)`` is not: 0.49999997 + 0.5 rounds up to 1.0 in float32).
    """
    whole = np.trunc(values)
    return np.where(np.abs(values - whole) >= 0.5, whole + np.sign(values), whole)


def quantize(values: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    """Float model input to an integer tensor: ``round(x / scale) + zero_point``, clipped, in float32 and with
    :data:`ROUNDING`, as the manifest tells an app to compute it."""
    low, high = INTEGER_RANGES[np.dtype(dtype).name]
    steps = np.asarray(values, dtype=np.float32) / np.float32(scale)
    return np.clip(round_half_away_from_zero(steps) + zero_point, low, high).astype(dtype)


def dequantize(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Integer model output back to float: ``(q - zero_point) * scale``."""
    return (values.astype(np.float32) - zero_point) * scale


def interpreter_class() -> tuple[type, Any]:
    """LiteRT's Interpreter and OpResolverType; TensorFlow's deprecated tf.lite ones where LiteRT is missing."""
    try:
        # Deferred: loads the native interpreter library, which --help does not need.
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        return keras2.tf.lite.Interpreter, keras2.tf.lite.experimental.OpResolverType
    return Interpreter, OpResolverType


class TfliteRunner:
    """Runs a .tflite classifier on float input in batches, quantizing I/O as the model says.

    XNNPACK (the default delegate) is used where it can prepare the model; where it
    cannot (sparse FULLY_CONNECTED weights from EXPERIMENTAL_SPARSITY), the runner
    falls back to the built-in kernels and says so in ``delegate``.
    """

    def __init__(
        self, model_content: bytes, batch_size: int = 64, num_threads: int | None = None, use_xnnpack: bool = True
    ):
        started = time.perf_counter()
        with native_stderr_silenced():
            if not use_xnnpack:
                detail = self._prepare(model_content, batch_size, num_threads, default_delegates=False)
                self.delegate = "none"
            else:
                try:
                    detail = self._prepare(model_content, batch_size, num_threads, default_delegates=True)
                    self.delegate = "xnnpack"
                except RuntimeError:
                    detail = self._prepare(model_content, batch_size, num_threads, default_delegates=False)
                    self.delegate = "none (XNNPACK could not prepare this model)"
        self.init_ms = 1000.0 * (time.perf_counter() - started)
        self._input_index = detail["index"]
        self._input_dtype = np.dtype(detail["dtype"])
        self._input_quant = detail["quantization"]
        output = self._interpreter.get_output_details()[0]
        self._output_index = output["index"]
        self._output_quant = output["quantization"]
        self._output_integer = np.dtype(output["dtype"]).kind in "iu"

    def _prepare(self, content: bytes, batch_size: int, num_threads: int | None, default_delegates: bool) -> dict:
        interpreter_type, resolver = interpreter_class()
        options = (
            {} if default_delegates else {"experimental_op_resolver_type": resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
        )
        self._interpreter = interpreter_type(model_content=content, num_threads=num_threads, **options)
        detail = self._interpreter.get_input_details()[0]
        # A dynamic batch dimension lets one invoke score many images at once.
        dynamic = len(detail["shape_signature"]) > 0 and detail["shape_signature"][0] == -1
        self.batch_size = batch_size if dynamic else int(detail["shape"][0])
        if dynamic:
            self._interpreter.resize_tensor_input(detail["index"], [self.batch_size, *detail["shape"][1:]])
        self._interpreter.allocate_tensors()
        return detail

    def delegation(self) -> tuple[int, tuple[tuple[str, int], ...]]:
        """(how many parts XNNPACK took, the operators left to the built-in kernels with their counts);
        (0, ()) without XNNPACK.

        An operator XNNPACK cannot run splits the graph: each part becomes a DELEGATE node, and the data
        crosses between XNNPACK and the built-in kernels at every split (an int8 HARD_SWISH does this in
        MobileNetV3). The interpreter lists the model's own nodes, then the DELEGATE nodes; a model node ran
        by XNNPACK is one a DELEGATE node's outputs are computed from, back to that node's inputs.
        """
        if self.delegate != "xnnpack":
            return 0, ()
        nodes = self._interpreter._get_ops_details()
        parts = [node for node in nodes if node["op_name"] == "DELEGATE"]
        producer = {int(t): node["index"] for node in nodes if node["op_name"] != "DELEGATE" for t in node["outputs"]}
        taken: set[int] = set()
        for part in parts:
            boundary = {int(t) for t in part["inputs"]}
            pending = [int(t) for t in part["outputs"]]
            while pending:
                tensor = pending.pop()
                index = producer.get(tensor)
                if tensor in boundary or index is None or index in taken:
                    continue
                taken.add(index)
                pending.extend(int(t) for t in nodes[index]["inputs"] if t >= 0)
        left = Counter(n["op_name"] for n in nodes if n["op_name"] != "DELEGATE" and n["index"] not in taken)
        return len(parts), tuple(sorted(left.items(), key=lambda item: (-item[1], item[0])))

    def invoke_on_zeros(self) -> None:
        """One invoke on an all-zero input of the model's own type: where a malformed model crashes."""
        detail = self._interpreter.get_input_details()[0]
        self._interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], dtype=detail["dtype"]))
        self._interpreter.invoke()

    def load(self, sample: np.ndarray) -> None:
        """Set the input to ``sample`` (one image of float model input) for every image of the batch, to time."""
        batch = np.repeat(sample[np.newaxis], self.batch_size, axis=0)
        self._interpreter.set_tensor(self._input_index, self._to_input(batch))

    def invoke(self) -> None:
        """One invoke on the input already set."""
        self._interpreter.invoke()

    def invoke_timed(self) -> tuple[float, float]:
        """One invoke on the input already set: (wall time, CPU time of the calling thread), in ms.

        With one interpreter thread the calling thread does all the work, so wall time far above CPU time
        means the thread waited for the processor: the machine was busy.
        """
        wall = time.perf_counter()
        cpu = time.thread_time()
        self._interpreter.invoke()
        cpu = time.thread_time() - cpu
        wall = time.perf_counter() - wall  # the CPU-time interval lies within the wall-time one
        return 1000.0 * wall, 1000.0 * cpu

    @property
    def output_quantization(self) -> tuple[float, int] | None:
        """The output's (scale, zero point), None for float output."""
        return tuple(self._output_quant) if self._output_integer else None

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Float scores for float32 model input of shape (N, H, W, C)."""
        _, raw = self.tensors(inputs)
        return dequantize(raw, *self._output_quant) if self._output_integer else raw

    def tensors(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the input tensors fed, the raw output tensors) for float32 model input of shape (N, H, W, C): integer
        output stays integer."""
        fed, results = [], []
        for start in range(0, len(inputs), self.batch_size):
            batch = inputs[start : start + self.batch_size]
            count = len(batch)
            if count < self.batch_size:
                padding = np.zeros((self.batch_size - count, *batch.shape[1:]), dtype=batch.dtype)
                batch = np.concatenate([batch, padding])
            tensor = self._to_input(batch)
            self._interpreter.set_tensor(self._input_index, tensor)
            self._interpreter.invoke()
            fed.append(tensor[:count])
            results.append(self._interpreter.get_tensor(self._output_index)[:count].copy())
        if not results:
            return np.zeros((0,), dtype=self._input_dtype), np.zeros((0,), dtype=np.float32)
        return np.concatenate(fed), np.concatenate(results)

    def _to_input(self, batch: np.ndarray) -> np.ndarray:
        if self._input_dtype.kind in "iu":
            scale, zero_point = self._input_quant
            return quantize(batch, scale, zero_point, self._input_dtype)
        return batch.astype(self._input_dtype)
