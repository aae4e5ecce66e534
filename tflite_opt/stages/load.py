"""Load a Keras image classifier safely and describe what it expects."""

from __future__ import annotations

import contextlib
import json
import logging
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tflite_opt.core import keras2, keras3
from tflite_opt.core.errors import ModelLoadError
from tflite_opt.core.keras3 import is_keras3_model
from tflite_opt.core.tfmot import prune_scope, strip_if_mid_pruning
from tflite_opt.stages.model_safety import check_model_file

log = logging.getLogger(__name__)

EXPORT_FOLDER_HINT = (
    "it holds the inference graph only, not the Keras layers tflite_opt prunes and measures against. "
    "Pass the file the model was saved to with model.save('model.keras') (Keras 3 or tf_keras)"
)


QAT_WRAPPER_PREFIX = "quant_"


@dataclass(frozen=True)
class ClassifierSpec:
    """What an image classifier takes and gives."""

    name: str
    height: int
    width: int
    channels: int
    num_classes: int
    layer_names: tuple[str, ...]
    # (name scope, layer) where tracing gives a layer's operators a scope other than its name (Keras 3).
    renamed_scopes: tuple[tuple[str, str], ...] = ()

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    @property
    def layer_scopes(self) -> dict[str, str]:
        """The top-level layer each name scope in a converted model's tensor names stands for."""
        return self.scopes_for(self.layer_names)

    def scopes_for(self, layers: Iterable[str]) -> dict[str, str]:
        """The name scopes of ``layers`` (those of a nested model's layers too) and the layer each stands for."""
        wanted = set(layers)
        renamed = {scope: layer for scope, layer in self.renamed_scopes if layer in wanted}
        scopes = {**{name: name for name in wanted if name not in renamed.values()}, **renamed}
        # tfmot's quantization-aware wrapper of layer conv1 is named quant_conv1.
        return {**scopes, **{f"{QAT_WRAPPER_PREFIX}{scope}": layer for scope, layer in scopes.items()}}


def _saved_keras_version(path: Path) -> str | None:
    """The Keras version recorded in a model file, or None where none is recorded."""
    try:
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                if "metadata.json" in archive.namelist():
                    return str(json.loads(archive.read("metadata.json")).get("keras_version", "")) or None
        elif path.suffix in (".h5", ".hdf5"):
            import h5py  # deferred: only .h5 files need it

            with h5py.File(path, "r") as handle:
                version = handle.attrs.get("keras_version")
                return version.decode() if isinstance(version, bytes) else (str(version) if version else None)
    except (OSError, zipfile.BadZipFile, json.JSONDecodeError, KeyError) as exc:
        raise ModelLoadError(f"{path} is not a readable Keras {path.suffix} file: {exc}") from exc
    return None


def load_keras_model(path: Path, allow_unsafe: bool = False) -> Any:
    """Load a ``.keras``/``.h5`` file (Keras 3 or tf_keras) or a tf_keras SavedModel folder, without compiling.

    The stored configuration is inspected first (model_safety), so a Lambda layer, a
    module outside Keras or an unregistered custom class is refused by name before
    Keras runs anything; ``.keras`` files then load with ``safe_mode=True``. A file saved
    by Keras 3 loads as a Keras 3 model (``import keras``), any other as a tf_keras one.

    Args:
        path: the model file or folder.
        allow_unsafe: load such a file anyway (the user trusts it), with a warning logged.

    Raises:
        ModelLoadError: missing file, unsafe content, unsupported kind, or a load failure.
    """
    path = Path(path)
    _check_kind(path)
    version = None if path.is_dir() else _saved_keras_version(path)
    major = version.split(".")[0] if version else "2"
    if major not in ("2", "3"):
        raise ModelLoadError(f"{path} was saved by Keras {version}; tflite_opt reads files of Keras 2 and 3")
    for warning in check_model_file(path, allow_unsafe, keras3_file=major == "3"):
        log.warning(warning)
    keras = keras3.keras if major == "3" else keras2.keras
    try:
        # prune_scope: a tf_keras model saved mid-pruning holds PruneLowMagnitude wrappers.
        with prune_scope() if major == "2" else contextlib.nullcontext():
            if path.suffix == ".keras":
                model = keras.models.load_model(path, compile=False, safe_mode=not allow_unsafe)
            else:
                model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a bad file; all mean "cannot load"
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"cannot load {path}: {message}") from exc
    if not isinstance(model, keras.Model):
        raise ModelLoadError(f"{path} did not load as a Keras model (got {type(model).__name__})")
    return model if major == "3" else strip_if_mid_pruning(model)


