"""tflite_opt: Keras image classifiers to small, fast, verified TensorFlow Lite models.

The public API, importable without loading TensorFlow until it is used::

    from tflite_opt import ConvertConfig, Mode, run_convert
    report = run_convert(ConvertConfig(modes=(Mode.FULL_INT8,)))
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from tflite_opt.core.version import __version__

_PUBLIC = {
    "ConvertConfig": "tflite_opt.core.config",
    "IoType": "tflite_opt.core.config",
    "Mode": "tflite_opt.core.config",
    "Preprocessing": "tflite_opt.core.preprocessing",
    "PruneConfig": "tflite_opt.core.config",
    "SearchConfig": "tflite_opt.core.config",
    "BenchmarkSettings": "tflite_opt.core.config",
    "TfliteOptError": "tflite_opt.core.errors",
    "read_tflite": "tflite_opt.core.tflite_file",
    "load_keras_model": "tflite_opt.stages.load",
    "load_dataset": "tflite_opt.stages.data",
    "convert_keras": "tflite_opt.stages.convert",
    "verify_variant": "tflite_opt.stages.verify",
    "ConvertReport": "tflite_opt.results.report",
    "VariantSpec": "tflite_opt.core.variant",
    "InputConfig": "tflite_opt.core.config",
    "ModelCard": "tflite_opt.core.config",
    "clients": "tflite_opt.stages.metadata",
    "run_convert": "tflite_opt.jobs.convert",
    "run_benchmark": "tflite_opt.jobs.benchmark",
    "run_prune": "tflite_opt.jobs.prune",
    "run_layer_errors": "tflite_opt.jobs.layer_errors",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'tflite_opt' has no attribute {name!r}")
