"""Verification: I/O dtypes, every operator integer (a float fallback named with its layer), zeros kept."""

import numpy as np
import pytest
from helpers import INPUT_SIZE, build_every_kernel_kind, build_sequential, keras3, mnist_digits

from tflite_opt.core import keras2
from tflite_opt.core.config import ClusterConfig, IoType, Mode, PruneConfig, QatConfig
from tflite_opt.core.errors import VerificationError
from tflite_opt.core.tflite_file import Operator, Tensor, TfliteFile, read_tflite
from tflite_opt.stages.cluster import cluster_model
from tflite_opt.stages.convert import calibrate_keras, convert_keras, quantize_calibrated
from tflite_opt.stages.layer_errors import float_nodes, layer_nodes
from tflite_opt.stages.load import describe_classifier
from tflite_opt.stages.prune import prune_model
from tflite_opt.stages.qat import quantization_aware_model
from tflite_opt.stages.translate import translate_for_tfmot
from tflite_opt.stages.verify import (
    candidate_scopes,
    clusters_kept_check,
    file_layer_clusters,
    file_layer_sparsity,
    float_operators,
    layer_for_tensor_name,
    overall_sparsity,
    pruning_kept_check,
    sparsity_check,
    verify_variant,
)

pytestmark = pytest.mark.slow


def calibration_samples(count: int = 16) -> np.ndarray:
    return np.random.default_rng(0).random((count, INPUT_SIZE, INPUT_SIZE, 1), dtype=np.float32)


def model_with_sin_layer():
    """Dense → sin → Dense: SIN has no int8 kernel, so the converter silently keeps it in float."""
    keras, tf = keras2.keras, keras2.tf
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 1))
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = keras.layers.Dense(16, name="dense_in")(x)
    x = keras.layers.Lambda(tf.math.sin, name="periodic")(x)
    outputs = keras.layers.Dense(10, name="dense_out")(x)
    return keras.Model(inputs, outputs, name="with_sin")


def test_the_layer_is_told_from_fused_tensor_names():
    names = ["conv", "bn", "scores"]
    assert layer_for_tensor_name("tiny/bn/FusedBatchNormV3;tiny/conv/Conv2D", names) == "bn"
    assert layer_for_tensor_name("StatefulPartitionedCall:0", names) is None


def test_float_fallback_is_caught_naming_the_operator_and_its_layer():
    model = model_with_sin_layer()
    parsed = read_tflite(convert_keras(model, Mode.FULL_INT8, calibration_samples(), progress=False))
    verification = verify_variant(parsed, Mode.FULL_INT8, IoType.INT8, [layer.name for layer in model.layers])
    assert not verification.passed
    with pytest.raises(VerificationError, match=r"SIN \(layer 'periodic'\).*fell back to float"):
        verification.raise_for_failures()


def model_with_squeezed_hard_swish():
    """Keras 3: Conv2D → hard-swish → squeeze-and-excite on a 1x1 map, as MobileNetV3Small's last stage at 32x32.

    The converter drops the average of a 1x1 map, so the hard-swish's output must take the squeeze's int8 range
    and another; without a range learnt for the hard-swish's product, the converter keeps its MUL in float.
    """
    keras = keras3()
    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((1, 1, 3), name="image")
    x = layers.Conv2D(8, 1, name="conv")(inputs)
    x = layers.Activation("hard_swish", name="hswish")(x)
    squeezed = layers.GlobalAveragePooling2D(keepdims=True, name="squeeze")(x)
    x = layers.Multiply(name="excite")([x, squeezed])
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="squeezed_hard_swish")


def test_a_hard_swish_shared_with_a_squeeze_and_excite_trains_quantization_aware_to_full_integer():
    model = model_with_squeezed_hard_swish()
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 1, 1, 3), dtype=np.float32), rng.integers(0, 10, 32)
    qat = quantization_aware_model(model, x, y, QatConfig(epochs=1, learning_rate=1e-3, min_steps=0))
    parsed = read_tflite(convert_keras(qat.model, Mode.FULL_INT8, x[:4], progress=False))
    assert float_operators(parsed) == []
    assert verify_variant(parsed, Mode.FULL_INT8, IoType.INT8, describe_classifier(model).layer_scopes).passed


