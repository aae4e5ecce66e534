"""Golden vectors: a few held-out images, the exact input tensor the model must receive for each, and the output.

An app proves it feeds the model what the benchmark fed it by running its own preprocessing on the images' pixels
and comparing: the input tensor's sha256 must be the one recorded (byte for byte), and the output the recorded one
within one quantization step (XNNPACK and the built-in kernels may round a final requantization differently). The
pixels are stored already at the model's size, as PNG (lossless), so the check covers everything after the resize;
the reference runner and the generated helpers check them.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tflite_opt.core.interpreter import TfliteRunner, dequantize
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.stages.data import Dataset, DataSource, apply_preprocessing

GOLDEN_SCHEMA_VERSION = 1
# Enough to catch a channel order, a rounding rule or a normalization an app got wrong; few enough to stay small.
GOLDEN_IMAGES = 3
_PNG_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


@dataclass(frozen=True)
class GoldenSource:
    """The images golden vectors are made of: pixels at the model's size (0..255), where they came from and, where
    known, each one's class index."""

    pixels: np.ndarray
    names: tuple[str, ...]
    truths: tuple[int | None, ...]


def golden_source(evaluation: DataSource | None, calibration: Dataset | None) -> GoldenSource | None:
    """A few held-out images spread over the evaluation set (calibration images where there is none), or None
    where the samples are not pixels 0..255 (an array file of normalized values), which a PNG cannot hold."""
    if evaluation is not None and len(evaluation):
        picked = _spread(len(evaluation))
        pixels = evaluation.read(picked)
        truths = evaluation.labels[picked] if evaluation.labels is not None else [None] * len(picked)
        names = [_relative(evaluation.name(int(i)), evaluation.path) for i in picked]
    elif calibration is not None and len(calibration):
        picked = _spread(len(calibration))
        pixels, truths = calibration.raw[picked], [None] * len(picked)
        names = [f"calibration sample {int(i)}" for i in picked]
    else:
        return None
    whole = np.all(np.mod(pixels, 1) == 0) and pixels.min() >= 0 and pixels.max() <= 255
    if not whole or pixels.shape[-1] not in _PNG_MODES:
        return None
    truths = tuple(int(t) if t is not None else None for t in truths)
    return GoldenSource(np.asarray(pixels, dtype=np.uint8), tuple(names), truths)


def _spread(count: int) -> np.ndarray:
    """Up to GOLDEN_IMAGES indices spread evenly over ``count`` samples (class folders are read in order)."""
    return np.unique(np.linspace(0, count - 1, min(GOLDEN_IMAGES, count)).round().astype(int))


def _relative(name: str, root: Path) -> str:
    path = Path(name)
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else name


def png_base64(pixels: np.ndarray) -> str:
    """One image's pixels (H, W, C), 0..255, as a base64 PNG."""
    channels = pixels.shape[-1]
    if channels not in _PNG_MODES:
        raise ValueError(f"a PNG holds 1, 3 or 4 channels, not {channels}")
    array = np.asarray(pixels, dtype=np.uint8)
    image = Image.fromarray(array[..., 0] if channels == 1 else array, _PNG_MODES[channels])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def golden_vectors(content: bytes, source: GoldenSource, app_input: Preprocessing, labels: Sequence[str]) -> dict:
    """The golden vectors of one .tflite: each image's pixels, the sha256 of the input tensor the benchmark fed
    (``app_input``: what the app computes from pixels before quantizing, pixels as they are for a model that
    normalizes inside), and the raw and dequantized output, through the same interpreter as the benchmark."""
    runner = TfliteRunner(content, batch_size=max(1, len(source.pixels)))
    fed, raw = runner.tensors(apply_preprocessing(source.pixels.astype(np.float32), app_input))
    quantization = runner.output_quantization
    output = dequantize(raw, *quantization) if quantization is not None else raw
    images = []
    for k, name in enumerate(source.names):
        top1 = int(np.argmax(output[k]))
        truth = source.truths[k]
        images.append(
            {
                "source": name,
                "label": labels[truth] if truth is not None and truth < len(labels) else None,
                "pixels_png": png_base64(source.pixels[k]),
                "input_dtype": fed.dtype.name,
                "input_shape": list(fed[k : k + 1].shape),
                "input_sha256": hashlib.sha256(np.ascontiguousarray(fed[k : k + 1]).tobytes()).hexdigest(),
                "output_raw": raw[k].tolist(),
                "scores": [float(v) for v in output[k]],
                "top1": top1,
                "top1_label": labels[top1] if top1 < len(labels) else str(top1),
            }
        )
    return {
        "schema_version": GOLDEN_SCHEMA_VERSION,
        "check": (
            "decode pixels_png (already at the model's size), preprocess as the manifest says, compare the input "
            "tensor's bytes (little-endian, NHWC) with input_sha256, run the model, and compare its raw output with "
            "output_raw within tolerance"
        ),
        "tolerance": {"output_raw": 1, "unit": "quantization steps"}
        if quantization is not None
        else {"output_raw": 1e-5, "unit": "absolute"},
        "images": images,
    }
