"""Do the latency figures survive a busy machine? Idle against busy, interleaved against one-after-another.

Usage: python benchmarks/busy_machine.py [--repeats 5] [--runs 300] [--mobilenet]

Converts the embedded default model (and with --mobilenet, keras.applications MobileNetV2 224, weights=None) to
float32 and int8 in memory, then times them with one interpreter thread, as convert and benchmark do:

  idle                 nothing else running
  busy                 a spinning process on every core for the whole timing
  load midway          the spinning processes start halfway through the timing

each both interleaved (tflite_opt's way: rounds of 10 invokes per variant, order alternating) and
one variant after the other (the old way). Medians over --repeats. Prints the wall-time and the invoking
thread's CPU-time p50 of each variant, their int8/float32 ratios, whether the CPU figures under
load stay within 10% of the idle ones, and how many runs tflite_opt warned were on a busy machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time

import numpy as np

from tflite_opt.core import default_data
from tflite_opt.core.config import BenchmarkSettings, Mode
from tflite_opt.stages.benchmark import busy_machine, measure_latencies
from tflite_opt.stages.convert import convert_keras
from tflite_opt.stages.data import ImageSize, load_dataset
from tflite_opt.stages.load import load_keras_model


def spin() -> None:
    while True:
        pass


class Load:
    """Spinning processes, two per core, started now or after ``delay`` seconds, stopped on exit."""

    def __init__(self, delay: float | None) -> None:
        self.delay, self.processes = delay, []

    def __enter__(self) -> Load:
        if self.delay is not None:
            for _ in range(2 * (os.cpu_count() or 2)):  # twice the cores: every core stays contended
                process = multiprocessing.Process(target=_spin_after, args=(self.delay,), daemon=True)
                process.start()
                self.processes.append(process)
        return self

    def __exit__(self, *exc) -> None:
        for process in self.processes:
            process.terminate()
            process.join()


def _spin_after(delay: float) -> None:
    time.sleep(delay)
    spin()


def models(with_mobilenet: bool) -> dict[str, dict[str, tuple[bytes, np.ndarray]]]:
    """Per model, float32 and int8 bytes with one input image each."""
    model = load_keras_model(default_data.MODEL_PATH)
    calibration = load_dataset(default_data.CALIBRATION_DIR, ImageSize(28, 28, 1)).model_input(
        default_data.PREPROCESSING
    )
    found = {"mnist_cnn": _pair(model, calibration)}
    if with_mobilenet:
        from tflite_opt.core.keras2 import keras  # deferred: only this option builds MobileNetV2

        mobilenet = keras.applications.MobileNetV2(input_shape=(224, 224, 3), weights=None)
        samples = np.random.default_rng(0).uniform(-1, 1, (16, 224, 224, 3)).astype(np.float32)
        found["mobilenet_v2_224"] = _pair(mobilenet, samples)
    return found


def _pair(model, calibration: np.ndarray) -> dict[str, tuple[bytes, np.ndarray]]:
    return {
        "float32": (convert_keras(model, Mode.FLOAT32), calibration[0]),
        "int8": (convert_keras(model, Mode.FULL_INT8, calibration, progress=False), calibration[0]),
    }


def timed(
    pair: dict[str, tuple[bytes, np.ndarray]], settings: BenchmarkSettings, interleaved: bool, load: float | None
):
    """(wall p50, CPU p50) per variant, and the busy warning, for one timing run under ``load``."""
    contents = {name: content for name, (content, _) in pair.items()}
    samples = {name: sample for name, (_, sample) in pair.items()}
    with Load(load):
        if interleaved:
            stats = measure_latencies(contents, samples, settings)
        else:
            stats = {
                name: measure_latencies({name: contents[name]}, {name: samples[name]}, settings)[name]
                for name in contents
            }
    return {name: (s.p50, s.cpu_p50) for name, s in stats.items()}, busy_machine(stats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--mobilenet", action="store_true")
    args = parser.parse_args()
    settings = BenchmarkSettings(num_runs=args.runs, warmup_runs=20)
    for name, pair in models(args.mobilenet).items():
        one = timed(pair, settings, True, None)[0]  # a first run to size "midway"
        midway = 0.5 * sum(wall for wall, _ in one.values()) * args.runs / 1000.0
        print(f"\n{name}: one thread, p50 of {args.runs} invokes (ms), median of {args.repeats} repeats")
        print("| scenario | timing | float32 wall | int8 wall | int8/float32 wall | float32 cpu | int8 cpu | "
              "int8/float32 cpu | cpu vs idle | busy warned |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|---|")
        idle = None
        for scenario, load in {"idle": None, "busy": 0.0, "load midway": midway}.items():
            for interleaved in (True, False):
                runs = [timed(pair, settings, interleaved, load) for _ in range(args.repeats)]
                idle = _row(scenario, interleaved, runs, idle)


def _row(scenario: str, interleaved: bool, runs: list, idle: dict[str, float] | None) -> dict[str, float]:
    """Print one scenario's row; returns the idle CPU figures to compare the next ones with."""
    wall = {v: float(np.median([r[0][v][0] for r in runs])) for v in ("float32", "int8")}
    cpu = {v: float(np.median([r[0][v][1] for r in runs])) for v in ("float32", "int8")}
    idle = idle or cpu
    off = {v: cpu[v] / idle[v] - 1 for v in cpu}
    versus = ", ".join(f"{v} {100 * d:+.0f}%" for v, d in off.items())
    versus += " (within 10%)" if max(abs(d) for d in off.values()) <= 0.10 else " (NOT within 10%)"
    timing = "interleaved" if interleaved else "one after another"
    print(
        f"| {scenario} | {timing} | {wall['float32']:.3f} | {wall['int8']:.3f} | {wall['int8'] / wall['float32']:.2f} "
        f"| {cpu['float32']:.3f} "
        f"| {cpu['int8']:.3f} | {cpu['int8'] / cpu['float32']:.2f} | {versus} | {sum(r[1] is not None for r in runs)}"
        f"/{len(runs)} |"
    )
    return idle


if __name__ == "__main__":
    main()
