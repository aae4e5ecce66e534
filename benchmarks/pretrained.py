"""Fine-tuning someone else's pretrained model on the fifty images a user has.

    python benchmarks/pretrained.py [--work DIR] [--train-images 50] [--skip-search]

A stand-in for a pretrained classifier nobody here tuned: an Xception-style network (SeparableConv2D,
BatchNormalization, residual 1x1 convolutions), 64x64 grey, seven classes in an order of its own, input
x = (pixel - 127.5) / 127.5, trained to convergence on the digits 0-6 of the shipped training split and saved as a
tf_keras .h5 file. The user's data is another set: held-out digits drawn with a thicker pen and shifted, in
class-named folders: ``--train-images`` of them to fine-tune on, 100 unlabelled ones to calibrate, the rest
held out. Then, as a user would, ``python -m tflite_opt.convert`` with ``--prune --target-sparsity 0.5``,
``--cluster 16``, ``--qat`` and ``--prune --max-accuracy-drop 3``, no environment variable set, and prints each
variant's held-out top-1 against plain int8 from the same run, and what fine-tuning chose.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageFilter

from tflite_opt.core import default_data

LABELS = ("three", "zero", "five", "one", "six", "two", "four")  # the model's output order: not sorted
SIZE = 64


def _user_style(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A digit as the user's camera sees it: a thicker pen, shifted by up to 4 pixels, at 64x64."""
    picture = Image.fromarray(image).resize((SIZE, SIZE), Image.Resampling.BILINEAR).filter(ImageFilter.MaxFilter(5))
    dx, dy = (int(v) for v in rng.integers(-4, 5, size=2))
    return np.asarray(ImageChops.offset(picture, dx, dy))


def _pretrained_style(images: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(i).resize((SIZE, SIZE), Image.Resampling.BILINEAR)) for i in images])


def build_model(keras, classes: int):
    """An Xception-style classifier (about 170,000 weights): entry flow blocks with separable convolutions and
    1x1 residuals."""
    layers = keras.layers
    inputs = keras.Input((SIZE, SIZE, 1), name="image")
    x = layers.Conv2D(32, 3, strides=2, use_bias=False, name="block1_conv1")(inputs)
    x = layers.BatchNormalization(name="block1_conv1_bn")(x)
    x = layers.ReLU(name="block1_conv1_act")(x)
    for block, filters in ((2, 64), (3, 128), (4, 256)):
        residual = layers.Conv2D(filters, 1, strides=2, padding="same", use_bias=False, name=f"block{block}_res")(x)
        residual = layers.BatchNormalization(name=f"block{block}_res_bn")(residual)
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"block{block}_sepconv1")(x)
        x = layers.BatchNormalization(name=f"block{block}_sepconv1_bn")(x)
        x = layers.ReLU(name=f"block{block}_sepconv2_act")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"block{block}_sepconv2")(x)
        x = layers.BatchNormalization(name=f"block{block}_sepconv2_bn")(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"block{block}_pool")(x)
        x = layers.Add(name=f"block{block}_add")([x, residual])
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="xception_like")


