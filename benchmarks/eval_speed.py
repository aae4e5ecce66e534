"""How much faster is tflite_opt's evaluation than a plain one-image-per-invoke Python loop?

Usage: python benchmarks/eval_speed.py [--repeats 5]

Converts the embedded default model to int8 (in memory), then times, side by
side and alternating, on the 1,000-image held-out split:
  loop      the plain loop: per image set_tensor, invoke, get_tensor, argmax
            (on preloaded images, and end to end, decoding each PNG in the loop)
  batched   TfliteRunner.predict (input resized to a batch), 1 and 2 threads
  evaluate  benchmark.evaluate end to end (streams and decodes the PNGs too)
and a trivial model's per-invoke cost (the Python overhead a batch can save).
Medians of --repeats runs; ratios to the loop.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from tflite_opt.core import default_data
from tflite_opt.core.config import BenchmarkSettings, Mode
from tflite_opt.core.interpreter import TfliteRunner, interpreter_class, quantize
from tflite_opt.stages.benchmark import Scorer, evaluate
from tflite_opt.stages.convert import convert_keras
from tflite_opt.stages.data import ImageSize, load_dataset, open_source
from tflite_opt.stages.load import load_keras_model


def plain_loop(content: bytes, images) -> np.ndarray:
    """The loop as users write it: per image set_tensor, invoke, get_tensor, argmax.

    ``images``: float model input, one image at a time (an array, or a generator that decodes files).
    """
    interpreter_type, _ = interpreter_class()
    interpreter = interpreter_type(model_content=content, num_threads=1)
    interpreter.allocate_tensors()
    feed, sink = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero_point = feed["quantization"]
    predictions = []
    for image in images:
        interpreter.set_tensor(feed["index"], quantize(image[np.newaxis], scale, zero_point, feed["dtype"]))
        interpreter.invoke()
        predictions.append(int(np.argmax(interpreter.get_tensor(sink["index"])[0])))
    return np.asarray(predictions)


def decoded_one_by_one(source):
    """Each image opened and normalized inside the loop, as a plain script does."""
    from tflite_opt.stages.data import load_image

    for i in range(len(source)):
        yield load_image(source._files[i], source.size).astype(np.float32) / 255.0


def median_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    size = ImageSize(28, 28, 1)
    model = load_keras_model(default_data.MODEL_PATH)
    calibration = load_dataset(default_data.CALIBRATION_DIR, size).model_input(default_data.PREPROCESSING)
    content = convert_keras(model, Mode.FULL_INT8, calibration, progress=False)
    source = open_source(default_data.EVAL_DIR, size, require_labels=True)
    images = load_dataset(default_data.EVAL_DIR, size).model_input(default_data.PREPROCESSING)

    one_thread, two_threads = TfliteRunner(content, 128, 1), TfliteRunner(content, 128, 2)
    assert np.array_equal(plain_loop(content, images), np.argmax(one_thread.predict(images), axis=1))
    two_thread_settings = BenchmarkSettings(num_threads=2)
    timings = {
        "loop": median_seconds(lambda: plain_loop(content, images), args.repeats),
        "loop, decoding each PNG": median_seconds(
            lambda: plain_loop(content, decoded_one_by_one(source)), args.repeats
        ),
        "batched, 1 thread": median_seconds(lambda: one_thread.predict(images), args.repeats),
        "batched, 2 threads": median_seconds(lambda: two_threads.predict(images), args.repeats),
        "evaluate (streams and decodes PNGs), 2 threads": median_seconds(
            lambda: evaluate(
                source,
                {"int8": Scorer.tflite(content, default_data.PREPROCESSING, two_thread_settings)},
                settings=two_thread_settings,
            ),
            args.repeats,
        ),
    }
    trivial = convert_keras(_identity_model(), Mode.FLOAT32)
    overhead_ms = 1000 * median_seconds(lambda: plain_loop_like_overhead(trivial, 1000), args.repeats) / 1000
    per_image_ms = 1000 * timings["loop"] / len(images)
    print(f"default eval split: {len(images)} images, int8 model, median of {args.repeats} runs")
    for name, seconds in timings.items():
        print(f"  {name:<48} {seconds:7.3f} s   {timings['loop'] / seconds:5.2f}x the loop")
    print(f"  plain loop per image: {per_image_ms:.3f} ms, of which Python/invoke overhead ~{overhead_ms:.3f} ms")
    print(
        f"  ceiling from batching alone: {per_image_ms / max(per_image_ms - overhead_ms, 1e-9):.2f}x "
        "(the model's own compute per image stays); threads add at most the core count"
    )
    print(json.dumps({k: round(v, 4) for k, v in timings.items()} | {"overhead_ms": round(overhead_ms, 4)}))


def _identity_model():
    from tflite_opt.core.keras2 import keras

    inputs = keras.Input((28, 28, 1))
    return keras.Model(inputs, keras.layers.Flatten()(inputs))


def plain_loop_like_overhead(content: bytes, count: int) -> None:
    """The per-image loop on a model that does nothing: what one Python-level invoke costs."""
    interpreter_type, _ = interpreter_class()
    interpreter = interpreter_type(model_content=content, num_threads=1)
    interpreter.allocate_tensors()
    source, sink = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    image = np.zeros((1, 28, 28, 1), dtype=np.float32)
    for _ in range(count):
        interpreter.set_tensor(source["index"], image)
        interpreter.invoke()
        np.argmax(interpreter.get_tensor(sink["index"])[0])


if __name__ == "__main__":
    main()
