"""Inspect a Keras model file's stored configuration before anything deserializes it.

tf-keras runs code carried by a model file in more ways than safe_mode covers:
a Lambda layer in an .h5 file runs its code while loading (safe_mode does not
apply to .h5), and a .keras config.json may name any module to import. So the
configuration is read as plain JSON first, and Lambda layers, objects from
modules outside Keras, and unregistered custom classes are refused by name.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tflite_opt.core import keras2
from tflite_opt.core.errors import ModelLoadError

# Modules a stored config may name; everything else could be arbitrary code.
TRUSTED_MODULE_ROOTS = ("keras", "tf_keras", "tensorflow_model_optimization")
# Layers that call a TensorFlow API by name (tf.math.sin on a Keras tensor), not stored code.
TF_OP_LAYERS = frozenset({"TFOpLambda", "SlicingOpLambda"})
# Model containers, and what tensorflow-model-optimization stores in a model saved mid-pruning.
MODEL_CLASSES = frozenset(
    {"Functional", "Sequential", "Model", "PruneLowMagnitude", "PolynomialDecay", "ConstantSparsity"}
)
# Plain data a SavedModel's Keras metadata serializes with a class_name: shapes and specs, not code.
DATA_CLASSES = frozenset({"__tuple__", "TensorShape", "TypeSpec", "TensorSpec", "__ellipsis__"})


class UnsafeModelError(ModelLoadError):
    """A model file would run code of its own while loading."""


def stored_configs(path: Path) -> list[Any]:
    """The model configuration(s) a Keras file stores, as plain JSON; nothing is deserialized.

    Raises:
        ModelLoadError: the file cannot be read as its kind.
    """
    try:
        if path.is_dir():
            from tf_keras.protobuf import saved_metadata_pb2  # deferred: tf_keras imports TensorFlow

            metadata = saved_metadata_pb2.SavedMetadata()
            metadata.ParseFromString((path / "keras_metadata.pb").read_bytes())
            return [json.loads(node.metadata) for node in metadata.nodes if node.metadata]
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                return [json.loads(archive.read("config.json"))]
        import h5py  # deferred: only .h5 files need it

        with h5py.File(path, "r") as handle:
            raw = handle.attrs.get("model_config")
            if raw is None:
                return []
            return [json.loads(raw.decode() if isinstance(raw, bytes) else raw)]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ModelLoadError(f"cannot read the model configuration stored in {path}: {exc}") from exc


def _objects(node: Any, layer: str | None = None) -> Iterator[tuple[dict, str | None]]:
    """Every serialized object (a dict with class_name) and the layer it sits in."""
    if isinstance(node, dict):
        if "class_name" in node:
            config = node.get("config")
            name = config.get("name") if isinstance(config, dict) else None
            layer = name if isinstance(name, str) else layer
            yield node, layer
        for value in node.values():
            yield from _objects(value, layer)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value, layer)


def _is_known_keras_class(class_name: str) -> bool:
    keras = keras2.keras
    if class_name in MODEL_CLASSES or class_name in TF_OP_LAYERS or class_name in DATA_CLASSES:
        return True
    namespaces = (
        keras.layers, keras.initializers, keras.regularizers, keras.constraints,
        keras.optimizers, keras.losses, keras.metrics, keras.activations,
    )  # fmt: skip
    if any(hasattr(namespace, class_name) for namespace in namespaces):
        return True
    return keras.utils.get_registered_object(class_name) is not None


def unsafe_objects(configs: list[Any]) -> list[str]:
    """What in the stored configuration would run code of the file's own, in words."""
    found = []
    for node, layer in (pair for config in configs for pair in _objects(config)):
        class_name = node.get("class_name")
        where = f"layer {layer!r}" if layer else "the model"
        if not isinstance(class_name, str):
            continue
        if class_name in ("Lambda", "__lambda__"):
            found.append(f"Lambda layer {layer!r} (its Python code would run)")
            continue
        module = node.get("module")
        if isinstance(module, str) and module:
            if module.split(".")[0] not in TRUSTED_MODULE_ROOTS:
                found.append(f"{class_name} in {where} imports module {module!r}")
        elif class_name != "function" and not _is_known_keras_class(class_name):
            found.append(f"custom object {class_name!r} in {where} is not registered with Keras")
    return list(dict.fromkeys(found))


def check_model_file(path: Path, allow_unsafe: bool = False) -> list[str]:
    """Refuse a model file that would run its own code while loading.

    Returns:
        Warnings to show when ``allow_unsafe`` let such a file through.

    Raises:
        UnsafeModelError: it would, and ``allow_unsafe`` is False.
    """
    problems = unsafe_objects(stored_configs(path))
    if not problems:
        return []
    if not allow_unsafe:
        raise UnsafeModelError(
            f"{path} would run code of its own while loading: {'; '.join(problems)}. Nothing was loaded. "
            "If you trust the file, pass --allow-unsafe-deserialization"
        )
    return [
        f"{path}: loading code from the file because --allow-unsafe-deserialization was given: {'; '.join(problems)}"
    ]