def _check_kind(path: Path) -> None:
    """Refuse what is missing or not a Keras model file or folder."""
    if not path.exists():
        raise ModelLoadError(f"{path} does not exist")
    if path.is_dir():
        if not (path / "saved_model.pb").exists():
            raise ModelLoadError(f"{path} is a folder but not a SavedModel (no saved_model.pb)")
        if not (path / "keras_metadata.pb").exists():
            raise ModelLoadError(
                f"{path} is a SavedModel without Keras metadata (as Keras 3's model.export() writes): "
                + EXPORT_FOLDER_HINT
            )
    elif path.suffix not in (".keras", ".h5", ".hdf5"):
        raise ModelLoadError(f"{path}: expected a .keras or .h5 file or a SavedModel folder")


def describe_classifier(model: Any, name: str | None = None) -> ClassifierSpec:
    """Check the model is a single-input image classifier and return its spec.

    Raises:
        ModelLoadError: not one NHWC image input with a known size, or not one class-score output.
    """
    label = name or model.name
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelLoadError(
            f"{label} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
            "an image classifier has one of each"
        )
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or any(d is None for d in shape[1:]):
        raise ModelLoadError(f"{label} takes input of shape {shape}; expected (batch, height, width, channels)")
    if shape[3] not in (1, 3, 4):
        raise ModelLoadError(f"{label} takes {shape[3]} channels; expected 1 (grey), 3 (RGB) or 4 (RGBA)")
    out_shape = tuple(model.outputs[0].shape)
    if len(out_shape) != 2 or out_shape[1] is None or out_shape[1] < 2:
        raise ModelLoadError(f"{label} gives output of shape {out_shape}; expected (batch, classes)")
    return ClassifierSpec(
        name=label,
        height=int(shape[1]),
        width=int(shape[2]),
        channels=int(shape[3]),
        num_classes=int(out_shape[1]),
        layer_names=tuple(layer.name for layer in model.layers),
        renamed_scopes=_renamed_scopes(model) if is_keras3_model(model) else (),
    )


def _renamed_scopes(model: Any) -> tuple[tuple[str, str], ...]:
    """(scope, layer) for each layer whose operators a trace puts under a scope other than its name.

    Keras 3 enters each layer's name scope twice while tracing, so TensorFlow makes the
    scope unique: layer ``conv2d`` computes in ``conv2d_1`` and layer ``conv2d_1`` in
    ``conv2d_1_2``. Matching tensor names to layers by name would blame the wrong layer;
    a trace in which each layer records its own scope tells the truth.
    """
    tf = keras2.tf
    scopes: dict[str, str] = {}

    def recording(layer: Any) -> Any:
        call = layer.call

        def recorded_call(*args: Any, **kwargs: Any) -> Any:
            scopes[tf.get_current_name_scope().split("/")[-1]] = layer.name
            return call(*args, **kwargs)

        return recorded_call

    spec = tf.TensorSpec(model.inputs[0].shape, model.inputs[0].dtype)
    layers = list(model._flatten_layers(include_self=False))  # nested models' layers too
    try:
        for layer in layers:
            layer.call = recording(layer)
        tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    finally:
        for layer in layers:
            vars(layer).pop("call", None)
    return tuple((scope, layer) for scope, layer in scopes.items() if scope != layer)
