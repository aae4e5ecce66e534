"""What a job reads before it works: the defaults filled in, the model, and its data."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tflite_opt.core import default_data
from tflite_opt.core.config import ConvertConfig, Preprocessing
from tflite_opt.core.errors import DataError, UsageError
from tflite_opt.stages.benchmark import content_digests
from tflite_opt.stages.data import Dataset, DataSource, ImageSize, load_dataset, open_source, range_warnings
from tflite_opt.stages.load import ClassifierSpec, describe_classifier, load_keras_model


def resolve_defaults(config: ConvertConfig) -> ConvertConfig:
    """Fill in the embedded default model, data and preprocessing where the config has none.

    Raises:
        UsageError: a user model without the data its modes need, or no default data in this install.
    """
    if config.model_path is not None:
        if config.needs_calibration and config.representative_data is None:
            raise UsageError(
                "--full-int8 needs calibration data for your model: pass --representative-data "
                "(a folder of images or a .npy/.npz file)"
            )
        if config.prune is not None and config.train_data is None:
            raise UsageError(
                "pruning fine-tunes the model and needs labelled training data: pass --train-data "
                "(one subfolder per class, or an .npz file with arrays x and y)"
            )
        return replace(config, preprocessing=config.preprocessing or Preprocessing())
    if not default_data.data_paths_exist():
        raise UsageError(
            f"the embedded default data is missing under {default_data.DATA_DIR}; run from a source "
            "checkout (pip install -e .), or pass --model, --representative-data and --eval-data"
        )
    return replace(
        config,
        model_path=default_data.MODEL_PATH,
        model_name=config.model_name or default_data.MODEL_NAME,
        representative_data=config.representative_data or default_data.CALIBRATION_DIR,
        eval_data=config.eval_data or default_data.EVAL_DIR,
        train_data=config.train_data or (default_data.TRAIN_FILE if config.prune is not None else None),
        preprocessing=config.preprocessing or default_data.PREPROCESSING,
    )


def load_classifier(config: ConvertConfig) -> tuple[Any, ClassifierSpec]:
    """The Keras model of a resolved config and its spec, checked against the preprocessing.

    Raises:
        ModelLoadError: the model cannot be loaded safely or is not an image classifier.
        UsageError: the preprocessing has values for another number of channels.
    """
    model = load_keras_model(config.model_path, config.allow_unsafe_deserialization)
    spec = describe_classifier(model, config.model_name)
    preprocessing = config.preprocessing
    if preprocessing is not None and not preprocessing.channel_count_fits(spec.channels):
        raise UsageError(
            f"the preprocessing has {len(preprocessing.scale)} scale and {len(preprocessing.offset)} offset values; "
            f"{spec.name} takes {spec.channels} channels"
        )
    return model, spec


@dataclass(frozen=True)
class Inputs:
    """The data of a run: calibration and training samples in memory, the evaluation set streamed."""

    calibration: Dataset | None
    evaluation: DataSource | None
    train: Dataset | None
    warnings: tuple[str, ...] = ()

    def seen(self) -> dict[str, set[str]]:
        """Content digests of the data the model saw, by what it was for ("calibration", "training")."""
        return seen_digests(calibration=self.calibration, training=self.train)


def seen_digests(**datasets: Dataset | None) -> dict[str, set[str]]:
    """Content digests of each given dataset, by the name it was given under."""
    return {what: set(content_digests(data.raw)) for what, data in datasets.items() if data is not None}


def load_inputs(config: ConvertConfig, spec: ClassifierSpec) -> Inputs:
    """Calibration and training data (in memory), and the evaluation source (streamed), as the config says.

    Raises:
        DataError: unreadable data, or training labels the model has no class for.
    """
    size = ImageSize(spec.height, spec.width, spec.channels)
    warnings: list[str] = []
    calibration = train = evaluation = None
    if config.needs_calibration:
        calibration = load_dataset(config.representative_data, size, config.num_calibration_samples, config.seed)
        warnings += [
            *calibration.warnings,
            *range_warnings(calibration, config.preprocessing, config.representative_data),
        ]
    if config.train_data is not None:
        train = load_dataset(config.train_data, size, require_labels=True)
        low, high = int(train.labels.min()), int(train.labels.max())
        if low < 0 or high >= spec.num_classes:
            raise DataError(
                f"{config.train_data}: labels run from {low} to {high}, but {spec.name} has {spec.num_classes} classes"
            )
    if config.eval_data is not None:
        evaluation = open_source(config.eval_data, size, require_labels=True)
    return Inputs(calibration, evaluation, train, tuple(warnings))


def labels_for(config: ConvertConfig, evaluation: DataSource | None, num_classes: int) -> list[str]:
    """Class names for the bundle: --labels, else the evaluation folders' names, else the indices.

    Raises:
        DataError: an unreadable labels file, or not one name per class.
    """
    if config.labels_file is not None:
        try:
            names = [line.strip() for line in Path(config.labels_file).read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise DataError(f"cannot read --labels {config.labels_file}: {exc}") from exc
    elif evaluation is not None and evaluation.class_names is not None:
        names = list(evaluation.class_names)
    else:
        names = [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise DataError(f"{len(names)} labels for a model with {num_classes} classes; pass --labels with one per line")
    return names