def test_an_operator_left_in_float_is_refused_in_one_line_naming_its_keras_layer():
    model = model_with_squeezed_hard_swish()
    x = np.random.default_rng(0).random((8, 1, 1, 3), dtype=np.float32)
    scopes = describe_classifier(model).layer_scopes
    calibrated = calibrate_keras(model, x, progress=False)
    # The hard-swish's operators left in float, as the converter leaves an operator it has no int8 kernel for.
    keep = float_nodes(layer_nodes(read_tflite(calibrated), scopes), ["hswish"])
    parsed = read_tflite(quantize_calibrated(calibrated, IoType.INT8, float_nodes=keep))
    verification = verify_variant(parsed, Mode.FULL_INT8, IoType.INT8, scopes)
    with pytest.raises(VerificationError) as refusal:
        verification.raise_for_failures()
    message = str(refusal.value)
    assert len(message.splitlines()) == 1
    assert f"{len(float_operators(parsed))} of {len(parsed.operators)} operators compute in float" in message
    # The operator named after its Keras layer; the conversions around it counted, not listed.
    assert message.endswith(
        "3 of 10 operators compute in float: HARD_SWISH (layer 'hswish') and the DEQUANTIZE + QUANTIZE around them "
        "(no int8 kernel; the converter fell back to float)"
    )


# Each layer of the tf_keras translation, and the Keras 3 layer it computes (part of).
TRANSLATED_FROM = {
    "conv": "conv", "conv_relu6": "conv",
    "conv_1": "conv_1", "conv_1_plus3": "conv_1", "conv_1_relu6": "conv_1", "conv_1_hard_sigmoid": "conv_1",
    "conv_1_hard_silu": "conv_1",
    "gate_plus3": "gate", "gate_relu6": "gate", "gate_hard_sigmoid": "gate",
    "flatten": "flatten", "hidden": "hidden", "hidden_leaky_relu": "hidden",
    "scores": "scores", "scores_log_softmax": "scores",
}  # fmt: skip


def test_a_quantization_aware_models_layer_names_are_told_as_the_keras3_layers_they_came_from():
    keras = keras3()
    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((4, 4, 1), name="image")
    x = layers.Conv2D(4, 1, activation="relu6", name="conv")(inputs)
    # Named as a Keras 3 trace names the scope of "conv"; tfmot's wrapper quant_conv_1 is still this layer.
    x = layers.Conv2D(4, 1, activation="hard_swish", name="conv_1")(x)
    x = layers.Activation("hard_sigmoid", name="gate")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(8, activation="leaky_relu", name="hidden")(x)
    outputs = layers.Dense(10, activation="log_softmax", name="scores")(x)
    model = keras.Model(inputs, outputs, name="expanded")
    scopes = describe_classifier(model).layer_scopes
    assert scopes.get("conv_1") == "conv"  # the trap: the Keras 3 scope conv_1 is layer conv
    translation = translate_for_tfmot(model, np.random.default_rng(0).random((4, 4, 4, 1), dtype=np.float32))
    names = [layer.name for layer in translation.model.layers[1:]]
    assert sorted(names) == sorted(TRANSLATED_FROM)
    wrapped = {name: layer_for_tensor_name(f"expanded/quant_{name}/op", scopes) for name in names}
    assert wrapped == TRANSLATED_FROM
    expansions = [name for name in names if TRANSLATED_FROM[name] != name]
    assert {name: layer_for_tensor_name(f"expanded/{name}/op", scopes) for name in expansions} == {
        name: TRANSLATED_FROM[name] for name in expansions
    }


def synthetic_float_model(layers: int, muls_per_layer: int) -> TfliteFile:
    """A float file of MULs in a chain, ``muls_per_layer`` under each of ``layers`` name scopes."""
    names = [f"m/layer{i}/mul{j}" for i in range(layers) for j in range(muls_per_layer)]
    tensors = [Tensor(0, "serving_default_x:0", "FLOAT32", (1,), 0, None, False)]
    tensors += [Tensor(i + 1, name, "FLOAT32", (1,), 0, None, False) for i, name in enumerate(names)]
    operators = tuple(Operator(i, "MUL", (i, i), (i + 1,)) for i in range(len(names)))
    return TfliteFile(tuple(tensors), operators, (0,), (len(names),), (b"",))


def test_a_refusal_counts_each_layers_operators_and_lists_at_most_eight_layers():
    parsed = synthetic_float_model(layers=10, muls_per_layer=2)
    detail = verify_variant(parsed, Mode.FULL_INT8, layer_names=[f"layer{i}" for i in range(10)]).checks[-1].detail
    listed = ", ".join(f"2 MUL (layer 'layer{i}')" for i in range(8))
    assert detail == f"20 of 20 operators compute in float: {listed}, 4 more in 2 more layers " + (
        "(no int8 kernel; the converter fell back to float)"
    )


