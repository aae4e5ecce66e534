"""Keras 3 MobileNets through tflite_opt: direct full-int8 conversion and pruning through the tf_keras translation.

    python benchmarks/keras3_models.py [--epochs 3] [--train-images 1536]

Builds Keras 3 MobileNetV2 (alpha 0.35) and MobileNetV3Small (minimalistic=False: hard-swish) at 96x96 with
weights=None, trains each briefly on the shipped digits (seeded), then for each prints: the Keras 3 top-1 on the
shipped held-out digits, the int8 file's top-1 and its top-1 agreement with Keras 3, whether the Keras 3 model
converted directly gives the same int8 outputs as its tf_keras translation, and, pruned to 50% by --prune
(translated, fine-tuned one epoch, given back in Keras 3), the zeros read from the int8 file and its top-1.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from tflite_opt.core import default_data, keras3
from tflite_opt.core.config import ConvertConfig, IoType, Mode, PruneConfig
from tflite_opt.core.interpreter import TfliteRunner
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.jobs.convert import run_convert
from tflite_opt.stages.convert import convert_keras
from tflite_opt.stages.data import ImageSize, load_dataset
from tflite_opt.stages.fine_tune import settle_batch_statistics
from tflite_opt.stages.translate import translate_for_tfmot

SIZE = ImageSize(96, 96, 3)
PREPROCESSING = Preprocessing.from_mean_std(127.5, 127.5)


def build(name: str):
    keras = keras3.keras
    keras.utils.set_random_seed(0)
    if name == "MobileNetV2 a0.35":
        return keras.applications.MobileNetV2(
            input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=10, classifier_activation=None
        )
    return keras.applications.MobileNetV3Small(
        input_shape=(96, 96, 3), minimalistic=False, weights=None, classes=10, include_preprocessing=False,
        classifier_activation=None,
    )  # fmt: skip


def trained(name: str, images: np.ndarray, labels: np.ndarray, epochs: int):
    """Briefly trained, then BatchNormalization's moving statistics set from the data (too few steps to settle)."""
    keras = keras3.keras
    model = build(name)
    model.compile(keras.optimizers.Adam(2e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images, labels, epochs=epochs, batch_size=32, verbose=0)
    settle_batch_statistics(model, images, seed=0)
    return model


def rgb96(digits: np.ndarray) -> np.ndarray:
    """28x28 grey digits as 96x96 RGB pixels, resized as tflite_opt's loader resizes images (Pillow, bilinear)."""
    resized = [np.asarray(Image.fromarray(d).resize((96, 96), Image.Resampling.BILINEAR)) for d in digits]
    return np.repeat(np.stack(resized)[..., np.newaxis], 3, axis=-1).astype(np.float32)


def direct_equals_translated(model, calibration: np.ndarray) -> float:
    """Largest difference between the int8 outputs of the Keras 3 model converted directly and of its translation."""
    rebuilt = translate_for_tfmot(model, calibration[:8]).model
    direct = convert_keras(model, Mode.FULL_INT8, calibration, IoType.FLOAT32, progress=False)
    translated = convert_keras(rebuilt, Mode.FULL_INT8, calibration, IoType.FLOAT32, progress=False)
    return float(
        np.max(np.abs(TfliteRunner(direct).predict(calibration) - TfliteRunner(translated).predict(calibration)))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-images", type=int, default=1536)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="keras3_models_"))
    with np.load(default_data.TRAIN_FILE) as archive:
        order = np.random.default_rng(0).permutation(len(archive["y"]))
        pixels, labels = rgb96(archive["x"][order]), archive["y"][order]
    np.savez(work / "train.npz", x=pixels[args.train_images :], y=labels[args.train_images :])  # for --prune
    images, labels = (pixels[: args.train_images] - 127.5) / 127.5, labels[: args.train_images]
    calibration = load_dataset(default_data.CALIBRATION_DIR, SIZE, limit=64).model_input(PREPROCESSING)
    print(f"{'model':<20}{'keras':>8}{'int8':>8}{'agree':>8}{'direct=tr':>11}{'zeros':>8}{'pruned':>8}{'prune s':>9}")
    for name in ("MobileNetV2 a0.35", "MobileNetV3Small"):
        started = time.perf_counter()
        model = trained(name, images, labels, args.epochs)
        path = work / f"{name.split()[0].lower()}.keras"
        model.save(path)
        trained_s = time.perf_counter() - started
        common = {
            "model_path": path,
            "preprocessing": PREPROCESSING,
            "representative_data": default_data.CALIBRATION_DIR,
            "eval_data": default_data.EVAL_DIR,
            "train_data": work / "train.npz",
        }
        direct = run_convert(ConvertConfig(output_dir=work / "direct", overwrite=True, **common))
        started = time.perf_counter()
        pruned = run_convert(
            ConvertConfig(output_dir=work / "pruned", overwrite=True, prune=PruneConfig(0.5, epochs=1), **common)
        )
        prune_s = time.perf_counter() - started
        int8, int8_pruned = direct.variant("int8"), pruned.variant("int8-pruned50")
        print(
            f"{name:<20}{100 * direct.keras_top1:>7.2f}%{100 * int8.top1:>7.2f}%"
            f"{100 * int8.accuracy.fidelity.agreement:>7.2f}%{direct_equals_translated(model, calibration):>11.2g}"
            f"{100 * int8_pruned.sparsity:>7.1f}%{100 * int8_pruned.top1:>7.2f}%{prune_s:>9.0f}"
            f"   (trained {trained_s:.0f} s)"
        )


if __name__ == "__main__":
    main()