def prepare(work: Path, train_images: int) -> dict[str, Path]:
    """The pretrained model and the user's folders (made once per work folder)."""
    paths = {
        "model": work / "xception_like.h5",
        "labels": work / "labels.txt",
        "train": work / "train",
        "calibration": work / "calibration",
        "eval": work / "eval",
    }
    if paths["model"].exists():
        return paths
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from tflite_opt.core import keras2

    keras = keras2.keras
    with np.load(default_data.TRAIN_FILE) as archive:
        images, digits = archive["x"], archive["y"]
    order = {int(name_digit): i for i, name_digit in enumerate([3, 0, 5, 1, 6, 2, 4])}  # digit → class index
    keep = np.isin(digits, list(order))
    x = (_pretrained_style(images[keep])[..., None].astype(np.float32) - 127.5) / 127.5
    y = np.array([order[int(d)] for d in digits[keep]])
    shuffled = np.random.default_rng(0).permutation(len(y))  # the split is sorted by digit
    x, y = x[shuffled], y[shuffled]
    keras.utils.set_random_seed(0)
    model = build_model(keras, len(LABELS))
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    # Long enough for the weights and BatchNormalization's moving statistics to converge (the last epochs at a
    # tenth of the rate): a pretrained model, not a briefly trained one.
    model.fit(x, y, epochs=12, batch_size=64, verbose=2)
    model.optimizer.learning_rate.assign(1e-4)
    model.fit(x, y, epochs=6, batch_size=64, verbose=2)
    print(f"training top-1 in inference mode: {model.evaluate(x, y, verbose=0)[1]:.4f}")
    work.mkdir(parents=True, exist_ok=True)
    model.save(paths["model"])
    paths["labels"].write_text("\n".join(LABELS) + "\n")
    rng = np.random.default_rng(1)
    evaluation = sorted(p for p in default_data.EVAL_DIR.rglob("*.png") if int(p.parent.name) in order)
    rng.shuffle(evaluation)
    folders = [("train", train_images), ("calibration", 100), ("eval", len(evaluation))]
    start = 0
    for folder, count in folders:
        for path in evaluation[start : start + count]:
            digit = int(path.parent.name)
            target = paths[folder] / (LABELS[order[digit]] if folder != "calibration" else "")
            target.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_user_style(np.asarray(Image.open(path)), rng)).save(target / path.name)
        start += count
    return paths


def run(paths: dict[str, Path], out: Path, extra: list[str]) -> dict:
    """``python -m tflite_opt.convert`` as a user runs it; report.json, or the one line it failed with."""
    args = [sys.executable, "-m", "tflite_opt.convert", "--full-int8", "--model", str(paths["model"])]
    args += ["--representative-data", str(paths["calibration"]), "--eval-data", str(paths["eval"])]
    args += ["--train-data", str(paths["train"]), "--labels", str(paths["labels"]), "--mean", "127.5", "--std", "127.5"]
    args += ["--output-dir", str(out), "--overwrite", *extra]
    env = {k: v for k, v in os.environ.items() if k not in ("TF_ENABLE_ONEDNN_OPTS", "TF_USE_LEGACY_KERAS")}
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        return {"failed": f"exit {done.returncode}: {(done.stderr.strip().splitlines() or ['(nothing)'])[-1]}"}
    report = json.loads((out / "report.json").read_text())
    report["wall_seconds"] = seconds
    return report


def _tuning(report: dict) -> str:
    parts = []
    for step in ("pruning", "clustering", "qat"):
        record = (report.get(step) or {}).get("fine_tuning")
        if record:
            rates = "/".join(f"{t['learning_rate']:g}" for t in record["trials"])
            parts.append(f"{step}: lr {record['learning_rate']:g} of {rates}, epoch {record['best_epoch']}")
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/tflite_opt_pretrained"))
    parser.add_argument("--train-images", type=int, default=50)
    parser.add_argument("--skip-search", action="store_true")
    args = parser.parse_args()
    paths = prepare(args.work, args.train_images)
    runs = {
        "prune50": ["--prune", "--target-sparsity", "0.5"],
        "cluster16": ["--cluster", "16"],
        "qat": ["--qat"],
    }
    if not args.skip_search:
        runs["search3"] = ["--prune", "--max-accuracy-drop", "3"]
    print(f"{'run':<10}{'variant':<30}{'top-1':>8}{'int8':>8}{'vs int8':>9}{'run s':>7}  fine-tuning")
    for name, extra in runs.items():
        report = run(paths, args.work / name, extra)
        if "failed" in report:
            print(f"{name:<10}{report['failed']}")
            continue
        rows = {v["variant"]: v for v in report["variants"]}
        int8 = rows["int8"]["top1"] if "int8" in rows else float("nan")
        for variant, row in rows.items():
            if variant in ("float32", "int8"):
                continue
            top1 = row["top1"]
            print(
                f"{name:<10}{variant:<30}{100 * top1:>7.1f}%{100 * int8:>7.1f}%{100 * (top1 - int8):>+8.1f} "
                f"{report['wall_seconds']:>6.0f}  {_tuning(report)}"
            )
        print(f"{'':<10}keras top-1 {100 * report['keras_top1']:.1f}% on {report['eval_samples']} held-out images")


if __name__ == "__main__":
    main()
