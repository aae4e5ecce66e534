"""int8 against float32 on the common mobile backbones: what the tool ships, what XNNPACK runs, side by side.

    python benchmarks/backbones.py [--models MobileNetV3Small,MobileNetV2] [--keras 3,2] [--size 224]
                                   [--rounds 3] [--work DIR]

Each keras.applications backbone (MobileNetV2, MobileNetV3Small, MobileNetV3Large, EfficientNetB0, ResNet50; random
weights, with batch statistics settled on 16 random images so that activations have a trained model's scale: the
int8 scales decide what XNNPACK takes) is built in Keras 3 (saved as .keras) and tf_keras (.h5) and run through
``python -m tflite_opt.convert --full-int8 --float16 --dynamic-range`` with its defaults (the int8 file takes camera
pixels as uint8, as apps feed it) on random pixels, next to the converter's plain full-int8 recipe
(``optimizations=[DEFAULT]``, a representative dataset, int8 ops and int8 input, no tool). Per file: size,
XNNPACK's partitions and the operators it leaves to the built-in kernels (read from the interpreter), the latency
the tool measured (p50), and LiteRT's own benchmark tool's median (``benchmark_litert_model``, 1 thread), the files
timed interleaved, ``--rounds`` rounds, median of the rounds' medians; the last column is that median over the
float32 file's. An operator XNNPACK does not take in int8 splits the graph: the plain recipe's MobileNetV3 keeps
its int8 HARD_SWISH and runs slower than float32; the tool rewrites it (the int8 file's XNNPACK check says so).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from litert_compare import litert_median_ms  # benchmarks/ is the script's folder, so on sys.path
from PIL import Image

from tflite_opt.core.interpreter import TfliteRunner

BACKBONES = ("MobileNetV2", "MobileNetV3Small", "MobileNetV3Large", "EfficientNetB0", "ResNet50")
BUILD = """
import sys
keras_version, name, side, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
if keras_version == "2":
    from tflite_opt.core import keras2
    keras = keras2.keras
else:
    from tflite_opt.core import keras3
    keras = keras3.keras
kwargs = dict(input_shape=(side, side, 3), weights=None, classes=10)
if name.startswith("MobileNetV3"):
    kwargs["include_preprocessing"] = False
model = getattr(keras.applications, name)(**kwargs)
# Random weights leave the activations of deep layers orders of magnitude below a trained model's, which no real
# file has (XNNPACK even refuses some int8 operators at such scales): batch statistics from 16 random images give
# every layer a trained model's scale.
import numpy as np
batch_norms = [layer for layer in model.layers if "BatchNormalization" in type(layer).__name__]
for layer in batch_norms:
    layer.momentum = 0.0
model(np.random.default_rng(1).uniform(-1, 1, (16, side, side, 3)).astype("float32"), training=True)
for layer in batch_norms:
    layer.momentum = 0.99
model.save(out)
"""
PLAIN = """
import sys, numpy as np
from tflite_opt.core.keras2 import tf
from tflite_opt.stages.load import load_keras_model
model, side, out = load_keras_model(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(0)
def samples():
    for _ in range(16):
        yield [rng.uniform(-1, 1, (1, side, side, 3)).astype(np.float32)]
converter = tf.lite.TFLiteConverter.from_keras_model(model)
converter.optimizations = [tf.lite.Optimize.DEFAULT]
converter.representative_dataset = samples
converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
converter.inference_input_type = converter.inference_output_type = tf.int8
open(out, "wb").write(converter.convert())
"""


def python(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True)


def pixels(folder: Path, side: int, count: int = 24) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(count):
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(folder / f"p{k:02d}.png")
    return folder


def delegation(path: Path) -> str:
    parts, left = TfliteRunner(path.read_bytes(), batch_size=1).delegation()
    undelegated = ", ".join(f"{name} x{count}" for name, count in left) or "none"
    return f"{parts} part{'s' if parts != 1 else ''}; built-in: {undelegated}"


def files_of(name: str, keras_version: str, args: argparse.Namespace) -> dict[str, Path] | str:
    """The tool's files and the plain recipe's, or why there are none."""
    work = args.work / f"{name}_k{keras_version}"
    model = work / f"{name.lower()}.{'h5' if keras_version == '2' else 'keras'}"
    work.mkdir(parents=True, exist_ok=True)
    if (
        not model.exists()
        and (built := python(["-c", BUILD, keras_version, name, str(args.size), str(model)])).returncode
    ):
        return f"build failed: {(built.stderr.strip().splitlines() or ['?'])[-1]}"
    out = work / "tool"
    command = ["-m", "tflite_opt.convert", "--model", str(model), "--output-dir", str(out), "--overwrite"]
    command += ["--full-int8", "--float16", "--dynamic-range", "--mean", "127.5", "--std", "127.5"]
    command += ["--representative-data", str(pixels(args.work / f"pixels{args.size}", args.size)), "--num-runs", "30"]
    if (converted := python(command)).returncode:
        return f"convert exit {converted.returncode}: {(converted.stderr.strip().splitlines() or ['?'])[-1]}"
    plain = work / "plain-int8.tflite"
    if (recipe := python(["-c", PLAIN, str(model), str(args.size), str(plain)])).returncode:
        return f"plain recipe failed: {(recipe.stderr.strip().splitlines() or ['?'])[-1]}"
    stem = model.stem
    files = {variant: out / f"{stem}.{variant}.tflite" for variant in ("float32", "float16", "dynamic-range", "int8")}
    return {**files, "plain int8 recipe": plain}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(BACKBONES))
    parser.add_argument("--keras", default="3,2")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/tflite_opt_backbones"))
    args = parser.parse_args()
    for name in args.models.split(","):
        for keras_version in args.keras.split(","):
            files = files_of(name, keras_version, args)
            title = f"\n{name} {args.size}x{args.size}, Keras {keras_version}"
            if isinstance(files, str):
                print(f"{title}: {files}", flush=True)
                continue
            report = json.loads((files["float32"].parent / "report.json").read_text())
            tool_p50 = {v["variant"]: v["latency_ms"]["p50"] for v in report["variants"]}
            medians: dict[str, list[float]] = {label: [] for label in files}
            for _ in range(args.rounds):
                for label, path in files.items():
                    medians[label].append(litert_median_ms(path, threads=1, runs=50, warmup=5))
            reference = float(np.median(medians["float32"]))
            print(f"{title}: LiteRT benchmark tool, 1 thread, {args.rounds} interleaved rounds", flush=True)
            print(f"  {'file':<18}{'KiB':>8}{'tool p50':>10}{'LiteRT':>9}{'vs f32':>8}  XNNPACK")
            for label, path in files.items():
                median = float(np.median(medians[label]))
                ours = f"{tool_p50[label]:.2f}" if label in tool_p50 else "-"
                print(
                    f"  {label:<18}{path.stat().st_size / 1024:>8.0f}{ours:>10}{median:>9.2f}"
                    f"{median / reference:>8.2f}  {delegation(path)}",
                    flush=True,
                )
            int8 = next(v for v in report["variants"] if v["variant"] == "int8")
            for line in int8["checks"]:
                if "integer-only" in line or "XNNPACK" in line:
                    print(f"  tool's int8: {line}", flush=True)


if __name__ == "__main__":
    main()