def test_a_float_model_presented_as_int8_fails_the_dtype_checks():
    parsed = read_tflite(convert_keras(build_sequential(), Mode.FLOAT32))
    failed = {c.name for c in verify_variant(parsed, Mode.FULL_INT8).checks if not c.passed}
    assert failed == {"input dtype", "output dtype", "integer-only"}


def test_a_full_int8_model_passes_every_check():
    parsed = read_tflite(convert_keras(build_sequential(), Mode.FULL_INT8, calibration_samples(), progress=False))
    verification = verify_variant(parsed, Mode.FULL_INT8)
    assert [c.name for c in verification.checks] == ["input dtype", "output dtype", "integer-only"]
    assert verification.passed and float_operators(parsed) == []
    assert f"all {len(parsed.operators)} operators compute in integer" in verification.checks[-1].detail


def test_sparsity_is_counted_per_layer_from_the_stored_weights():
    model = build_sequential()
    kernel, bias = model.get_layer("hidden").get_weights()
    kernel[: kernel.shape[0] // 2] = 0.0  # half of the hidden layer's weights
    model.get_layer("hidden").set_weights([kernel, bias])
    parsed = read_tflite(convert_keras(model, Mode.FULL_INT8, calibration_samples(), progress=False))
    weights, nonzero = file_layer_sparsity(parsed, ["hidden", "scores"])["hidden"]
    # The zeroed half stays zero; int8 rounds a few tiny weights of the other half to zero too.
    assert weights == kernel.size and 0.45 * kernel.size <= nonzero <= kernel.size / 2
    assert 0.0 < overall_sparsity(parsed) < 0.5
    assert sparsity_check(parsed, {"hidden": 0.5}).passed


def test_the_sparsity_check_fails_when_the_file_has_fewer_zeros_than_keras():
    parsed = read_tflite(convert_keras(build_sequential(), Mode.FULL_INT8, calibration_samples(), progress=False))
    check = sparsity_check(parsed, {"hidden": 0.8, "absent": 0.5})
    assert not check.passed and "pruning did not survive conversion: hidden" in check.detail
    assert "absent (no weights found in the file)" in check.detail


KERNEL_KINDS = {"conv2d", "separable2d", "transpose", "conv1d", "separable1d", "scores"}


@pytest.fixture(scope="module")
def digits12():
    images, labels = mnist_digits(200, seed=2)
    return images[:, ::2, ::2][:, 1:13, 1:13][..., np.newaxis].astype(np.float32) / 255.0, labels


def _pruned_converted_and_checked(model, digits12, layers: set[str]):
    """``model`` pruned to 50%, converted to full int8, with the file's pruning check passed: (the pruning's
    result, the parsed file, the model's spec)."""
    result = prune_model(model, *digits12, PruneConfig(0.5, epochs=2, learning_rate=1e-3, min_steps=0))
    assert set(result.stats.pruned_layer_names) == layers
    parsed = read_tflite(convert_keras(result.model, Mode.FULL_INT8, digits12[0][:32], progress=False))
    spec = describe_classifier(result.model)
    check = pruning_kept_check(parsed, result.stats, spec)
    assert check.passed, check.detail
    return result, parsed, spec


def test_every_kind_of_layer_tfmot_prunes_keeps_its_zeros_in_the_file_kernel_by_kernel(digits12):
    result, parsed, spec = _pruned_converted_and_checked(build_every_kernel_kind(), digits12, KERNEL_KINDS)
    in_file = file_layer_sparsity(parsed, spec.scopes_for(KERNEL_KINDS))
    for layer in result.stats.layers:  # the pruned kernel itself, not pooled with a depthwise one
        weights, nonzero = in_file[layer.layer]
        assert weights == layer.weights and 1 - nonzero / weights >= 0.49, layer


def _clustered_converted_and_checked(model, digits12, layers: set[str]) -> None:
    """``model`` clustered to 8 values, converted to full int8: the file's clustering check passes and finds each
    of ``layers``."""
    result = cluster_model(model, *digits12, ClusterConfig(8, epochs=1, learning_rate=1e-4, min_steps=0))
    assert set(result.stats.clustered) == layers
    parsed = read_tflite(convert_keras(result.model, Mode.FULL_INT8, digits12[0][:32], progress=False))
    spec = describe_classifier(result.model)
    check = clusters_kept_check(parsed, result.stats, spec)
    assert check.passed, check.detail
    assert set(file_layer_clusters(parsed, spec.scopes_for(layers))) == layers


def test_every_kind_of_layer_tfmot_clusters_keeps_its_shared_values_in_the_file(digits12):
    _clustered_converted_and_checked(build_every_kernel_kind(), digits12, KERNEL_KINDS)


def build_mobilenet_v3_names(seed: int = 0):
    """Layers named as tf_keras MobileNetV3 names them, with "/" in the names: the top-level ``Conv`` and ``Conv_1``
    beside each block's ``expanded_conv_<n>/squeeze_excite/Conv`` and ``Conv_1``; blocks 1 and 10 beside each other."""
    keras = keras2.keras
    keras.utils.set_random_seed(seed)
    layers = keras.layers

    def conv(x, filters: int, name: str, size: int = 1):
        x = layers.Conv2D(filters, size, padding="same", use_bias=False, name=name)(x)
        return layers.BatchNormalization(name=f"{name}/BatchNorm")(x)

    def block(x, prefix: str, expand: bool, excite: bool):
        shortcut = x
        if expand:
            x = layers.ReLU(name=f"{prefix}expand/Relu")(conv(x, 16, f"{prefix}expand"))
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{prefix}depthwise")(x)
        x = layers.BatchNormalization(name=f"{prefix}depthwise/BatchNorm")(x)
        if excite:
            squeezed = layers.GlobalAveragePooling2D(keepdims=True, name=f"{prefix}squeeze_excite/AvgPool")(x)
            squeezed = layers.Conv2D(4, 1, name=f"{prefix}squeeze_excite/Conv")(squeezed)
            squeezed = layers.ReLU(name=f"{prefix}squeeze_excite/Relu")(squeezed)
            squeezed = layers.Conv2D(x.shape[-1], 1, activation="sigmoid", name=f"{prefix}squeeze_excite/Conv_1")(
                squeezed
            )
            x = layers.Multiply(name=f"{prefix}squeeze_excite/Mul")([x, squeezed])
        x = conv(x, 8, f"{prefix}project")
        return layers.Add(name=f"{prefix}Add")([shortcut, x])

    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 1), name="image")
    x = layers.ReLU(name="Conv/Relu")(conv(inputs, 8, "Conv", size=3))
    x = block(x, "expanded_conv/", expand=False, excite=True)
    x = block(x, "expanded_conv_1/", expand=True, excite=True)
    x = block(x, "expanded_conv_10/", expand=True, excite=False)
    x = layers.ReLU(name="Conv_1/Relu")(conv(x, 16, "Conv_1"))
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(10, activation="softmax", name="Logits")(x)
    return keras.Model(inputs, outputs, name="MobilenetV3small")


