"""What rewriting int8 HARD_SWISH for XNNPACK does to a briefly trained MobileNetV3: top-1 and speed.

    python benchmarks/hard_swish.py [--model MobileNetV3Small] [--keras 3] [--side 64] [--epochs 4] [--rounds 5]

A keras.applications MobileNetV3 (random start, no preprocessing inside) is trained for ``--epochs`` on 2,800
digits of the shipped training split (grey repeated to RGB, ``--side`` pixels, x = pixel / 127.5 - 1; batch
statistics then set from 512 of them), converted to full int8 once (the tool's conversion, int8 input, 100
calibration digits), and the same file is compared with its HARD_SWISH rewrite
(:func:`tflite_opt.stages.xnnpack.rewrite_hard_swish`) on the 1,100 held-out digits left: top-1, agreement between
the two files, mean distance of the scores from the float model's in output steps, and latency (one thread, both
files timed interleaved, ``--rounds`` rounds of 50 invokes, median) with XNNPACK's parts.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from PIL import Image

from tflite_opt.core import default_data, keras2, keras3
from tflite_opt.core.config import IoType, Mode
from tflite_opt.core.interpreter import TfliteRunner
from tflite_opt.core.tflite_file import read_tflite
from tflite_opt.stages.convert import convert_keras
from tflite_opt.stages.xnnpack import int8_hard_swish_count, rewrite_hard_swish


def digits(side: int) -> tuple[np.ndarray, np.ndarray]:
    with np.load(default_data.TRAIN_FILE) as archive:
        images, labels = archive["x"], archive["y"]
    order = np.random.default_rng(0).permutation(len(images))  # the split is stored sorted by class
    images, labels = images[order], labels[order]
    resized = [np.asarray(Image.fromarray(i).resize((side, side), Image.Resampling.BILINEAR)) for i in images]
    rgb = np.repeat(np.stack(resized)[..., None], 3, axis=-1).astype(np.float32) / 127.5 - 1.0
    return rgb, labels.astype(np.int64)


def trained(name: str, keras_version: str, side: int, epochs: int, x: np.ndarray, y: np.ndarray):
    keras = keras2.keras if keras_version == "2" else keras3.keras
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(
        input_shape=(side, side, 3), weights=None, classes=10, include_preprocessing=False
    )
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    started = time.perf_counter()
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    seconds = time.perf_counter() - started
    # keras.applications' MobileNetV3 keeps batch statistics with momentum 0.999, so after a few hundred steps they
    # still hold mostly their start values: set them from 512 training images, as a longer training would.
    batch_norms = [layer for layer in model.layers if "BatchNormalization" in type(layer).__name__]
    for layer in batch_norms:
        layer.momentum = 0.0
    model(x[:512], training=True)
    print(f"trained {name} (Keras {keras_version}, {side}x{side}) for {epochs} epochs in {seconds:.0f} s")
    return model


def timed(contents: dict[str, bytes], sample: np.ndarray, rounds: int) -> dict[str, float]:
    runners = {name: TfliteRunner(content, batch_size=1, num_threads=1) for name, content in contents.items()}
    for runner in runners.values():
        runner.load(sample)
        runner.invoke()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, runner in runners.items():
            times[name] += [runner.invoke_timed()[0] for _ in range(50)]
    return {name: float(np.median(values)) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="MobileNetV3Small")
    parser.add_argument("--keras", default="3")
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    x, y = digits(args.side)
    train, calibration, held_out = slice(0, 2800), slice(2800, 2900), slice(2900, None)
    model = trained(args.model, args.keras, args.side, args.epochs, x[train], y[train])
    reference = model.predict(x[held_out], verbose=0)
    plain = convert_keras(model, Mode.FULL_INT8, x[calibration], IoType.INT8)
    files = {"built-in HARD_SWISH": plain, "rewritten": rewrite_hard_swish(plain)}
    print(f"float model top-1 {100 * np.mean(reference.argmax(1) == y[held_out]):.2f}% on {len(reference)} held-out")
    print(f"int8 HARD_SWISH in the plain file: {int8_hard_swish_count(read_tflite(plain))}")
    scores = {}
    for name, content in files.items():
        runner = TfliteRunner(content, batch_size=1)
        scores[name] = runner.predict(x[held_out])
        step = runner.output_quantization[0]
        top1 = 100 * np.mean(scores[name].argmax(1) == y[held_out])
        error = np.mean(np.abs(scores[name] - reference)) / step
        parts, left = runner.delegation()
        print(f"  {name:<20} top-1 {top1:6.2f}%  {error:.3f} steps from float  XNNPACK {parts} part(s), left {left}")
    same = np.mean(scores["rewritten"].argmax(1) == scores["built-in HARD_SWISH"].argmax(1))
    print(f"  top-1 agreement between the two files: {100 * same:.2f}%")
    medians = timed(files, x[held_out][0], args.rounds)
    for name, median in medians.items():
        print(f"  {name:<20} {median:.3f} ms median invoke (1 thread, interleaved)")
    print(f"  rewritten / built-in: {medians['rewritten'] / medians['built-in HARD_SWISH']:.2f}")


if __name__ == "__main__":
    main()
