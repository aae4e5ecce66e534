"""tflite_opt: Keras image classifiers to small, fast, verified TensorFlow Lite models.

The public API, importable without loading TensorFlow until it is used::

    from tflite_opt import ConvertConfig, Mode, run_convert
    report = run_convert(ConvertConfig(modes=(Mode.FULL_INT8,)))
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "ConvertConfig": "tflite_opt.config",
    "IoType": "tflite_opt.config",
    "Mode": "tflite_opt.config",
    "Preprocessing": "tflite_opt.config",
    "run_convert": "tflite_opt.pipeline",
    "convert_keras": "tflite_opt.convert",
    "load_keras_model": "tflite_opt.load",
    "load_dataset": "tflite_opt.representative",
    "read_tflite": "tflite_opt.tflite_file",
    "verify_variant": "tflite_opt.verify",
    "ConvertReport": "tflite_opt.report",
    "TfliteOptError": "tflite_opt.errors",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'tflite_opt' has no attribute {name!r}")
