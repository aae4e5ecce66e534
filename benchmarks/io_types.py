"""What uint8 input and output cost against int8 on an RGB backbone: the latency of the extra QUANTIZE operators.

Usage: python benchmarks/io_types.py [--size 224] [--rounds 5]

The convert job gives an RGB model uint8 input and output taking camera bytes (what MediaPipe Tasks and the LiteRT
Support Library feed); int8 input is what it gave before. This builds keras.applications MobileNetV2 and
MobileNetV3Small (weights=None: latency does not depend on the weights), converts each to full int8 with int8 input,
uint8 input taking pixels, and int8 input taking pixels, and measures them interleaved, --rounds rounds, with LiteRT's
own benchmark tool (1 thread). It prints each file's median of the rounds' medians, its operators around the
backbone, and the ratio to the int8 file measured in the same rounds.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from litert_compare import litert_median_ms  # benchmarks/ is the script's folder, so on sys.path

from tflite_opt.core.config import IoType, Mode
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.core.tflite_file import read_tflite
from tflite_opt.stages.convert import convert_keras, convert_pixel_input


def backbones(size: int) -> dict:
    from tflite_opt.core.keras2 import keras

    return {
        "MobileNetV2": keras.applications.MobileNetV2(input_shape=(size, size, 3), weights=None),
        "MobileNetV3Small": keras.applications.MobileNetV3Small(
            input_shape=(size, size, 3), weights=None, include_preprocessing=False
        ),
    }


def variants(model, size: int, folder: Path, name: str) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (8, size, size, 3)).astype(np.float32)
    normalization = Preprocessing.from_mean_std(127.5, 127.5)
    normalized = (pixels - 127.5) / 127.5
    contents = {
        "int8 io, normalized input": convert_keras(model, Mode.FULL_INT8, normalized, IoType.INT8, progress=False),
        "uint8 io, pixel input": convert_pixel_input(model, normalization, pixels, IoType.UINT8, progress=False),
        "int8 io, pixel input": convert_pixel_input(model, normalization, pixels, IoType.INT8, progress=False),
    }
    paths = {}
    for k, (label, content) in enumerate(contents.items()):
        paths[label] = folder / f"{name}.{k}.tflite"
        paths[label].write_bytes(content)
    return paths


def edge_operators(path: Path) -> str:
    """The operators before the first and after the last CONV_2D: where the I/O conversions sit."""
    ops = [op.name for op in read_tflite(path.read_bytes()).operators]
    convs = [k for k, op in enumerate(ops) if op == "CONV_2D"]
    edges = Counter(ops[: convs[0]] + ops[convs[-1] + 1 :])
    return ", ".join(f"{op} x{n}" for op, n in sorted(edges.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for name, model in backbones(args.size).items():
            paths = variants(model, args.size, Path(folder), name)
            medians: dict[str, list[float]] = {label: [] for label in paths}
            for _ in range(args.rounds):
                for label, path in paths.items():
                    medians[label].append(litert_median_ms(path, threads=1, runs=args.runs, warmup=5))
            base = medians["int8 io, normalized input"]
            print(f"\n{name} at {args.size}x{args.size}, LiteRT benchmark tool, 1 thread, {args.rounds} rounds")
            print(f"{'file':28} {'median ms':>9} {'ratio':>6}  operators outside the backbone")
            for label, values in medians.items():
                ratio = float(np.median(np.array(values) / np.array(base)))
                print(f"{label:28} {np.median(values):9.3f} {ratio:6.3f}  {edge_operators(paths[label])}")


if __name__ == "__main__":
    main()