# The kernels tfmot prunes and clusters in build_mobilenet_v3_names (a depthwise kernel is neither).
SLASHED_KERNELS = {
    "Conv", "Conv_1", "Logits",
    "expanded_conv/squeeze_excite/Conv", "expanded_conv/squeeze_excite/Conv_1", "expanded_conv/project",
    "expanded_conv_1/expand", "expanded_conv_1/squeeze_excite/Conv", "expanded_conv_1/squeeze_excite/Conv_1",
    "expanded_conv_1/project", "expanded_conv_10/expand", "expanded_conv_10/project",
}  # fmt: skip


def test_layers_named_with_slashes_keep_their_zeros_in_the_file_each_in_its_own_kernel(digits12):
    result, parsed, spec = _pruned_converted_and_checked(build_mobilenet_v3_names(), digits12, SLASHED_KERNELS)
    # Each layer's own kernel: Conv not pooled with the blocks' squeeze_excite/Conv, nor block 1 with block 10.
    in_file = file_layer_sparsity(parsed, spec.scopes_for(SLASHED_KERNELS))
    assert {layer.layer: layer.weights for layer in result.stats.layers} == {
        layer: weights for layer, (weights, _) in in_file.items()
    }


def test_a_layer_named_as_the_end_of_another_layers_name_is_read_from_its_own_kernel_only(digits12):
    model = build_mobilenet_v3_names()
    parsed = read_tflite(convert_keras(model, Mode.FULL_INT8, digits12[0][:32], progress=False))
    spec = describe_classifier(model)
    # Only Conv and Conv_1 asked for: a block's squeeze_excite/Conv and Conv_1 are other layers, not theirs.
    in_file = file_layer_sparsity(parsed, candidate_scopes(spec, ["Conv", "Conv_1"]))
    assert in_file.keys() == {"Conv", "Conv_1"}
    assert in_file["Conv"][0] == model.get_layer("Conv").kernel.shape.num_elements()
    assert in_file["Conv_1"][0] == model.get_layer("Conv_1").kernel.shape.num_elements()


def test_layers_named_with_slashes_keep_their_clusters_in_the_file(digits12):
    _clustered_converted_and_checked(build_mobilenet_v3_names(), digits12, SLASHED_KERNELS)
