"""Prune a Keras model and save it stripped: ``python -m tflite_opt.prune`` as a job."""

from __future__ import annotations

from pathlib import Path

from tflite_opt.core.config import InputConfig, PruneConfig
from tflite_opt.core.errors import UsageError
from tflite_opt.core.fileio import atomic_save, refuse_existing
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.jobs.inputs import load_classifier, load_inputs, resolve_defaults
from tflite_opt.results.tuning import PruneStats
from tflite_opt.stages.prune import prune_model


def default_output(model_path: Path | None, config: PruneConfig) -> Path:
    """``artifacts/<model>.pruned<percent>.keras``, named after the model file (or the embedded default)."""
    name = Path(model_path).name.split(".")[0] if model_path is not None else "mnist_cnn"
    return Path("artifacts") / f"{name}.pruned{config.percent}.keras"


def run_prune(
    config: PruneConfig,
    model_path: Path | None = None,
    train_data: Path | None = None,
    preprocessing: Preprocessing | None = None,
    output: Path | None = None,
    overwrite: bool = False,
    allow_unsafe: bool = False,
    progress: bool = False,
) -> tuple[PruneStats, Path]:
    """Prune and fine-tune a model (the embedded default where ``model_path`` is None), then save it stripped;
    ``progress``: a bar of the fine-tuning's steps on a terminal.

    Returns:
        What pruning did, and where the model was saved.

    Raises:
        TfliteOptError: no training data for a user model, an existing output, or any load or data problem.
    """
    output = Path(output) if output is not None else default_output(model_path, config)
    if output.suffix != ".keras":
        raise UsageError(f"--output must end in .keras, got {output}")
    job = resolve_defaults(
        InputConfig(
            model_path=model_path,
            train_data=train_data,
            preprocessing=preprocessing,
            allow_unsafe_deserialization=allow_unsafe,
            fine_tuning="pruning",
        )
    )
    refuse_existing([output], overwrite)
    model, spec = load_classifier(job)
    train = load_inputs(job, spec).train
    result = prune_model(model, train.model_input(job.preprocessing), train.labels, config, progress)
    atomic_save(output, result.model.save, overwrite=overwrite)
    return result.stats, output
