"""Inspect a Keras model file's stored configuration before anything deserializes it.

tf-keras runs code carried by a model file in more ways than safe_mode covers:
a Lambda layer in an .h5 file runs its code while loading (safe_mode does not
apply to .h5), and a .keras config.json may name any module to import. So the
configuration is read as plain JSON first, and Lambda layers, objects from
modules outside Keras, and unregistered custom classes are refused by name.

Keras 3 files are read the same way: their graph references (``__keras_tensor__``),
dtype policies and operation nodes (``x + 3.0`` stored as ``keras.src.ops.numpy.Add``)
are Keras's own; a function registered by the model's author is code and is refused.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tflite_opt.core import keras2, keras3
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
DATA_CLASSES = frozenset({"__tuple__", "TensorShape", "TypeSpec", "TensorSpec", "__ellipsis__", "__keras_tensor__"})
# Where Keras 3 keeps the operations a functional graph stores as nodes (its .h5 files omit the module).
KERAS3_OPERATION_MODULES = ("numpy", "nn", "math", "core", "image")


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


def _is_known_keras_class(class_name: str, keras3_file: bool) -> bool:
    if class_name in MODEL_CLASSES or class_name in TF_OP_LAYERS or class_name in DATA_CLASSES:
        return True
    packages = (keras2.keras, keras3.keras) if keras3_file else (keras2.keras,)
    for keras in packages:
        namespaces = (
            keras.layers, keras.initializers, keras.regularizers, keras.constraints,
            keras.optimizers, keras.losses, keras.metrics, keras.activations,
        )  # fmt: skip
        if any(hasattr(namespace, class_name) for namespace in namespaces):
            return True
        if keras.utils.get_registered_object(class_name) is not None:
            return True
    return keras3_file and _is_keras3_operation(class_name)


def _is_keras3_operation(class_name: str) -> bool:
    """A Keras 3 operation class (``Add``, ``TrueDivide``): it calls a backend op by name, it is no stored code."""
    ops = keras3.keras.src.ops
    for name in KERAS3_OPERATION_MODULES:
        found = getattr(getattr(ops, name), class_name, None)
        if isinstance(found, type) and issubclass(found, ops.operation.Operation):
            return True
    return False


def unsafe_objects(configs: list[Any], keras3_file: bool = False) -> list[str]:
    """What in the stored configuration would run code of the file's own, in words.

    Args:
        configs: :func:`stored_configs` of the file.
        keras3_file: the file was saved by Keras 3, whose own classes are known too.
    """
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
        if class_name == "function" and module == "builtins":
            # Keras 3's form of a function registered with register_keras_serializable: the author's code.
            found.append(f"function {node.get('config')!r} in {where} is the model author's code, not Keras's")
        elif isinstance(module, str) and module:
            if module.split(".")[0] not in TRUSTED_MODULE_ROOTS:
                found.append(f"{class_name} in {where} imports module {module!r}")
        elif class_name != "function" and not _is_known_keras_class(class_name, keras3_file):
            found.append(f"custom object {class_name!r} in {where} is not registered with Keras")
    return list(dict.fromkeys(found))


def check_model_file(path: Path, allow_unsafe: bool = False, keras3_file: bool = False) -> list[str]:
    """Refuse a model file that would run its own code while loading.

    ``keras3_file``: the file was saved by Keras 3.

    Returns:
        Warnings to show when ``allow_unsafe`` let such a file through.

    Raises:
        UnsafeModelError: it would, and ``allow_unsafe`` is False.
    """
    problems = unsafe_objects(stored_configs(path), keras3_file)
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
