"""Test helpers: tiny seeded models built in code, real digits written as files, and the checks many tests share."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from tflite_opt.core import default_data, keras2
from tflite_opt.core.config import ConvertConfig, Mode
from tflite_opt.core.preprocessing import Preprocessing

INPUT_SIZE = 12
CORPUS = Path(__file__).parent / "corpus"


def build_sequential(channels: int = 1, seed: int = 0):
    """Conv2D, DepthwiseConv2D, BatchNormalization and Dense in a Sequential model."""
    keras = keras2.keras
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
    keras = keras2.keras
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


def outlier_run(data: Path, model_path: Path, output: Path, **kwargs):
    """A full-int8 run of ``model_path`` on the outlier data set (calibration, eval, train.npz), with ``kwargs`` as
    further ConvertConfig fields (a search, a fine-tuning step)."""
    return ConvertConfig(
        modes=(Mode.FULL_INT8,),
        model_path=model_path,
        representative_data=data / "calibration",
        eval_data=data / "eval",
        train_data=data / "train.npz",
        output_dir=output,
        preprocessing=Preprocessing(),
        **kwargs,
    )


def build_outlier_model(images: np.ndarray, labels: np.ndarray, outlier: str = "activation"):
    """A small trained CNN whose 'squash' layer (Dense + tanh) has an outlier in unit 0, which feeds
    nothing (its outgoing weights are zero), so the float model does not notice it.

    outlier="activation": unit 0's pre-activations are near 10,000. int8 gives the layer's whole
    output one range, now 0..10,000 in steps of 40, and every other unit's values round to nothing.
    outlier="weight": one of unit 0's weights is 1,000, on an input that is always 0 (conv channel 7
    is switched off). One scale per weight tensor rounds all the other weights to zero; one scale
    per output channel confines the damage to unit 0.
    """
    keras = keras2.keras
    keras.utils.set_random_seed(0)
    layers = keras.layers
    model = keras.Sequential(
        [
            layers.Input((28, 28, 1)),
            layers.Conv2D(8, 3, activation="relu", name="conv"),
            layers.MaxPooling2D(2, name="pool"),
            layers.Flatten(name="flatten"),
            layers.Dense(32, activation="tanh", name="squash"),
            layers.Dense(10, name="logits"),
        ],
        name="outlier_model",
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images[..., None] / 255.0, labels, epochs=3, batch_size=64, verbose=0)
    squash_kernel, squash_bias = model.get_layer("squash").get_weights()
    if outlier == "activation":
        squash_bias[0] = 1e4
    else:
        conv_kernel, conv_bias = model.get_layer("conv").get_weights()
        conv_kernel[..., 7], conv_bias[7] = 0.0, -1.0
        model.get_layer("conv").set_weights([conv_kernel, conv_bias])
        squash_kernel[7, 0] = 1000.0  # flatten index 7: channel 7 at the first position
    model.get_layer("squash").set_weights([squash_kernel, squash_bias])
    kernel, bias = model.get_layer("logits").get_weights()
    kernel[0] = 0.0
    model.get_layer("logits").set_weights([kernel, bias])
    return model


def mnist_digits(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Real 28x28 digits and labels from the shipped training split."""
    with np.load(default_data.TRAIN_FILE) as archive:
        x, y = archive["x"], archive["y"]
    indices = np.random.default_rng(seed).choice(len(x), size=count, replace=False)
    return x[indices], y[indices].astype(np.int64)


def write_pngs(folder: Path, images: np.ndarray, labels: np.ndarray | None = None) -> Path:
    """Write digits as PNGs: flat, or one subfolder per label."""
    for i, image in enumerate(images):
        target = folder if labels is None else folder / str(int(labels[i]))
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(target / f"digit_{i:03d}.png")
    return folder


# The lines a run prints as each step starts (jobs/convert.py), before any error.
PROGRESS = ("loading ", "reading the data", "converting ", "measuring ", "writing into ")


