"""Does tflite_opt's latency agree with LiteRT's own Python benchmark on the same file?

Usage: python benchmarks/litert_compare.py [--rounds 3] [--num-threads 1] [FILE.tflite ...]

Without files it builds keras.applications MobileNetV2 at 224x224 (weights=None;
latency does not depend on the weights) as float32 and int8 .tflite files.
The two tools run alternately, --rounds times each, so machine load hits both;
the figure compared is each tool's median, and the result is the median of the
per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tflite_opt.core.config import BenchmarkSettings, Mode
from tflite_opt.stages.benchmark import measure_latency
from tflite_opt.stages.convert import convert_keras


def mobilenet_v2_files(folder: Path) -> list[Path]:
    from tflite_opt.core.keras2 import keras

    model = keras.applications.MobileNetV2(input_shape=(224, 224, 3), weights=None)
    calibration = np.random.default_rng(0).uniform(-1, 1, (8, 224, 224, 3)).astype(np.float32)
    files = []
    for mode in (Mode.FLOAT32, Mode.FULL_INT8):
        path = folder / f"mobilenet_v2_224.{mode.value}.tflite"
        path.write_bytes(convert_keras(model, mode, calibration, progress=False))
        files.append(path)
    return files


def litert_median_ms(path: Path, threads: int, runs: int, warmup: int) -> float:
    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        command = [
            sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model", "--model", str(path),
            "--num_threads", str(threads), "--num_runs", str(runs), "--warmup_runs", str(warmup),
            "--result_json", result.name,
        ]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True)
        return float(json.loads(Path(result.name).read_text())["latency"]["median_ms"])


def ours_p50_ms(path: Path, settings: BenchmarkSettings) -> float:
    content = path.read_bytes()
    from tflite_opt.core.tflite_file import read_tflite

    shape = read_tflite(content).input_tensors()[0].shape[1:]
    sample = np.random.default_rng(0).uniform(0, 1, shape).astype(np.float32)
    return measure_latency(content, sample, settings).p50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--num-threads", type=int, default=1)
    parser.add_argument("--num-runs", type=int, default=100)
    parser.add_argument("--warmup-runs", type=int, default=10)
    args = parser.parse_args()
    settings = BenchmarkSettings(num_runs=args.num_runs, warmup_runs=args.warmup_runs, num_threads=args.num_threads)
    with tempfile.TemporaryDirectory() as folder:
        files = args.files or mobilenet_v2_files(Path(folder))
        rows = []
        for path in files:
            ours, theirs = [], []
            for _ in range(args.rounds):
                ours.append(ours_p50_ms(path, settings))
                theirs.append(litert_median_ms(path, args.num_threads, args.num_runs, args.warmup_runs))
            ratio = float(np.median(np.array(ours) / np.array(theirs)))
            rows.append({"file": path.name, "tflite_opt_p50_ms": float(np.median(ours)),
                         "litert_median_ms": float(np.median(theirs)), "ratio": ratio,
                         "within_10_percent": abs(ratio - 1) <= 0.10})  # fmt: skip
    print(f"| file | tflite_opt p50 (ms) | LiteRT median (ms) | ratio | within 10% |  ({args.num_threads} thread(s))")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['file']} | {row['tflite_opt_p50_ms']:.3f} | {row['litert_median_ms']:.3f} "
            f"| {row['ratio']:.3f} | {'yes' if row['within_10_percent'] else 'NO'} |"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
