"""Measure variants: top-1 on held-out data, through Keras and through the LiteRT interpreter."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

_INTEGER_LIMITS = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255), np.dtype(np.int16): (-32768, 32767)}


def quantize(values: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    """Float model input to an integer tensor: ``round(x / scale) + zero_point``, clipped."""
    low, high = _INTEGER_LIMITS[np.dtype(dtype)]
    return np.clip(np.round(values / scale) + zero_point, low, high).astype(dtype)


def dequantize(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Integer model output back to float: ``(q - zero_point) * scale``."""
    return (values.astype(np.float32) - zero_point) * scale


def interpreter_class() -> tuple[type, Any]:
    """LiteRT's Interpreter and OpResolverType; TensorFlow's deprecated tf.lite ones where LiteRT is missing."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        from tflite_opt.keras2 import tf

        return tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    return Interpreter, OpResolverType


class TfliteRunner:
    """Runs a .tflite classifier on float input in batches, quantizing I/O as the model says.

    XNNPACK (the default delegate) is used where it can prepare the model; where it
    cannot (sparse FULLY_CONNECTED weights from EXPERIMENTAL_SPARSITY), the runner
    falls back to the built-in kernels and says so in ``delegate``.
    """

    def __init__(self, model_content: bytes, batch_size: int = 64, num_threads: int | None = None):
        from tflite_opt.quiet import native_stderr_silenced

        with native_stderr_silenced():
            try:
                detail = self._prepare(model_content, batch_size, num_threads, default_delegates=True)
                self.delegate = "xnnpack"
            except RuntimeError:
                detail = self._prepare(model_content, batch_size, num_threads, default_delegates=False)
                self.delegate = "none (XNNPACK could not prepare this model)"
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

    def median_latency_ms(self, sample: np.ndarray, runs: int = 50, warmup: int = 5) -> float:
        """Median wall time of one invoke on ``sample`` (float model input, one batch), in ms."""
        batch = np.repeat(sample[np.newaxis], self.batch_size, axis=0) if sample.ndim == 3 else sample
        self._interpreter.set_tensor(self._input_index, self._to_input(batch))
        for _ in range(warmup):
            self._interpreter.invoke()
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            self._interpreter.invoke()
            times.append(time.perf_counter() - started)
        return 1000.0 * float(np.median(times))

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Float scores for float32 model input of shape (N, H, W, C)."""
        results = []
        for start in range(0, len(inputs), self.batch_size):
            batch = inputs[start : start + self.batch_size]
            count = len(batch)
            if count < self.batch_size:
                padding = np.zeros((self.batch_size - count, *batch.shape[1:]), dtype=batch.dtype)
                batch = np.concatenate([batch, padding])
            self._interpreter.set_tensor(self._input_index, self._to_input(batch))
            self._interpreter.invoke()
            scores = self._interpreter.get_tensor(self._output_index)[:count]
            results.append(dequantize(scores, *self._output_quant) if self._output_integer else scores.copy())
        return np.concatenate(results) if results else np.zeros((0,), dtype=np.float32)

    def _to_input(self, batch: np.ndarray) -> np.ndarray:
        if self._input_dtype.kind in "iu":
            scale, zero_point = self._input_quant
            return quantize(batch, scale, zero_point, self._input_dtype)
        return batch.astype(self._input_dtype)


def top1(scores: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose highest score is their label."""
    return float(np.mean(np.argmax(scores, axis=1) == labels))


def keras_scores(model: Any, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class scores of a Keras model."""
    return np.asarray(model.predict(inputs, batch_size=batch_size, verbose=0))


def tflite_scores(model_content: bytes, inputs: np.ndarray) -> np.ndarray:
    """Class scores of a .tflite model through the LiteRT interpreter."""
    return TfliteRunner(model_content).predict(inputs)


def single_image_latency(model_content: bytes, sample: np.ndarray) -> tuple[float, str]:
    """(median ms of one single-image invoke, the delegate used)."""
    runner = TfliteRunner(model_content, batch_size=1)
    return runner.median_latency_ms(sample), runner.delegate
