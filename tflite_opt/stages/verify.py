"""Verify a converted model is what was asked for: I/O dtypes, no float fallback."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence

from tflite_opt.core.config import IoType, Mode
from tflite_opt.core.tflite_file import Operator, Tensor, TfliteFile, distinct_per_channel, kernel_tensor, weight_counts
from tflite_opt.results.files import Check, Verification
from tflite_opt.results.tuning import ClusterStats, FineTuned, PruneStats
from tflite_opt.stages.load import QAT_WRAPPER_PREFIX, ClassifierSpec

_BOUNDARY_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})
DEPTHWISE = "DEPTHWISE_CONV_2D"
# The translation of a Keras 3 model to tf_keras (tflite_opt.stages.tf_keras_config) computes an activation
# tf_keras lacks in layers named <layer>_<suffix>; a quantization-aware model's tensors carry those names.
EXPANSION_SUFFIXES = ("_plus3", "_relu6", "_hard_sigmoid", "_hard_silu", "_leaky_relu", "_log_softmax")
# Offending layers named in a refusal; the rest are counted.
LISTED_LAYERS = 8


def layer_for_tensor_name(tensor_name: str, layer_names: Iterable[str] | Mapping[str, str | None]) -> str | None:
    """The Keras layer a converted tensor came from, told from its name.

    The converter names tensors after the TF ops they fuse, e.g.
    ``model/conv2d/Relu;model/conv2d/BiasAdd``; a run of path components equal to a
    layer name identifies the layer (tf_keras MobileNetV3 names one ``expanded_conv/project``).
    ``layer_names`` may map name scopes to layers (:attr:`ClassifierSpec.layer_scopes`), for models whose
    scopes are not their layers' names, and other layers' scopes to None (:func:`candidate_scopes`).
    A quantization-aware model's components are tf_keras layer names: tfmot's wrapper ``quant_conv``
    of layer ``conv``, and the layers ``act_plus3`` .. ``act_hard_silu`` the translation of a Keras 3
    model computes the hard-swish of layer ``act`` in.
    """
    found = layers_for_tensor_name(tensor_name, layer_names)
    return found[0] if found else None


def layers_for_tensor_name(tensor_name: str, layer_names: Iterable[str] | Mapping[str, str | None]) -> list[str]:
    """Every Keras layer a converted tensor's name mentions, in its order: a fused tensor
    (``model/activation_1/Relu;model/conv2d_1/Conv2D``) names each layer it carries."""
    scopes = layer_names if isinstance(layer_names, Mapping) else {name: name for name in layer_names}
    layers = {layer for layer in scopes.values() if layer is not None}
    found: list[str] = []
    for part in tensor_name.split(";"):
        for layer in _layers_on_path(part.split("/"), scopes, layers):
            if layer not in found:
                found.append(layer)
                break  # one layer per fused part: the scopes below it are the layer's own
    return found


def _layers_on_path(components: Sequence[str], scopes: Mapping[str, str | None], layers: set[str]) -> Iterator[str]:
    """The layers whose scopes one fused part's path passes through, outermost first.

    A layer name may hold "/", so at each component the longest run naming a scope wins, and the path goes on
    after it: ``expanded_conv/squeeze_excite/Conv`` is one layer, never layer ``Conv``; where it is not
    a candidate (mapped to None) it only hides its components.
    """
    start = 0
    while start < len(components):
        end, layer = _longest_scope(components, start, scopes, layers)
        if layer is not None:
            yield layer
        start = end


def _longest_scope(
    components: Sequence[str], start: int, scopes: Mapping[str, str | None], layers: set[str]
) -> tuple[int, str | None]:
    """Where the longest run of ``components`` from ``start`` that is a known scope ends, and the candidate layer
    it stands for; ``(start + 1, None)`` where no run from ``start`` is one."""
    for end in range(len(components), start, -1):
        known, layer = _layer_for_scope("/".join(components[start:end]), scopes, layers)
        if known:
            return end, layer
    return start + 1, None


def _layer_for_scope(scope: str, scopes: Mapping[str, str | None], layers: set[str]) -> tuple[bool, str | None]:
    """Whether ``scope``, a run of a tensor name's components, is a known layer's scope, and the candidate
    layer it stands for (None: another layer's)."""
    unwrapped = scope.removeprefix(QAT_WRAPPER_PREFIX)
    # Before the scopes: a Keras 3 trace renames scopes (layer conv_1 computes in conv_1_2), tf_keras does not,
    # so quant_conv_1 is layer conv_1, never the layer whose Keras 3 scope is conv_1.
    if unwrapped != scope and unwrapped in layers:
        return True, unwrapped
    if scope in scopes:
        return True, scopes[scope]
    for suffix in EXPANSION_SUFFIXES:
        base = unwrapped.removesuffix(suffix)
        if base != unwrapped and base in layers:
            return True, base
    return False, None


def candidate_scopes(spec: ClassifierSpec, layers: Iterable[str]) -> dict[str, str | None]:
    """The name scopes of ``layers`` and the layer each stands for, beside every other layer's scope mapped to None.

    The other layers' scopes keep a kernel under one of them from being read as a candidate's where their name
    ends in a candidate's (``expanded_conv/squeeze_excite/Conv`` beside ``Conv``, when only ``Conv`` is asked for).
    """
    return {**dict.fromkeys(spec.layer_scopes), **spec.scopes_for(layers)}


def layer_for_operator(model: TfliteFile, op: Operator, layer_names: Iterable[str]) -> str | None:
    """The Keras layer an operator came from: the first of :func:`layers_for_operator`."""
    layers = layers_for_operator(model, op, layer_names)
    return layers[0] if layers else None


def layers_for_operator(model: TfliteFile, op: Operator, layer_names: Iterable[str]) -> list[str]:
    """Every Keras layer an operator carries, the layer that owns its weights first: a CONV_2D the converter fused
    with the next layer's activation carries both, and is the convolution's. Told from its weights' names and its
    output's, else (the last operator's output is named after the model's signature) from its input's."""
    names = layer_names if isinstance(layer_names, Mapping) else list(layer_names)
    valid_inputs = [i for i in op.inputs if i >= 0]
    constants = [i for i in valid_inputs if model.tensors[i].is_constant]
    activations = [i for i in valid_inputs if not model.tensors[i].is_constant]
    found: list[str] = []
    for index in (*constants, *[i for i in op.outputs if i >= 0]):
        found += [layer for layer in layers_for_tensor_name(model.tensors[index].name, names) if layer not in found]
    for index in activations:
        if not found:
            found = layers_for_tensor_name(model.tensors[index].name, names)[:1]
    return found


def float_operators(model: TfliteFile) -> list[Operator]:
    """Operators that read or write float tensors, except QUANTIZE at a model input
    and DEQUANTIZE at a model output (the float I/O boundary of an int8 model)."""
    offenders = []
    for op in model.operators:
        touched = [model.tensors[i] for i in (*op.inputs, *op.outputs) if i >= 0]
        if not any(t.is_float for t in touched):
            continue
        if op.name == "QUANTIZE" and all(i in model.inputs for i in op.inputs):
            continue
        if op.name == "DEQUANTIZE" and all(i in model.outputs for i in op.outputs):
            continue
        offenders.append(op)
    # The op that lacks an integer kernel matters more than the (DE)QUANTIZE around it.
    return sorted(offenders, key=lambda op: (op.name in _BOUNDARY_OPS, op.index))


def _kept_in_float(model: TfliteFile, op: Operator, layer_names: Sequence[str], float_layers: Sequence[str]) -> bool:
    if not float_layers:
        return False
    return op.name in _BOUNDARY_OPS or any(
        layer in float_layers for layer in layers_for_operator(model, op, layer_names)
    )


def _io_check(model: TfliteFile, which: str, expected: str) -> Check:
    tensors = model.input_tensors() if which == "input" else model.output_tensors()
    found = sorted({t.dtype for t in tensors})
    passed = bool(tensors) and found == [expected]
    return Check(
        f"{which} dtype", passed, f"{'/'.join(found) or 'none'}" + ("" if passed else f", expected {expected}")
    )


def _describe(model: TfliteFile, ops: Sequence[Operator], layer_names: Sequence[str]) -> str:
    """The offending operators, one entry per layer (``MUL (layer 'hswish')``, ``2 MUL + ADD (layer 'x')``);
    the QUANTIZE and DEQUANTIZE that only carry a listed operator's inputs and outputs are counted after them."""
    edges = _edges(ops)
    groups: dict[str | None, list[str]] = {}
    for op in ops:
        if op.index not in edges:
            groups.setdefault(layer_for_operator(model, op, layer_names), []).append(op.name)
    parts = [
        f"{_counted(names)} (layer {layer!r})" if layer else _counted(names)
        for layer, names in list(groups.items())[:LISTED_LAYERS]
    ]
    unlisted = list(groups.items())[LISTED_LAYERS:]
    if unlisted:
        layers = sum(layer is not None for layer, _ in unlisted)
        parts.append(f"{sum(len(names) for _, names in unlisted)} more in {layers} more layers")
    around = f" and the {_counted([op.name for op in ops if op.index in edges])} around them" if edges else ""
    return ", ".join(parts) + around


def _edges(ops: Sequence[Operator]) -> set[int]:
    """Indices of the QUANTIZE and DEQUANTIZE among ``ops`` that feed or read one of the other ``ops``."""
    computing = [op for op in ops if op.name not in _BOUNDARY_OPS]
    read = {i for op in computing for i in op.inputs}
    written = {i for op in computing for i in op.outputs}
    return {
        op.index
        for op in ops
        if (op.name == "DEQUANTIZE" and read.intersection(op.outputs))
        or (op.name == "QUANTIZE" and written.intersection(op.inputs))
    }


def _counted(names: Sequence[str]) -> str:
    """``["MUL", "ADD", "MUL"]`` as ``2 MUL + ADD``."""
    return " + ".join(f"{count} {name}" if count > 1 else name for name, count in Counter(names).items())


def verify_variant(
    model: TfliteFile,
    mode: Mode,
    io_type: IoType = IoType.INT8,
    layer_names: Sequence[str] = (),
    float_layers: Sequence[str] = (),
) -> Verification:
    """Run the checks that fit ``mode`` and return them all, passed or not.

    Args:
        model: the parsed .tflite file.
        mode: what was asked for.
        io_type: the I/O type asked for a full-int8 model.
        layer_names: Keras layer names, to tell where an offending operator came from.
        float_layers: layers kept in float on purpose in a full-int8 model (selective
            quantization); their operators and the (DE)QUANTIZE around them are expected.
    """
    expected_io = io_type.value.upper() if mode is Mode.FULL_INT8 else "FLOAT32"
    checks = [_io_check(model, "input", expected_io), _io_check(model, "output", expected_io)]
    if mode is Mode.FULL_INT8:
        offenders = float_operators(model)
        kept = [op for op in offenders if _kept_in_float(model, op, layer_names, float_layers)]
        offenders = [op for op in offenders if op not in kept]
        if offenders:
            detail = (
                f"{len(offenders)} of {len(model.operators)} operators compute in float: "
                + _describe(model, offenders, layer_names)
                + " (no int8 kernel; the converter fell back to float)"
            )
        elif kept:
            detail = (
                f"{len(model.operators) - len(kept)} of {len(model.operators)} operators compute in integer; "
                f"the other {len(kept)} are the layer(s) kept in float on purpose ({', '.join(float_layers)}) "
                "and the conversions at their edges"
            )
        else:
            detail = f"all {len(model.operators)} operators compute in integer"
        checks.append(Check("integer-only", not offenders, detail))
    elif mode in (Mode.DYNAMIC_RANGE, Mode.FLOAT16):
        wanted = "INT8" if mode is Mode.DYNAMIC_RANGE else "FLOAT16"
        stored = [t for t in model.tensors if t.is_constant and t.dtype == wanted]
        # The converter only quantizes weight tensors of at least 1024 elements.
        detail = (
            f"{len(stored)} weight tensors stored as {wanted.lower()}"
            if stored
            else f"no weight tensor is stored as {wanted.lower()}; the conversion left the model in float32 "
            "(weights smaller than 1024 elements are never quantized)"
        )
        checks.append(Check(f"{wanted.lower()} weights", bool(stored), detail))
    return Verification(mode.value, tuple(checks))


def pixel_input_check(model: TfliteFile, io_type: IoType) -> Check:
    """The input takes pixels 0..255 as they are: scale 1 and zero point 0 (uint8) or -128 (int8, pixel - 128)."""
    tensor = model.input_tensors()[0]
    q = tensor.quantization
    expected = {"UINT8": 0, "INT8": -128}.get(tensor.dtype)
    found = f"scale {q.scale!r}, zero point {q.zero_point}" if q else "no quantization"
    passed = q is not None and expected is not None and q.scale == 1.0 and q.zero_point == expected
    detail = (
        f"{io_type.value} input takes pixels as they are ({found})"
        if passed
        else f"{found}; expected scale 1.0 and zero point {expected} on a {tensor.dtype.lower()} input"
    )
    return Check("pixel input", passed, detail)


def file_layer_sparsity(
    model: TfliteFile, layer_names: Iterable[str] | Mapping[str, str | None]
) -> dict[str, tuple[int, int]]:
    """(weights, non-zero weights) per Keras layer, read from the kernels stored in the file.

    Only ``layer_names`` are candidates when telling an operator's layer, so a
    convolution with a folded BatchNorm is attributed to the convolution.
    """
    counts: dict[str, tuple[int, int]] = {}
    for layer, _, tensor in _layer_kernels(model, layer_names):
        weights, nonzero = weight_counts(model, tensor)
        before = counts.get(layer, (0, 0))
        counts[layer] = (before[0] + weights, before[1] + nonzero)
    return counts


def _layer_kernels(
    model: TfliteFile, layer_names: Iterable[str] | Mapping[str, str | None]
) -> Iterator[tuple[str, Operator, Tensor]]:
    """(layer, operator, stored kernel) for each conv or dense operator whose kernel is the one tfmot prunes and
    clusters in one of the layers.

    Only the weight tensor's own name counts: an operator's activations are named after its neighbours. A layer
    with a depthwise and another kernel operator is a separable convolution: tfmot prunes and clusters its
    pointwise kernel (the CONV_2D) and leaves the depthwise one as it is, so the depthwise one is not its.
    """
    found = []
    for op in model.operators:
        tensor = kernel_tensor(model, op)
        layer = layer_for_tensor_name(tensor.name, layer_names) if tensor is not None else None
        if layer is not None:
            found.append((layer, op, tensor))
    separable = {layer for layer, op, _ in found if op.name != DEPTHWISE} & {
        layer for layer, op, _ in found if op.name == DEPTHWISE
    }
    for layer, op, tensor in found:
        if not (layer in separable and op.name == DEPTHWISE):
            yield layer, op, tensor


def overall_sparsity(model: TfliteFile) -> float:
    """Fraction of zeros among all conv and dense weights stored in the file."""
    weights = nonzero = 0
    for op in model.operators:
        tensor = kernel_tensor(model, op)
        if tensor is not None:
            size, kept = weight_counts(model, tensor)
            weights, nonzero = weights + size, nonzero + kept
    return 1.0 - nonzero / weights if weights else 0.0


def sparsity_check(
    model: TfliteFile,
    keras_sparsity: dict[str, float],
    scopes: Mapping[str, str | None] | None = None,
    tolerance: float = 0.01,
) -> Check:
    """Each pruned layer keeps its Keras sparsity (within ``tolerance``) in the converted file.

    ``scopes``: the pruned layers' name scopes, where they are not their names, and the other layers' mapped to None
    (:func:`candidate_scopes`).
    """
    in_file = file_layer_sparsity(model, scopes if scopes is not None else list(keras_sparsity))
    lost = []
    for layer, expected in keras_sparsity.items():
        if layer not in in_file:
            lost.append(f"{layer} (no weights found in the file)")
            continue
        weights, nonzero = in_file[layer]
        found = 1.0 - nonzero / weights
        if found < expected - tolerance:
            lost.append(f"{layer} {100 * found:.1f}% zeros, {100 * expected:.1f}% in Keras")
    if lost:
        return Check("sparsity kept", False, "pruning did not survive conversion: " + ", ".join(lost))
    return Check("sparsity kept", True, f"all {len(keras_sparsity)} pruned layers keep their zeros in the file")


def pruning_kept_check(model: TfliteFile, pruned: PruneStats, spec: ClassifierSpec) -> Check:
    """:func:`sparsity_check` of every layer pruning pruned."""
    keras_sparsity = {layer.layer: layer.sparsity for layer in pruned.layers}
    return sparsity_check(model, keras_sparsity, candidate_scopes(spec, keras_sparsity))


def file_layer_clusters(model: TfliteFile, layer_names: Iterable[str] | Mapping[str, str | None]) -> dict[str, int]:
    """Per Keras layer, the largest number of distinct values in one output channel of its kernels in the file."""
    found: dict[str, int] = {}
    for layer, op, tensor in _layer_kernels(model, layer_names):
        found[layer] = max(found.get(layer, 0), distinct_per_channel(model, op, tensor))
    return found


def clusters_kept_check(model: TfliteFile, clustered: ClusterStats, spec: ClassifierSpec) -> Check:
    """Each clustered layer keeps at most its number of clusters of distinct values per output channel in the file."""
    limit = clustered.config.clusters + (1 if clustered.preserved_sparsity else 0)  # the zeros are kept apart
    in_file = file_layer_clusters(model, candidate_scopes(spec, clustered.clustered))
    lost = [
        f"{layer} {in_file[layer]} distinct values in a channel" if layer in in_file else f"{layer} (not found)"
        for layer in clustered.clustered
        if in_file.get(layer, limit + 1) > limit
    ]
    if lost:
        return Check(
            "clusters kept", False, f"clustering did not survive conversion (at most {limit}): " + ", ".join(lost)
        )
    worst = max(in_file[layer] for layer in clustered.clustered)
    return Check(
        "clusters kept",
        True,
        f"all {len(clustered.clustered)} clustered layers keep at most {limit} values per channel "
        f"(the most in one channel: {worst})",
    )


def fine_tuning_kept(
    verification: Verification, model: TfliteFile, tuned: FineTuned, spec: ClassifierSpec
) -> Verification:
    """``verification`` with the checks that pruning's zeros and clustering's shared values survived, where
    ``tuned`` has them."""
    if tuned.pruned is not None:
        verification = verification.with_check(pruning_kept_check(model, tuned.pruned.stats, spec))
    if tuned.clustered is not None:
        verification = verification.with_check(clusters_kept_check(model, tuned.clustered.stats, spec))
    return verification
