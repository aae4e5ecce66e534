"""Rewrite a Keras 3 model's configuration into the one tf_keras writes, for :mod:`tflite_opt.stages.translate`.

tf_keras rebuilds the model from the rewritten configuration; the weights are copied, and the
translation checked, in :mod:`tflite_opt.stages.translate`. Only what is on the allow-lists below
is rewritten; anything else is refused by name.

Rewrites, each with a reason:

* nested models are inlined (a transfer-learning backbone's layers are pruned too) and a
  Sequential model becomes a functional graph;
* DTypePolicy dicts become policy names; InputLayer ``batch_shape`` is ``batch_input_shape``;
  options tf_keras lacks are dropped only when they hold Keras 3's default;
* activations Keras 3 and tf_keras compute alike keep their name (``silu`` is ``swish``);
  ``hard_sigmoid`` (Keras 3: relu6(x + 3) / 6; tf_keras: clip(0.2x + 0.5), same name, other
  maths), ``hard_silu``, ``relu6``, ``leaky_relu`` and ``log_softmax`` are expanded into
  built-in layers, never into registered functions, which model files must not carry;
* operation nodes (``x + 3.0`` on a Keras tensor) become TensorFlow-op layers or merge layers;
* a recorded ``training=False`` is dropped: Keras 3 writes it even for a plain Dropout call and
  overrides it with the model's flag, tf_keras would obey it and freeze Dropout and
  BatchNormalization during fine-tuning.
"""

from __future__ import annotations

import inspect
from typing import Any

from tflite_opt.core import keras2, keras3
from tflite_opt.core.errors import TranslationError

ALLOWED_LAYERS = frozenset(
    {
        "InputLayer", "Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose", "Dense",
        "BatchNormalization", "LayerNormalization", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
        "Dropout", "SpatialDropout1D", "SpatialDropout2D", "Flatten", "Reshape", "Permute", "Identity",
        "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "MaxPooling1D",
        "AveragePooling1D", "GlobalAveragePooling1D", "ZeroPadding2D", "Cropping2D", "UpSampling2D",
        "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Rescaling",
        "Normalization",
    }
)  # fmt: skip
MODEL_CLASSES = frozenset({"Functional", "Sequential", "Model"})
# Same name and maths (default arguments included) in Keras 3 and tf_keras.
SAME_ACTIVATIONS = frozenset(
    {"linear", "relu", "sigmoid", "tanh", "softmax", "elu", "selu", "softplus", "softsign", "exponential",
     "swish", "gelu", "mish"}
)  # fmt: skip
RENAMED_ACTIVATIONS = {"silu": "swish"}
EXPANDED_ACTIVATIONS = frozenset({"hard_sigmoid", "hard_silu", "hard_swish", "relu6", "leaky_relu", "log_softmax"})
RENAMED_KEYS = {"InputLayer": {"batch_shape": "batch_input_shape"}, "LeakyReLU": {"negative_slope": "alpha"}}
# Keyword arguments every tf_keras layer takes.
BASE_LAYER_KEYS = frozenset(
    {"name", "trainable", "dtype", "dynamic", "input_dim", "input_shape", "batch_input_shape", "batch_size",
     "weights", "activity_regularizer", "autocast", "implementation"}
)  # fmt: skip
# Keras 3 operations on a tensor and a scalar, as the TensorFlow function tf_keras records for them.
OP_FUNCTIONS = {
    "Add": "__operators__.add", "Subtract": "math.subtract", "Multiply": "math.multiply",
    "Divide": "math.truediv", "TrueDivide": "math.truediv",
}  # fmt: skip
COMMUTATIVE_OPS = frozenset({"Add", "Multiply"})
# ... and on two tensors, as a merge layer.
OP_MERGE_LAYERS = {"Add": "Add", "Subtract": "Subtract", "Multiply": "Multiply"}
WHAT_TO_DO = (
    "convert without --prune, --cluster and --qat (Keras 3 models convert as they are), or rebuild the model in "
    "tf_keras"
)


def tf_keras_config(model3: Any) -> tuple[dict, list[str]]:
    """The functional config tf_keras writes for the Keras 3 ``model3``, and a note on each rewrite made.

    Raises:
        TranslationError: something off the allow-lists, named, with what to do.
    """
    translator = _Translator()
    flat = _flattened(_functional_config(type(model3).__name__, model3.get_config()))
    return translator.model(flat), translator.notes


