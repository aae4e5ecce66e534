"""Shared fixtures: real digits written as files, and a tiny model saved as a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import (
    FACE_LABELS,
    FACE_SIZE,
    build_face_model,
    build_outlier_model,
    build_sequential,
    mnist_digits,
    resized,
    write_pngs,
)
from PIL import Image

from tflite_opt.core.config import ConvertConfig, Mode
from tflite_opt.jobs.convert import run_convert


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
