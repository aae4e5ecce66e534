"""Shared fixtures: tiny seeded models built in code, and real digits written as files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tflite_opt import default_model

INPUT_SIZE = 12


def build_sequential(channels: int = 1, seed: int = 0):
    """Conv2D, DepthwiseConv2D, BatchNormalization and Dense in a Sequential model."""
    from tflite_opt.keras2 import keras

    keras.utils.set_random_seed(seed)
    layers = keras.layers
    return keras.Sequential(
        [
            layers.Input((INPUT_SIZE, INPUT_SIZE, channels)),
            layers.Conv2D(16, 3, activation="relu", name="conv"),
            layers.DepthwiseConv2D(3, name="depthwise"),
            layers.BatchNormalization(name="bn"),
            layers.ReLU(name="relu"),
            layers.Flatten(name="flatten"),
            layers.Dense(32, activation="relu", name="hidden"),
            layers.Dense(10, activation="softmax", name="scores"),
        ],
        name="tiny_sequential",
    )


def build_functional(channels: int = 1, seed: int = 0):
    """A Functional model with a residual branch, BatchNorm and a Dense head."""
    from tflite_opt.keras2 import keras

    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, channels), name="image")
    x = layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu6")(x)
    branch = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = layers.Add(name="residual")([x, branch])
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dense(160, activation="relu", name="hidden")(x)
    outputs = layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="tiny_functional")


def mnist_digits(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Real 28x28 digits and labels from the shipped training split."""
    with np.load(default_model.TRAIN_FILE) as archive:
        x, y = archive["x"], archive["y"]
    indices = np.random.default_rng(seed).choice(len(x), size=count, replace=False)
    return x[indices], y[indices].astype(np.int64)


def write_pngs(folder: Path, images: np.ndarray, labels: np.ndarray | None = None) -> Path:
    """Write digits as PNGs: flat, or one subfolder per label."""
    from PIL import Image

    for i, image in enumerate(images):
        target = folder if labels is None else folder / str(int(labels[i]))
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(target / f"digit_{i:03d}.png")
    return folder


@pytest.fixture(scope="session")
def digit_folders(tmp_path_factory) -> tuple[Path, Path]:
    """A flat calibration folder and a per-class evaluation folder of distinct real digits."""
    root = tmp_path_factory.mktemp("digits")
    images, labels = mnist_digits(80)
    calibration = write_pngs(root / "calibration", images[:40])
    evaluation = write_pngs(root / "eval", images[40:], labels[40:])
    return calibration, evaluation


@pytest.fixture(scope="session")
def saved_tiny_model(tmp_path_factory) -> Path:
    """The Sequential tiny model saved as a tf_keras .keras file."""
    path = tmp_path_factory.mktemp("models") / "tiny.keras"
    build_sequential().save(path)
    return path