# ------------------------------------------------------------------------- graph (Keras 3 format)
def _tensor(history: list) -> dict:
    """A reference to a layer's output, as Keras 3 stores it."""
    return {"class_name": "__keras_tensor__", "config": {"keras_history": list(history)}}


def _is_tensor(value: Any) -> bool:
    return isinstance(value, dict) and value.get("class_name") == "__keras_tensor__"


def _endpoints(value: Any) -> list[list]:
    """A model's input_layers/output_layers as a list of [layer, node, tensor]."""
    if isinstance(value, dict):
        raise TranslationError(f"models with named (dict) inputs or outputs cannot be translated. {WHAT_TO_DO}")
    return [list(value)] if value and isinstance(value[0], str) else [list(item) for item in value]


def _functional_config(class_name: str, config: dict) -> dict:
    """A Sequential or Functional model's config as a functional graph (Keras 3 format), as a copy."""
    config = _as_lists(config)
    if class_name == "Sequential":
        return _sequential_as_functional(config)
    if class_name in MODEL_CLASSES and "layers" in config:
        return config
    raise TranslationError(
        f"{config.get('name', 'the model')} is a subclassed {class_name} model; only Sequential and Functional "
        f"models can be translated. {WHAT_TO_DO}"
    )


def _as_lists(value: Any) -> Any:
    """A copy of a config with tuples as lists, as the stored JSON has them (``get_config()`` keeps tuples)."""
    if isinstance(value, dict):
        return {key: _as_lists(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_lists(item) for item in value]
    return value


def _sequential_as_functional(config: dict) -> dict:
    layers = config["layers"]
    if not layers or layers[0]["class_name"] != "InputLayer":
        raise TranslationError(f"Sequential model {config['name']!r} has no Input layer. {WHAT_TO_DO}")
    previous = None
    for entry in layers:
        entry["name"] = entry["config"]["name"]
        entry["inbound_nodes"] = [] if previous is None else [{"args": [_tensor([previous, 0, 0])], "kwargs": {}}]
        previous = entry["name"]
    return {
        "name": config["name"],
        "trainable": config.get("trainable", True),
        "layers": layers,
        "input_layers": [[layers[0]["name"], 0, 0]],
        "output_layers": [[previous, 0, 0]],
    }


def _flattened(config: dict) -> dict:
    """The functional graph with every nested model's layers inlined in its place."""
    layers, replaced = [], {}
    for entry in config["layers"]:
        if entry["class_name"] in MODEL_CLASSES:
            inner_layers, inner_replaced = _inlined(entry)
            layers += inner_layers
            replaced.update(inner_replaced)
        else:
            layers.append(entry)
    names = [entry["name"] for entry in layers]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise TranslationError(f"a nested model repeats layer names {duplicates} of the outer model. {WHAT_TO_DO}")
    return {
        **config,
        "layers": [_rewired(entry, replaced) for entry in layers],
        "input_layers": _endpoints(config["input_layers"]),
        "output_layers": [_redirected(h, replaced) for h in _endpoints(config["output_layers"])],
    }


def _inlined(entry: dict) -> tuple[list[dict], dict[tuple, list]]:
    """A nested model's layers, and where references to its inputs and outputs now point."""
    name = entry["name"]
    if len(entry["inbound_nodes"]) != 1:
        raise TranslationError(
            f"nested model {name!r} is called {len(entry['inbound_nodes'])} times; only a model used once can be "
            f"inlined. {WHAT_TO_DO}"
        )
    inner = _flattened(_functional_config(entry["class_name"], entry["config"]))
    argument = entry["inbound_nodes"][0]["args"][0]
    outer_inputs = [t["config"]["keras_history"] for t in (argument if isinstance(argument, list) else [argument])]
    if len(outer_inputs) != len(inner["input_layers"]):
        raise TranslationError(f"nested model {name!r} is called on {len(outer_inputs)} inputs, it takes "
                               f"{len(inner['input_layers'])}. {WHAT_TO_DO}")  # fmt: skip
    replaced = {tuple(i): list(o) for i, o in zip(inner["input_layers"], outer_inputs, strict=True)}
    replaced.update({(name, 0, index): output for index, output in enumerate(inner["output_layers"])})
    frozen = entry["config"].get("trainable", True) is False
    layers = [e for e in inner["layers"] if e["class_name"] != "InputLayer"]
    for layer in layers if frozen else ():
        layer["config"]["trainable"] = False  # base.trainable = False holds for every layer inside
    return layers, replaced


def _redirected(history: list, replaced: dict[tuple, list]) -> list:
    seen = 0
    while tuple(history) in replaced and seen <= len(replaced):
        history, seen = replaced[tuple(history)], seen + 1
    return list(history)


def _rewired(value: Any, replaced: dict[tuple, list]) -> Any:
    """``value`` with every tensor reference redirected through ``replaced``."""
    if _is_tensor(value):
        return _tensor(_redirected(value["config"]["keras_history"], replaced))
    if isinstance(value, dict):
        return {key: _rewired(item, replaced) for key, item in value.items()}
    if isinstance(value, list):
        return [_rewired(item, replaced) for item in value]
    return value


# ------------------------------------------------------------------------------- Keras 3 → tf_keras
def _same(a: Any, b: Any) -> bool:
    """Equal, tuples and lists alike."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _default(klass: Any, key: str) -> Any:
    """The default of ``key`` in ``klass.__init__`` (``inspect.Parameter.empty`` when it has none)."""
    parameter = inspect.signature(klass.__init__).parameters.get(key)
    return parameter.default if parameter is not None else inspect.Parameter.empty


def _accepted_keys(klass: Any) -> set[str]:
    keys = set(BASE_LAYER_KEYS)
    for base in inspect.getmro(klass):
        if "__init__" in vars(base):
            keys |= {p for p in inspect.signature(base.__init__).parameters if p not in ("self", "args", "kwargs")}
    return keys


def _tf_keras_layer(class_name: str, name: str, config: dict, inputs: list[list]) -> dict:
    """A tf_keras layer entry of a functional config, called once on ``inputs``."""
    merged = {"name": name, "trainable": True, "dtype": "float32", **config}
    node = [[*history, {}] for history in inputs]
    return {"class_name": class_name, "config": merged, "name": name, "inbound_nodes": [node]}


def _tf_op_layer(function: str, name: str, source: list, arguments: dict) -> dict:
    """A tf_keras TFOpLambda entry: a TensorFlow function called by name on one tensor (no stored code)."""
    config = {"name": name, "trainable": True, "dtype": "float32", "function": function}
    return {
        "class_name": "TFOpLambda",
        "config": config,
        "name": name,
        "inbound_nodes": [[*source, {**arguments, "name": None}]],
    }


def _expanded(activation: str, source: list, base: str) -> list[dict]:
    """Built-in tf_keras layers computing a Keras 3 activation on ``source``; the last gives the result."""
    if activation == "relu6":
        return [_tf_keras_layer("ReLU", f"{base}_relu6", {"max_value": 6.0}, [source])]
    if activation == "leaky_relu":  # Keras 3's default slope; tf_keras's LeakyReLU defaults to 0.3
        return [_tf_keras_layer("LeakyReLU", f"{base}_leaky_relu", {"alpha": 0.2}, [source])]
    if activation == "log_softmax":
        return [_tf_op_layer("nn.log_softmax", f"{base}_log_softmax", source, {"axis": -1})]
    # Keras 3's hard_sigmoid: relu6(x + 3) / 6, op for op.
    hard_sigmoid = [
        _tf_op_layer("__operators__.add", f"{base}_plus3", source, {"y": 3.0}),
        _tf_keras_layer("ReLU", f"{base}_relu6", {"max_value": 6.0}, [[f"{base}_plus3", 0, 0]]),
        _tf_op_layer("math.truediv", f"{base}_hard_sigmoid", [f"{base}_relu6", 0, 0], {"y": 6.0}),
    ]
    if activation == "hard_sigmoid":
        return hard_sigmoid
    last = [hard_sigmoid[-1]["name"], 0, 0]
    return [*hard_sigmoid, _tf_keras_layer("Multiply", f"{base}_hard_silu", {}, [source, last])]


class _Translator:
    """Rewrites a flat Keras 3 functional config into the config tf_keras writes."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.outputs: dict[str, str] = {}  # layer -> the expansion layer that now gives its output

    def model(self, config: dict) -> dict:
        layers = []
        for entry in config["layers"]:
            layers += self.layer(entry)
        return {
            "name": config["name"],
            "trainable": config.get("trainable", True),
            "layers": layers,
            "input_layers": config["input_layers"],
            "output_layers": [self.history(h) for h in config["output_layers"]],
        }

    def history(self, history: list) -> list:
        layer, node, tensor = history
        return [self.outputs.get(layer, layer), node, tensor]

    def layer(self, entry: dict) -> list[dict]:
        class_name, name = entry["class_name"], entry["name"]
        where = f"layer {name!r} ({class_name})"
        if (entry.get("module") or "").startswith("keras.src.ops."):
            return [self.operation(entry, where)]
        if class_name not in ALLOWED_LAYERS or not (entry.get("module") or "keras").startswith("keras"):
            raise TranslationError(f"{where} is not on the list of layers tflite_opt translates. {WHAT_TO_DO}")
        config = self.layer_config(class_name, entry["config"], where)
        nodes = [self.node(node, where) for node in entry.get("inbound_nodes", [])]
        activation = config.get("activation")
        if activation in EXPANDED_ACTIVATIONS:
            return self.expand(class_name, name, config, nodes, where)
        return [{"class_name": class_name, "config": config, "name": name, "inbound_nodes": nodes}]

    def expand(self, class_name: str, name: str, config: dict, nodes: list, where: str) -> list[dict]:
        """A layer whose activation tf_keras lacks: the layer without it, then the activation as layers."""
        activation = config["activation"]
        if len(nodes) != 1:
            raise TranslationError(f"{where}: a shared layer with activation {activation!r}. {WHAT_TO_DO}")
        self.notes.append(f"{where}: activation {activation!r} expanded into built-in tf_keras layers")
        if class_name == "Activation":  # the expansion takes the layer's place
            expansion = _expanded(activation, nodes[0][0][:3], name)
            own = []
        else:
            own = [{"class_name": class_name, "config": {**config, "activation": "linear"}, "name": name,
                    "inbound_nodes": nodes}]  # fmt: skip
            expansion = _expanded(activation, [name, 0, 0], name)
        self.outputs[name] = expansion[-1]["name"]
        return own + expansion

    def node(self, node: dict, where: str) -> list:
        arguments = node.get("args", [])
        if not arguments or any(a is not None for a in arguments[1:]):
            raise TranslationError(f"{where}: a call with {len(arguments)} positional inputs. {WHAT_TO_DO}")
        tensors = arguments[0] if isinstance(arguments[0], list) else [arguments[0]]
        if not all(_is_tensor(t) for t in tensors):
            raise TranslationError(f"{where}: a call on constants. {WHAT_TO_DO}")
        keywords = {}
        for key, value in (node.get("kwargs") or {}).items():
            # None: e.g. mask=None. training: Keras 3 records it and overrides it with the model's flag.
            if value is None or key == "training":
                continue
            if "__keras_tensor__" in repr(value):
                raise TranslationError(f"{where}: a tensor passed as keyword {key!r}. {WHAT_TO_DO}")
            keywords[key] = value
        return [[*self.history(t["config"]["keras_history"]), dict(keywords)] for t in tensors]

    def operation(self, entry: dict, where: str) -> dict:
        """A Keras 3 operation node (``x + 3.0``) as tf_keras writes it: a TensorFlow-op layer or a merge layer."""
        op, name = entry["class_name"], entry["name"]
        (node,) = entry["inbound_nodes"]
        arguments = node.get("args", [])
        tensors = [self.history(a["config"]["keras_history"]) for a in arguments if _is_tensor(a)]
        constants = [a for a in arguments if not _is_tensor(a)]
        plain = not node.get("kwargs") and not (entry.get("config", {}).keys() - {"name"}) and len(arguments) == 2
        if plain and len(tensors) == 2 and op in OP_MERGE_LAYERS:
            self.notes.append(f"{where}: operation {op} on two tensors -> {OP_MERGE_LAYERS[op]} layer")
            return _tf_keras_layer(OP_MERGE_LAYERS[op], name, {}, tensors)
        scalar = len(constants) == 1 and isinstance(constants[0], (int, float))
        if plain and scalar and op in OP_FUNCTIONS and (_is_tensor(arguments[0]) or op in COMMUTATIVE_OPS):
            self.notes.append(f"{where}: operation {op}(tensor, {constants[0]}) -> tf.{OP_FUNCTIONS[op]}")
            return _tf_op_layer(OP_FUNCTIONS[op], name, tensors[0], {"y": float(constants[0])})
        raise TranslationError(
            f"{where}: Keras 3 operation {entry.get('module')}.{op} on {len(tensors)} tensor(s) and "
            f"{len(constants)} constant(s) is not on the list tflite_opt translates. {WHAT_TO_DO}"
        )

    def layer_config(self, class_name: str, config: dict, where: str) -> dict:
        """A layer's config in tf_keras's terms; an option tf_keras lacks passes only at Keras 3's default."""
        tf_keras_class = getattr(keras2.keras.layers, class_name)
        keras3_class = getattr(keras3.keras.layers, class_name)
        accepted = _accepted_keys(tf_keras_class)
        renamed = RENAMED_KEYS.get(class_name, {})
        translated = {}
        for key, value in config.items():
            value = self.value(key, value, where)
            if renamed.get(key, key) in accepted:
                translated[renamed.get(key, key)] = value
            elif not _same(value, _default(keras3_class, key)):
                raise TranslationError(f"{where}: option {key}={value!r} has no tf_keras counterpart. {WHAT_TO_DO}")
        return translated

    def value(self, key: str, value: Any, where: str) -> Any:
        if key == "dtype":
            return _dtype(value, where)
        if key == "activation":
            return _activation(value, where)
        for kind in ("initializer", "regularizer", "constraint"):
            if key.endswith(f"_{kind}"):
                return self.keras_object(value, f"{kind}s", where)
        return value

    def keras_object(self, value: Any, kind: str, where: str) -> Any:
        """An initializer, regularizer or constraint in tf_keras's terms."""
        if value is None or isinstance(value, str):
            return value
        class_name = value.get("class_name")
        tf_keras_class = getattr(getattr(keras2.keras, kind), class_name, None)
        keras3_class = getattr(getattr(keras3.keras, kind), class_name, None)
        if tf_keras_class is None or keras3_class is None or not (value.get("module") or "keras").startswith("keras"):
            raise TranslationError(f"{where}: {kind[:-1]} {class_name} has no tf_keras counterpart. {WHAT_TO_DO}")
        accepted = _accepted_keys(tf_keras_class) - BASE_LAYER_KEYS
        config = {}
        for key, item in (value.get("config") or {}).items():
            if key in accepted:
                config[key] = item
            elif _same(item, _default(keras3_class, key)):
                continue  # a Keras 3 option left at its default: nothing to translate
            elif kind == "initializers":
                self.notes.append(f"{where}: initializer option {key} dropped (the weights are copied)")
            else:
                raise TranslationError(f"{where}: {class_name} option {key}={item!r} has no tf_keras counterpart")
        return {"class_name": class_name, "config": config}


def _dtype(value: Any, where: str) -> Any:
    """A Keras 3 DTypePolicy as the policy name tf_keras takes."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
        return value["config"]["name"]
    raise TranslationError(f"{where}: dtype policy {value!r} (a quantized Keras 3 model?) has no tf_keras form")


def _activation(value: Any, where: str) -> Any:
    """A Keras 3 activation as tf_keras names it (expanded ones stay, :meth:`_Translator.expand` handles them)."""
    if isinstance(value, dict) and value.get("class_name") == "function" and isinstance(value.get("config"), str):
        value = value["config"]
    if value is None or value in SAME_ACTIVATIONS or value in EXPANDED_ACTIVATIONS:
        return value
    if value in RENAMED_ACTIVATIONS:
        return RENAMED_ACTIVATIONS[value]
    raise TranslationError(f"{where}: activation {value!r} has no checked tf_keras counterpart. {WHAT_TO_DO}")
