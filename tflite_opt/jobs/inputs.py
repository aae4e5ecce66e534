"""What a job reads before it works: the defaults filled in, the model, and its data."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tflite_opt.core import default_data
from tflite_opt.core.config import InputConfig
from tflite_opt.core.errors import DataError, UsageError
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.results.inputs import ClassMapping
from tflite_opt.stages.benchmark import content_digests
from tflite_opt.stages.data import (
    Dataset,
    DataSource,
    ImageSize,
    load_dataset,
    open_source,
    range_warnings,
    read_labels,
)
from tflite_opt.stages.load import ClassifierSpec, describe_classifier, load_keras_model

log = logging.getLogger(__name__)


def resolve_defaults(config: InputConfig) -> InputConfig:
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
        if config.fine_tuning and config.train_data is None:
            raise UsageError(
                f"{config.fine_tuning} fine-tunes the model and needs "
                "labelled training data: pass --train-data "
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
        train_data=config.train_data or (default_data.TRAIN_FILE if config.fine_tuning else None),
        preprocessing=config.preprocessing or default_data.PREPROCESSING,
    )


def load_classifier(config: InputConfig) -> tuple[Any, ClassifierSpec]:
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
    """The data of a run: calibration and training samples in memory, the evaluation set streamed.

    Attributes:
        labels: the model's class names, from --labels, else the evaluation folders', else None.
        warnings: what the user should know about the data (shown with the report).
    """

    calibration: Dataset | None
    evaluation: DataSource | None
    train: Dataset | None
    labels: tuple[str, ...] | None = None
    warnings: tuple[str, ...] = ()

    def seen(self) -> dict[str, set[str]]:
        """Content digests of the data the model saw, by what it was for ("calibration", "training")."""
        return seen_digests(calibration=self.calibration, training=self.train)

    @property
    def labelled(self) -> bool:
        """True when the evaluation data has labels (accuracy); False means fidelity to the float model."""
        return self.evaluation is not None and self.evaluation.labels is not None


def seen_digests(**datasets: Dataset | None) -> dict[str, set[str]]:
    """Content digests of each given dataset, by the name it was given under."""
    return {what: set(content_digests(data.raw)) for what, data in datasets.items() if data is not None}


def load_inputs(config: InputConfig, spec: ClassifierSpec) -> Inputs:
    """Calibration and training data (in memory), and the evaluation source (streamed), as the config says.

    Class folders are looked up by name in ``--labels`` where it is given; an evaluation folder without
    class subfolders is unlabelled (the run then measures fidelity to the float model).

    Raises:
        DataError: unreadable data, labels that do not fit the model, or folders the labels do not name.
    """
    log.info("reading the data")
    size = ImageSize(spec.height, spec.width, spec.channels, config.resize)
    labels = _model_labels(config, spec)
    warnings: list[str] = []
    calibration = train = evaluation = None
    if config.needs_calibration:
        calibration = load_dataset(config.representative_data, size, config.num_calibration_samples, config.seed)
        warnings += [
            *calibration.warnings,
            *range_warnings(calibration, config.preprocessing, config.representative_data),
        ]
    if config.train_data is not None:
        train = load_dataset(config.train_data, size, require_labels=True, labels=labels)
        _check_label_range(train.labels, config.train_data, spec)
    if config.eval_data is not None:
        evaluation = open_source(config.eval_data, size, labels=labels)
        if evaluation.labels is not None:
            _check_label_range(evaluation.labels, config.eval_data, spec)
    warnings += _mapping_warnings(train, evaluation, spec)
    if labels is None and evaluation is not None and evaluation.class_names is not None:
        labels = evaluation.class_names
    return Inputs(calibration, evaluation, train, tuple(labels) if labels else None, tuple(warnings))


def _model_labels(config: InputConfig, spec: ClassifierSpec) -> list[str] | None:
    if config.labels_file is None:
        return None
    labels = read_labels(config.labels_file)
    if len(labels) != spec.num_classes:
        raise DataError(
            f"--labels {config.labels_file} names {len(labels)} classes; {spec.name} has {spec.num_classes}"
        )
    return labels


def _check_label_range(labels: Any, source: Path, spec: ClassifierSpec) -> None:
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= spec.num_classes:
        raise DataError(f"{source}: labels run from {low} to {high}, but {spec.name} has {spec.num_classes} classes")


def _mapping_warnings(train: Dataset | None, evaluation: DataSource | None, spec: ClassifierSpec) -> list[str]:
    """What a guessed class order (sorted folder names, no --labels) could get wrong.

    Raises:
        DataError: training and evaluation folders that name different classes, so the guess would
            number the same class differently in each.
    """
    mappings = [m for m in (train.mapping if train else None, evaluation.mapping if evaluation else None) if m]
    guessed = [m for m in mappings if m.guessed]
    if len(guessed) == 2 and guessed[0].names != guessed[1].names:
        raise DataError(
            "the training and evaluation folders name different classes, so sorted order would number them "
            "differently; pass --labels with the model's class names in its order"
        )
    return [_guess_warning(m, spec) for m in guessed[:1]]


def _guess_warning(mapping: ClassMapping, spec: ClassifierSpec) -> str:
    """What a guessed class order could get wrong, in one line."""
    text = (
        "the class folders were numbered in sorted order because no --labels was given; if the model learned "
        "another order, every figure is wrong"
    )
    if mapping.folders < spec.num_classes:
        text += (
            f"; only {mapping.folders} of its {spec.num_classes} classes have a folder, and a missing class "
            "shifts every later one"
        )
    return text + ": pass --labels with the model's class names in its order"


def unsaid_warnings(inputs: Inputs, num_classes: int) -> list[str]:
    """What a run without --eval-data or without any class names cannot tell, said out loud."""
    warnings = []
    if inputs.evaluation is None:
        warnings.append(
            "no --eval-data: top-1 was not measured, so nothing here says whether the smaller models keep the float "
            "model's accuracy; pass held-out images (class folders, or a flat folder for agreement with the float "
            "model)"
        )
    if not inputs.labels:
        warnings.append(
            f"no --labels and no class folders: the bundle's labels are the class indices 0 to {num_classes - 1}, "
            "so apps and MediaPipe Tasks will show numbers; pass --labels with the model's class names"
        )
    return warnings


def labels_for(inputs: Inputs, num_classes: int) -> list[str]:
    """Class names for the bundle: --labels, else the evaluation folders' names (the classes no folder names
    get their index; the report warns that this order is a guess), else the indices.

    Raises:
        DataError: more folder names than the model has classes.
    """
    names = list(inputs.labels or ())
    if len(names) > num_classes:
        raise DataError(
            f"{len(names)} class folders for a model with {num_classes} classes; pass --labels with one per line"
        )
    return names + [str(i) for i in range(len(names), num_classes)]
