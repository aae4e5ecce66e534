"""Where the embedded default model and its data live (no TensorFlow here).

The data is found relative to the source checkout (``pip install -e .``, as the
Makefile does); a non-editable install must be given paths explicitly.
"""

from __future__ import annotations

from pathlib import Path

from tflite_opt.core.preprocessing import Preprocessing

PACKAGE_DATA = Path(__file__).resolve().parents[1] / "data"
MODEL_NAME = "mnist_cnn"
MODEL_PATH = PACKAGE_DATA / f"{MODEL_NAME}.keras"
# The second reference model: MobileNetV2's building blocks, where int8 usually hurts most.
MOBILENET_NAME = "mnist_mobilenet"
MOBILENET_PATH = PACKAGE_DATA / f"{MOBILENET_NAME}.keras"
REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "representative_data" / "mnist"
CALIBRATION_DIR = DATA_DIR / "calibration"
EVAL_DIR = DATA_DIR / "eval"
TRAIN_FILE = DATA_DIR / "train.npz"
PREPROCESSING = Preprocessing(scale=(1.0 / 255.0,), offset=(0.0,))


def data_paths_exist() -> bool:
    """True in a source checkout, where the shipped calibration, evaluation and training data are."""
    return CALIBRATION_DIR.is_dir() and EVAL_DIR.is_dir() and TRAIN_FILE.is_file()