def one_line_error(capsys) -> str:
    """The one stderr line a failed command printed besides its progress lines (and no traceback)."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if not line.startswith(PROGRESS)]
    assert len(lines) == 1, err
    return lines[0]


# A stand-in for someone else's pretrained classifier: seven classes in an order of its own, not alphabetical.
FACE_LABELS = ("neutral", "happy", "sad", "angry", "surprise", "fear", "disgust")
FACE_SIZE = 32


def build_face_model(images: np.ndarray, labels: np.ndarray):
    """A small grey 32x32 classifier of seven classes, trained a little on digits 0-6 (class i = digit i), with
    MobileNet-style input: x = (pixel - 127.5) / 127.5."""
    keras = keras2.keras
    keras.utils.set_random_seed(0)
    layers = keras.layers
    model = keras.Sequential(
        [
            layers.Input((FACE_SIZE, FACE_SIZE, 1)),
            layers.Conv2D(8, 3, strides=2, activation="relu", name="conv1"),
            layers.Conv2D(16, 3, strides=2, activation="relu", name="conv2"),
            layers.Flatten(name="flatten"),
            layers.Dense(32, activation="relu", name="hidden"),
            layers.Dense(len(FACE_LABELS), activation="softmax", name="scores"),
        ],
        name="faces",
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit((images - 127.5) / 127.5, labels, epochs=6, batch_size=32, verbose=0)
    return model


def resized(images: np.ndarray, size: int) -> np.ndarray:
    """Grey images resized with Pillow, as (N, size, size, 1) uint8."""
    return np.stack([np.asarray(Image.fromarray(i).resize((size, size), Image.Resampling.BILINEAR)) for i in images])[
        ..., np.newaxis
    ]


# Keras 3 (``import keras``): what most users save their models with since TensorFlow 2.16.
def keras3():
    from tflite_opt.core import keras3 as module

    return module.keras


def build_keras3_sequential(seed: int = 0):
    """A Keras 3 Sequential digit classifier (28x28 grey) with the activations tf_keras lacks."""
    keras = keras3()
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(8, 3, activation="relu6", name="conv"),
            layers.MaxPooling2D(2, name="pool"),
            layers.Conv2D(16, 3, activation="hard_silu", name="conv2"),
            layers.BatchNormalization(name="bn"),
            layers.Flatten(name="flatten"),
            layers.Dropout(0.2, name="dropout"),
            layers.Dense(32, activation="leaky_relu", name="hidden"),
            layers.Dense(10, activation="softmax", name="scores"),
        ],
        name="k3_sequential",
    )


def build_keras3_functional(seed: int = 0):
    """A Keras 3 Functional digit classifier: a residual Add, BatchNorm, hard-sigmoid written as tensor
    arithmetic (Keras 3 operation nodes, as MobileNetV3 does), Dropout."""
    keras = keras3()
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input((28, 28, 1), name="image")
    x = layers.Conv2D(16, 3, strides=2, padding="same", name="stem")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = x * (layers.ReLU(6.0, name="gate_relu6")(x + 3.0) * (1.0 / 6.0))  # hard-swish as MobileNetV3 writes it
    branch = layers.Conv2D(16, 3, padding="same", activation="relu", name="branch")(x)
    x = layers.Add(name="residual")([x, branch])
    x = layers.Conv2D(32, 3, strides=2, activation="relu", name="conv")(x)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(0.1, name="dropout")(x)
    outputs = layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="k3_functional")


def build_keras3_transfer(seed: int = 0):
    """A transfer-learning model: a nested convolutional backbone inside a Sequential model with a new head."""
    keras = keras3()
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    backbone_input = keras.Input((28, 28, 1), name="backbone_input")
    x = layers.Conv2D(8, 3, strides=2, activation="relu", name="backbone_conv1")(backbone_input)
    x = layers.BatchNormalization(name="backbone_bn")(x)
    x = layers.Conv2D(16, 3, strides=2, activation="relu", name="backbone_conv2")(x)
    backbone = keras.Model(backbone_input, x, name="backbone")
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            backbone,
            layers.GlobalAveragePooling2D(name="pool"),
            layers.Dense(10, activation="softmax", name="head"),
        ],
        name="k3_transfer",
    )


def trained(model, images: np.ndarray, labels: np.ndarray, epochs: int = 3):
    """``model`` (Keras 3) fitted on digits scaled to 0..1, so that its predictions are decisive."""
    keras = keras3()
    from_logits = model.layers[-1].get_config().get("activation") != "softmax"
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits))
    model.fit(images[..., None] / 255.0, labels, epochs=epochs, batch_size=32, verbose=0)
    return model


def build_every_kernel_kind(seed: int = 0):
    """One layer of each kind whose kernel tfmot prunes and clusters in an image classifier: Conv2D,
    SeparableConv2D (its pointwise kernel), Conv2DTranspose, Conv1D, SeparableConv1D, Dense."""
    keras = keras2.keras
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 1), name="image")
    x = layers.Conv2D(8, 3, activation="relu", name="conv2d")(inputs)
    x = layers.SeparableConv2D(16, 3, activation="relu", name="separable2d")(x)
    x = layers.Conv2DTranspose(8, 3, activation="relu", name="transpose")(x)
    x = layers.Reshape((INPUT_SIZE - 2, (INPUT_SIZE - 2) * 8), name="rows")(x)
    x = layers.Conv1D(16, 3, activation="relu", name="conv1d")(x)
    x = layers.SeparableConv1D(16, 3, activation="relu", name="separable1d")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(10, activation="softmax", name="scores")(x)
    return keras.Model(inputs, outputs, name="every_kernel_kind")


# The files of the embedded default's int8 bundle, as publish uploads them and pull brings them.
BUNDLE_FILES = [
    "mnist_cnn.int8.tflite",
    "mnist_cnn.int8.manifest.json",
    "mnist_cnn.labels.txt",
    "mnist_cnn.int8.kt",
    "mnist_cnn.int8.swift",
    "mnist_cnn.int8.golden.json",
]


# The generated app code, read as text and fed manifests (tests/stages/test_kotlin_code.py, test_swift_code.py).
def code_constant(source: str, name: str) -> str:
    match = re.search(rf"\b{name}\b(?::\s*\w+)?\s*=\s*(.+)", source)
    assert match, f"{name} not in the generated code"
    return match.group(1).strip()


def synthetic_manifest(
    dtype: str, in_model: bool, channels: int, mean: float = 127.5, std: float = 127.5, policy: str = "stretch"
) -> dict:
    """A manifest as build_manifest writes it, for code that never meets its model: only the preprocessing runs."""
    scale, offset = 1 / std, -mean / std
    return {
        "model": "faces",
        "variant": f"int8-{dtype}-{'pixels' if in_model else 'normalized'}-{channels}-{policy}",
        "version": "2.0.1",
        "tool": {"version": "0"},
        "file": {"name": "faces.int8.tflite", "sha256": "0" * 64},
        "labels_file": "faces.labels.txt",
        "labels": ["a", "b"],
        "input": {
            "dtype": dtype,
            "shape": [1, 6, 5, channels],
            "scale": 1.0 if in_model else 2 / 255,  # 2/255 with (pixel - 127.5) / 127.5: every pixel on a tie
            "zero_point": (-128 if dtype == "int8" else 0) if in_model else (0 if dtype == "int8" else 128),
        },
        "output": {"dtype": dtype, "scale": 0.0039, "zero_point": -128},
        "preprocessing": {
            "resize": {"height": 6, "width": 5, "policy": policy},
            "scale": [scale] * (channels if channels > 1 else 1),
            "offset": [offset] * (channels if channels > 1 else 1),
            "in_model": in_model,
        },
    }
