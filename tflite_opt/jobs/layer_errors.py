"""The per-layer int8 error table as a job: ``python -m tflite_opt.debug``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from tflite_opt.core.config import InputConfig
from tflite_opt.core.errors import UsageError
from tflite_opt.jobs.inputs import load_classifier, load_inputs, resolve_defaults
from tflite_opt.results.search import LayerError
from tflite_opt.stages.convert import calibrate_keras
from tflite_opt.stages.layer_errors import quantization_errors


@dataclass(frozen=True)
class LayerErrorReport:
    """Each layer's int8 error on the calibration samples, worst first."""

    model: str
    samples: int
    errors: tuple[LayerError, ...]

    def to_dict(self) -> dict:
        return {"model": self.model, "samples": self.samples, "layers": [e.to_dict() for e in self.errors]}


def run_layer_errors(
    config: InputConfig, per_tensor: bool = False, float_layers: Sequence[str] = (), progress: bool = False
) -> LayerErrorReport:
    """Calibrate the model (the embedded default where ``config`` names none) and measure each layer's int8 error.

    Args:
        config: the model, the calibration data and its preprocessing.
        per_tensor: measure one scale per weight tensor instead of one per output channel.
        float_layers: layers to keep in float while measuring the others.
        progress: a progress bar over the calibration samples on a terminal.

    Raises:
        UsageError: a float layer the model does not have.
        TfliteOptError: any load, data or conversion problem.
    """
    config = resolve_defaults(replace(config, needs_calibration=True))
    model, spec = load_classifier(config)
    unknown = [layer for layer in float_layers if layer not in spec.layer_names]
    if unknown:
        raise UsageError(f"--float-layers: {spec.name} has no layer {', '.join(unknown)}")
    samples = load_inputs(config, spec).calibration.model_input(config.preprocessing)
    calibrated = calibrate_keras(model, samples, progress=progress)
    errors = quantization_errors(calibrated, samples, spec.layer_scopes, per_tensor, float_layers)
    return LayerErrorReport(spec.name, len(samples), errors)
