"""Shared fixtures: real digits written as files, and a tiny model saved as a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import (
    FACE_LABELS,
    FACE_SIZE,
    build_face_model,
    build_keras3_functional,
    build_keras3_sequential,
    build_keras3_transfer,
    build_outlier_model,
    build_sequential,
    keras3,
    mnist_digits,
    resized,
    trained,
    write_pngs,
)
from PIL import Image

from tflite_opt.core.config import ConvertConfig, Mode
from tflite_opt.jobs.convert import run_convert
from tflite_opt.stages.fine_tune import settle_batch_statistics


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


@pytest.fixture(scope="session")
def outlier_data(tmp_path_factory) -> Path:
    """Real digits: .npz training data, calibration PNGs and held-out per-class PNGs, none shared."""
    root = tmp_path_factory.mktemp("outlier")
    images, labels = mnist_digits(2400, seed=1)
    np.savez(root / "train.npz", x=images[:1900], y=labels[:1900])
    write_pngs(root / "calibration", images[1900:2000])
    write_pngs(root / "eval", images[2000:], labels[2000:])
    return root


@pytest.fixture(scope="session")
def outlier_model(outlier_data) -> Path:
    """The model whose full-int8 conversion loses about 78 points (see build_outlier_model), saved."""
    with np.load(outlier_data / "train.npz") as archive:
        model = build_outlier_model(archive["x"], archive["y"])
    path = outlier_data / "outlier_model.keras"
    model.save(path)
    return path


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory) -> Path:
    """The default job's output: float32 and int8 bundles, the report beside them."""
    out = tmp_path_factory.mktemp("bundles")
    run_convert(ConvertConfig(output_dir=out))
    return out


@pytest.fixture(scope="session")
def converted_dir(saved_tiny_model, digit_folders, tmp_path_factory) -> Path:
    """The tiny model converted to float32, float16 and int8 by the convert job."""
    calibration, evaluation = digit_folders
    out = tmp_path_factory.mktemp("converted")
    modes = (Mode.FULL_INT8, Mode.FLOAT16)
    run_convert(ConvertConfig(modes, saved_tiny_model, calibration, evaluation, output_dir=out))
    return out


@pytest.fixture(scope="session")
def faces(tmp_path_factory) -> dict[str, Path]:
    """Someone else's model and data: a 7-class .h5 classifier with (pixel - 127.5) / 127.5 input, its labels
    file in the model's (non-alphabetical) order, calibration images, held-out images in class-named folders
    labelled by the model's own predictions (one of the predicted classes left out), and unlabelled images."""
    root = tmp_path_factory.mktemp("faces")
    images, digits = mnist_digits(3000, seed=4)
    keep = digits < len(FACE_LABELS)
    images, digits = resized(images[keep], FACE_SIZE), digits[keep]
    model = build_face_model(images[:1200].astype(np.float32), digits[:1200])
    model.save(root / "faces.h5")
    (root / "labels.txt").write_text("\n".join(FACE_LABELS) + "\n")
    held_out = images[1300:]
    predicted = np.argmax(model.predict((held_out - 127.5) / 127.5, verbose=0), axis=1)
    present = np.bincount(predicted, minlength=len(FACE_LABELS))
    missing = int(np.argsort(present)[-2])  # the second most predicted class gets no folder
    for i, image in enumerate(held_out):
        if predicted[i] != missing:
            write_image(root / "eval" / FACE_LABELS[predicted[i]] / f"face_{i:04d}.png", image)
    for i, image in enumerate(images[1200:1300]):
        write_image(root / "calibration" / f"calibration_{i:03d}.png", image)
        write_image(root / "unlabelled" / f"photo_{i:03d}.png", held_out[i])
    return {"model": root / "faces.h5", "labels": root / "labels.txt", "missing": FACE_LABELS[missing], "root": root}


def write_image(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image[..., 0]).save(path)


@pytest.fixture(scope="session")
def keras3_models(outlier_data) -> dict[str, Path]:
    """Keras 3 .keras files (Sequential, Functional with Add, a nested backbone), trained a little on the outlier
    data's training digits (input pixel / 255), so that their predictions are decisive."""
    with np.load(outlier_data / "train.npz") as archive:
        images, labels = archive["x"][:1200], archive["y"][:1200]
    paths = {}
    for name, build in (
        ("sequential", build_keras3_sequential),
        ("functional", build_keras3_functional),
        ("transfer", build_keras3_transfer),
    ):
        paths[name] = outlier_data / f"k3_{name}.keras"
        trained(build(), images, labels, epochs=4).save(paths[name])
    return paths


MOBILENET_SIZE = 64
SHAPE = (MOBILENET_SIZE, MOBILENET_SIZE, 3)


@pytest.fixture(scope="session")
def keras3_mobilenets(tmp_path_factory) -> dict[str, Path]:
    """Keras 3 MobileNetV2 (alpha 0.35) and MobileNetV3Small (hard-swish), 64x64, weights=None, trained briefly
    on digits (input (pixel - 127.5) / 127.5) so that their predictions are decisive; digits never used in
    training as calibration and held-out folders, and a few training digits for pruning."""
    keras = keras3()
    root = tmp_path_factory.mktemp("mobilenets")
    images, labels = mnist_digits(2100, seed=5)
    images = resized(images, MOBILENET_SIZE)
    pixels = np.repeat(images, 3, axis=-1).astype(np.float32)
    paths = {"root": root}
    applications = {
        "mobilenet_v2": lambda: keras.applications.MobileNetV2(
            input_shape=SHAPE, alpha=0.35, weights=None, classes=10, classifier_activation=None
        ),
        "mobilenet_v3": lambda: keras.applications.MobileNetV3Small(
            input_shape=SHAPE, minimalistic=False, weights=None, classes=10, include_preprocessing=False,
            classifier_activation=None,
        ),
    }  # fmt: skip
    for name, build in applications.items():
        keras.utils.set_random_seed(0)
        model = build()
        model.compile(keras.optimizers.Adam(2e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit((pixels[:1536] - 127.5) / 127.5, labels[:1536], epochs=4, batch_size=32, verbose=0)
        # Four epochs are too short for BatchNormalization's moving statistics to settle.
        settle_batch_statistics(model, (pixels[:1536] - 127.5) / 127.5, seed=0)
        paths[name] = root / f"{name}.keras"
        model.save(paths[name])
    for i, image in enumerate(images[1536:1600]):
        write_image(root / "calibration" / f"c_{i:03d}.png", image)
    for i, image in enumerate(images[1600:1900]):
        write_image(root / "eval" / str(int(labels[1600 + i])) / f"e_{i:03d}.png", image)
    np.savez(root / "train.npz", x=np.repeat(images[1900:], 3, axis=-1), y=labels[1900:])
    return paths
